"""What one target deploys, as the revision stored it: a frozen, typed record.

The planner makes it at `up`, the store keeps it as JSON, and every later deploy of the
revision (resume, restart, rollback, a restarted hub) reads it back unchanged: the chart
pinned to one version and digest, the values Helm receives, the traits. `from_json` also
reads specs stored before charts were pinned, whose chart has no `constraint`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ComponentType = Literal["helm", "k8s-objects"]
RepoType = Literal["helm", "oci", "local"]


@dataclass(frozen=True)
class ChartSpec:
    """A helm target's chart: where it comes from and, once pinned, exactly which."""

    repo_type: RepoType
    url: str
    chart: str
    version: str | None
    """The exact version the revision pinned (or, unpinned, the reference as written)."""
    constraint: str | None = None
    """The version the file wrote: a constraint, an exact version, or None for the newest."""
    digest: str = ""
    """sha256 of the pinned archive (or of a local chart directory's files)."""
    pinned: bool = True
    """False for a spec stored before revisions pinned their charts."""
    dependencies: tuple[ChartSpec, ...] = ()
    """The dependencies fetched into the chart's `charts/` (declared in its Chart.yaml,
    not packaged), each pinned as the chart is."""


@dataclass(frozen=True)
class TargetSpec:
    type: ComponentType
    chart: ChartSpec | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    """The exact document Helm receives."""
    objects: tuple[Mapping[str, Any], ...] = ()
    """The manifests of a `k8s-objects` component."""
    traits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def trait(self, kind: str) -> Mapping[str, Any] | None:
        return self.traits.get(kind)

    def to_json(self) -> dict[str, Any]:
        if self.type == "k8s-objects":
            return {"type": self.type, "objects": [dict(o) for o in self.objects]}
        assert self.chart is not None, "a helm target has a chart"
        chart = self.chart
        return {
            "type": self.type,
            "chart": _chart_json(chart),
            "digest": chart.digest,
            "values": dict(self.values),
            "traits": {kind: dict(props) for kind, props in self.traits.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetSpec:
        if data.get("type") == "k8s-objects":
            return cls("k8s-objects", objects=tuple(data.get("objects") or ()))
        chart = data["chart"]
        pinned = "constraint" in chart
        return cls(
            "helm",
            chart=ChartSpec(
                repo_type=chart["repo_type"],
                url=chart["url"],
                chart=chart["chart"],
                version=chart.get("version"),
                constraint=chart.get("constraint") if pinned else chart.get("version"),
                digest=str(data.get("digest") or ""),
                pinned=pinned,
                dependencies=tuple(_dependency(d) for d in chart.get("dependencies") or ()),
            ),
            values=dict(data.get("values") or {}),
            traits={kind: dict(props) for kind, props in (data.get("traits") or {}).items()},
        )


def _chart_json(chart: ChartSpec) -> dict[str, Any]:
    """A stored chart (its digest beside it, where specs have always kept it)."""
    fetched = [{**_chart_json(d), "digest": d.digest} for d in chart.dependencies]
    return {
        "repo_type": chart.repo_type,
        "url": chart.url,
        "chart": chart.chart,
        "version": chart.version,
        "constraint": chart.constraint,
        **({"dependencies": fetched} if fetched else {}),
    }


def _dependency(data: Mapping[str, Any]) -> ChartSpec:
    return ChartSpec(
        repo_type=data["repo_type"],
        url=data["url"],
        chart=data["chart"],
        version=data.get("version"),
        constraint=data.get("constraint"),
        digest=str(data.get("digest") or ""),
        dependencies=tuple(_dependency(d) for d in data.get("dependencies") or ()),
    )
