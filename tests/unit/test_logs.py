"""`serve --log-format json`: one JSON object per line, naming the application and the
cluster where the call site knows them, and as scrubbed of secrets as the text log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from hub.logs import JsonFormatter
from hub.redaction import MASK, Scrubber

SECRET = "s3cr3t-token-value"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON through the Scrubber, as `serve` sets the hub's up."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    scrubber = Scrubber()
    scrubber.add([SECRET])
    handler.addFilter(scrubber)
    logger = logging.getLogger("hub.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)


def _entries(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_its_time_level_logger_and_message(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.info("cluster %s renamed to %s\nsecond line", "a", "b", extra={"cluster": "b"})
    logger.warning("no context")
    first, second = _entries(out)
    assert first.pop("time").endswith("Z") and first == {
        "level": "info",
        "logger": "hub.test.logs",
        "message": "cluster a renamed to b\nsecond line",
        "cluster": "b",
    }
    assert second["level"] == "warning" and "app" not in second and "cluster" not in second


def test_app_and_cluster_come_from_the_call_site(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    logger.info("target failed", extra={"app": "web", "cluster": "prod-eu"})
    (entry,) = _entries(out)
    assert (entry["app"], entry["cluster"]) == ("web", "prod-eu")


def test_a_secret_is_masked_in_the_message_and_in_the_traceback(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = logged
    try:
        raise RuntimeError(f"the server echoed Authorization: Bearer {SECRET}")
    except RuntimeError:
        logger.exception("probe with %s failed", SECRET, extra={"cluster": "dev"})
    assert SECRET not in out.getvalue()
    (entry,) = _entries(out)
    assert entry["message"] == f"probe with {MASK} failed"
    assert "Traceback" in entry["exception"] and f"Bearer {MASK}" in entry["exception"]
