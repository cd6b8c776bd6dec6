"""The timestamps status and events write: RFC 3339 in UTC, whole seconds, as the
Kubernetes API writes them, whatever the hub's time zone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from hub.model.timestamps import timestamp


@pytest.fixture
def far_east(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: a local time shows at once
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("far_east")
def test_a_timestamp_is_utc_to_the_second() -> None:
    assert timestamp(0) == "1970-01-01T00:00:00Z"
    assert timestamp(1796350000.999) == "2026-12-04T02:06:40Z"
    assert timestamp(None) is None
