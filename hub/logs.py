"""How the hub's log reads: text for people, or one JSON object per line for collectors.

`flotilla serve --log-format json` writes each record as {time, level, logger, message}
plus `app` and `cluster` where the call site names them (`extra={"app": ...}`), and the
traceback as `exception`. Secrets are the Scrubber's (hub.redaction) to remove, on the
way to every handler: it rewrites the message and the traceback text before any
formatter runs, so the JSON formatter takes both from the record as scrubbed and never
formats an exception itself.
"""

from __future__ import annotations

import enum
import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT = ("app", "cluster")
"""What a log call may name with `extra=`: the application and the member cluster."""


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {key: value for key in CONTEXT if (value := getattr(record, key, None))}
        if record.exc_text:  # set, scrubbed, by the Scrubber
            entry["exception"] = record.exc_text
        elif record.exc_info:  # passed no Scrubber: logged before the hub knew a secret
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: LogFormat) -> None:
    """Log to stderr in `log_format` from `level` up; Python's warnings go the same way,
    so a JSON log holds nothing but JSON lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format is LogFormat.json else logging.Formatter(TEXT_FORMAT)
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.captureWarnings(True)
