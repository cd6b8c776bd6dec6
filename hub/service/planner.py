"""From an Application file and the registry to rendered targets: `plan`, and `up`'s first half.

Placement is pure (placement/); this module adds what needs I/O: fetching each helm
component's chart for its defaults, then rendering every target with Helm. A target
whose values break the chart's schema or whose templates fail to render is reported on
that target; the others still plan, because one bad override should not hide the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.charts import ChartCache, ChartRef, LoadedChart
from hub.errors import FlotillaError
from hub.model.records import ClusterRecord
from hub.spec import Application, SpecError
from placement.errors import PlacementError
from placement.targets import CHART_DEFAULTS, Target, resolve
from placement.topology import ClusterInfo
from placement.values import Setting, parse_path


@dataclass
class PlannedTarget:
    target: Target
    base: Path
    chart: LoadedChart | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    @property
    def spec(self) -> dict[str, Any]:
        """What the engine needs to deploy this target later, as plain data."""
        props = self.target.properties
        if self.target.component_type == "k8s-objects":
            return {"type": "k8s-objects", "objects": list(props.get("objects") or [])}
        return {
            "type": "helm",
            "chart": chart_ref_fields(props, self.base),
            "values": dict(self.target.values),
            "digest": self.chart.digest if self.chart else "",
            "traits": {kind: dict(props) for kind, props in self.target.traits.items()},
        }

    @property
    def chart_label(self) -> str:
        if self.chart is not None:
            return f"{self.chart.name} {self.chart.version}"
        return ""


def chart_ref_fields(props: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A chart reference; a relative `local` directory is relative to the file's folder."""
    repo_type = props.get("repoType") or props.get("repo_type") or "helm"
    url = str(props.get("url", ""))
    if repo_type == "local":
        url = str(base / url.removeprefix("file://"))
    return {
        "repo_type": repo_type,
        "url": url,
        "chart": props["chart"],
        "version": props.get("version"),
    }


async def plan(
    app: Application,
    source: str,
    clusters: Sequence[ClusterRecord],
    charts: ChartCache,
    *,
    base: Path,
    revision: int = 1,
) -> list[PlannedTarget]:
    """Resolve and render every target; placement problems refuse the whole file."""
    spec = app.to_placement()
    defaults: dict[str, dict[str, Any]] = {}
    for component in spec.components:
        if component.type == "helm":
            chart = await charts.fetch(ChartRef(**chart_ref_fields(component.properties, base)))
            defaults[component.name] = chart.default_values
    infos = [ClusterInfo(c.name, dict(c.labels)) for c in clusters]
    try:
        targets = resolve(spec, infos, defaults)
    except PlacementError as e:
        raise SpecError(source, e.problems) from None
    planned = [PlannedTarget(t, base) for t in targets]
    await asyncio.gather(*(_render(p, charts, app.metadata.name, revision) for p in planned))
    return planned


async def _render(planned: PlannedTarget, charts: ChartCache, app: str, revision: int) -> None:
    target = planned.target
    if target.component_type != "helm":
        planned.objects = [dict(o) for o in target.properties.get("objects") or []]
        return
    try:
        chart = planned.chart = await charts.fetch(
            ChartRef(**chart_ref_fields(target.properties, planned.base))
        )
        values = dict(target.values)
        await asyncio.to_thread(chart.validate, values)
        planned.objects = await chart.render_async(
            values, release_name=target.release_name, namespace=target.namespace, revision=revision
        )
    except FlotillaError as e:
        planned.error = str(e)


def failures(planned: Sequence[PlannedTarget]) -> str | None:
    """One line per failed target, or None when all rendered."""
    lines = [
        f"step {p.target.step}, cluster {p.target.cluster}, "
        f"component {p.target.component}: {p.error}"
        for p in planned
        if p.error
    ]
    return "\n".join(lines) or None


def plan_view(
    app: Application, planned: Sequence[PlannedTarget], explain: str | None = None
) -> dict[str, Any]:
    """The JSON shape of `flotilla plan`: per step and cluster, values that differ from the
    chart's defaults with the layer that set them, and the objects Helm would create."""
    steps: dict[str, list[dict[str, Any]]] = {}
    for p in planned:
        t = p.target
        sources = t.provenance.sources()
        changed = {
            path.removeprefix("values."): {"value": _leaf(t.properties, path), "from": layer}
            for path, layer in sorted(sources.items())
            if path.startswith("values.") and layer != CHART_DEFAULTS
        }
        entry: dict[str, Any] = {
            "cluster": t.cluster,
            "namespace": t.namespace,
            "component": t.component,
            "release": t.release_name,
            "chart": p.chart_label,
            "values": changed,
            "objects": [_object_name(o, t.namespace) for o in p.objects],
            "error": p.error,
        }
        if explain is not None:
            entry["explain"] = _explain(t, explain)
        steps.setdefault(t.step, []).append(entry)
    return {
        "application": app.metadata.name,
        "publishVersion": app.publish_version,
        "steps": [{"name": name, "targets": targets} for name, targets in steps.items()],
    }


def _explain(target: Target, key: str) -> dict[str, Any]:
    history = target.provenance.explain(f"values.{key}")
    return {
        path.removeprefix("values."): {
            "layers": [_setting(s) for s in settings],
            "winner": None if settings[-1].deleted else settings[-1].layer,
        }
        for path, settings in history.items()
    }


def _setting(setting: Setting) -> dict[str, Any]:
    if setting.deleted:
        return {"layer": setting.layer, "deleted": True}
    return {"layer": setting.layer, "value": setting.value}


def _leaf(properties: Mapping[str, Any], path: str) -> Any:
    node: Any = properties
    for key in parse_path(path):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _object_name(obj: Mapping[str, Any], namespace: str) -> str:
    metadata = obj.get("metadata") or {}
    ns = metadata.get("namespace") or namespace
    return f"{obj.get('kind')} {ns}/{metadata.get('name')}"
