"""A revision's chart, pinned: the exact version its reference resolved to, and its digest.

A reference names a constraint (`^1.0`) or nothing, and what that resolves to changes
whenever the repository publishes. A revision must deploy the same chart on every later run
(resume, restart, rollback, a restarted hub), so the planner records in each target's spec
what the reference resolved to at `up`, and every later deploy fetches exactly that version
and checks its bytes against the digest (`ChartCache.fetch_pinned`).

A chart whose Chart.yaml declares dependencies its `charts/` lacks (a chart directory before
`helm dependency build`) is built with them fetched from their repositories; each of them is
pinned the same way, inside its parent's pin, so that a later deploy builds the same chart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from hub.charts.errors import ChartPinMismatch, display_url
from hub.charts.refs import ChartRef
from hub.charts.render import LoadedChart
from hub.model.targets import ChartSpec, TargetSpec


@dataclass(frozen=True)
class ChartPin:
    """What `requested` (the reference as the file wrote it) resolved to: `version`, and the
    sha256 of that archive or, for a local directory, of its files."""

    requested: ChartRef
    version: str
    digest: str
    dependencies: tuple[ChartPin, ...] = ()
    """The dependencies fetched into the chart's `charts/`, by the reference its Chart.yaml
    writes."""

    @classmethod
    def of(cls, requested: ChartRef, chart: LoadedChart) -> ChartPin:
        return cls(requested, chart.version, chart.digest, chart.dependencies)

    @property
    def ref(self) -> ChartRef:
        """The reference by the exact version: what a later deploy fetches."""
        return replace(self.requested, version=self.version)

    def to_spec(self) -> ChartSpec:
        """The chart of a stored target spec: the exact reference, the constraint the file
        wrote (None: the newest stable version), and the digest."""
        ref = self.ref
        return ChartSpec(
            repo_type=ref.repo_type,
            url=ref.url,
            chart=ref.chart,
            version=ref.version,
            constraint=self.requested.version,
            digest=self.digest,
            dependencies=tuple(d.to_spec() for d in self.dependencies),
        )

    @classmethod
    def from_spec(cls, spec: TargetSpec) -> ChartPin | None:
        """The pin of a stored target spec; None when the spec has no chart, or was stored
        before revisions pinned their charts."""
        chart = spec.chart
        if chart is None or not chart.pinned or chart.version is None:
            return None
        return cls._of_chart(chart, chart.version)

    @classmethod
    def _of_chart(cls, chart: ChartSpec, version: str) -> ChartPin:
        requested = ChartRef(chart.repo_type, chart.url, chart.chart, chart.constraint)
        dependencies = tuple(cls._of_chart(d, d.version or "") for d in chart.dependencies)
        return cls(requested, version, chart.digest, dependencies)

    def mismatch(self, found: str, *, revision: int) -> ChartPinMismatch:
        """The refusal to deploy `found` (a digest) in place of this pin, in one line."""
        ref = self.requested
        if ref.repo_type == "local":
            where = Path(ref.url) / ref.chart
            return ChartPinMismatch(
                f"chart {ref.chart} {self.version} in {where}: the directory now hashes to "
                f"{found} but revision {revision} pinned {self.digest}; nothing was deployed; "
                "run `flotilla up` again to deploy the changed chart"
            )
        source = "registry" if ref.repo_type == "oci" else "repository"
        return ChartPinMismatch(
            f"chart {ref.chart} {self.version} in {display_url(ref.url)}: the {source} now "
            f"serves {found} but revision {revision} pinned {self.digest}; nothing was deployed"
        )
