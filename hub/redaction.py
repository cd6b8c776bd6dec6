"""Last line of defence for secrets: scrub every known credential from logs and errors.

Kubeconfig credentials are kept out of messages by construction (clusters.kubeconfig
never quotes a value); this catches what a library might still echo, such as a transport
error that repeats a request header. Every secret the hub learns is registered here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "***"
# Shorter strings would mask ordinary words; no real credential is this short.
MIN_SECRET_LENGTH = 8


class Scrubber(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets.update(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg, record.args = self.scrub(message), None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True
