"""Timestamps as the Kubernetes API writes them (RFC 3339, UTC, seconds)."""

from __future__ import annotations

import time


def timestamp(seconds: float | None) -> str | None:
    """By `time.strftime`, in a third of a `datetime`'s time: `status` writes one for
    every cluster of an application on every call."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
