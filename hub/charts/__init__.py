"""Charts: fetch them, cache them by digest, render them with Helm's own engine.

A release is only as reproducible as its chart, so every fetched archive is kept under its
sha256 and a small index maps (repository, chart, version) to that digest: the second fetch of
a pinned version touches no network, and the digest is what identifies "the same chart" in
revisions and in the render cache. Local directories are the exception: they change while a
user develops, so they are read afresh on every fetch and identified by a hash of their files.

A revision deploys the chart it was planned with, whatever the repository publishes later: a
`ChartPin` holds the exact version a reference resolved to and its digest, and
`ChartCache.fetch_pinned` hands out those bytes or refuses (`ChartPinMismatch`).

Rendering goes through `helm_python` (the Helm v4 SDK). This module must never interpret a
template itself: "renders like Helm" is only true if Helm renders. Everything Helm does here
blocks (ctypes into Go), so the async API runs it in a thread; the sync methods are for code
that already runs in one.

HTTP repositories are read with aiohttp rather than through Helm so that every request has a
timeout and the hub shares one HTTP stack; OCI registries speak a protocol Helm already
implements, so Helm pulls them after a quick reachability probe that does have a timeout.
"""

from hub.charts.cache import ChartCache
from hub.charts.errors import (
    ChartError,
    ChartNotFound,
    ChartPinMismatch,
    ChartRenderError,
    ChartRepoUnreachable,
    InvalidChart,
    InvalidChartRef,
    InvalidValues,
)
from hub.charts.pins import ChartPin
from hub.charts.refs import ChartRef, resolve_version
from hub.charts.render import LoadedChart
from hub.model.targets import RepoType

__all__ = [
    "ChartCache",
    "ChartError",
    "ChartNotFound",
    "ChartPin",
    "ChartPinMismatch",
    "ChartRef",
    "ChartRenderError",
    "ChartRepoUnreachable",
    "InvalidChart",
    "InvalidChartRef",
    "InvalidValues",
    "LoadedChart",
    "RepoType",
    "resolve_version",
]
