"""What keeps a chart from being fetched, loaded or rendered, each with its exit code; and
URLs as messages show them (never with credentials).
"""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import urlsplit, urlunsplit

from hub.errors import Conflict, FlotillaError, InvalidInput, NotFound


class ChartError(FlotillaError):
    """Anything that kept a chart from being fetched, loaded or rendered."""


class ChartNotFound(ChartError, NotFound):
    """The repository answered, but holds no such chart or version."""


class ChartRepoUnreachable(ChartError):
    """The repository or registry did not answer in time, at all, or with a usable index."""

    http_status = HTTPStatus.BAD_GATEWAY


class ChartPinMismatch(ChartError, Conflict):
    """The repository (or directory) now holds other bytes under the version a revision
    pinned: deploying them would no longer be that revision."""


class InvalidChartRef(ChartError, InvalidInput):
    """The reference itself is wrong: an unknown repoType, or a version that is no semver."""


class InvalidChart(ChartError, InvalidInput):
    """The archive or directory is not a chart Helm can load."""


class ChartRenderError(ChartError, InvalidInput):
    """A template failed, or produced something that is not a Kubernetes object."""


class InvalidValues(ChartError, InvalidInput):
    """Values that the chart's values.schema.json rejects, or that are not JSON at all."""


def one_line(text: str) -> str:
    return " ".join(text.split())


def display_url(url: str) -> str:
    """The URL without credentials, fit for a message."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
