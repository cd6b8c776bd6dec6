"""Timestamps as the Kubernetes API writes them (RFC 3339, UTC, seconds)."""

from __future__ import annotations

from datetime import UTC, datetime


def timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
