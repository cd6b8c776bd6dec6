"""The answer of `flotilla plan`: per step and cluster, the values Helm will receive, who set
each of them, and the objects Helm renders.

`values` is the exact document handed to Helm for the target, so a script can diff it or
feed it to `helm template` itself. Provenance sits beside it keyed by JSON Pointer
(RFC 6901), not by dotted paths: a key such as `prometheus.io/scrape` stays one key, and a
value a `null` deleted still has an entry (`deleted: true`), as an emptied map stays
visible in `values` as `{}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clusters.resources import ObjectRef
from hub.charts import ChartPin
from hub.format import Application
from hub.model.views import (
    LayerView,
    PlanStepView,
    PlanTargetView,
    PlanView,
    ValueExplanation,
    ValueOrigin,
)
from hub.service.ownership import Takeover
from hub.service.planner import PlannedTarget
from placement.targets import CHART_DEFAULTS, Target
from placement.values import Setting, json_pointer, parse_path

VALUES: tuple[str, ...] = ("values",)


def plan_view(
    app: Application,
    planned: Sequence[PlannedTarget],
    explain: str | None = None,
    pruned: Mapping[tuple[str, str], Sequence[ObjectRef]] | None = None,
    takeovers: Sequence[Takeover] = (),
) -> PlanView:
    """`pruned`: by (cluster, component), what the plan would delete there
    (`hub.service.planner.pruned`); `takeovers`: what its first deploys would take over
    from other field managers (`hub.service.ownership`)."""
    steps: dict[str, list[PlanTargetView]] = {}
    taken: dict[tuple[str, str], list[str]] = {}
    for takeover in takeovers:
        taken.setdefault((takeover.cluster, takeover.component), []).append(str(takeover.owned))
    for p in planned:
        key = (p.target.cluster, p.target.component)
        view = _target_view(p, explain, (pruned or {}).get(key, ()), taken.get(key, []))
        steps.setdefault(p.target.step, []).append(view)
    return PlanView(
        application=app.metadata.name,
        publishVersion=app.publish_version,
        steps=[PlanStepView(name=name, targets=targets) for name, targets in steps.items()],
    )


def _target_view(
    planned: PlannedTarget, explain: str | None, prune: Sequence[ObjectRef], taken: list[str]
) -> PlanTargetView:
    target = planned.target
    return PlanTargetView(
        cluster=target.cluster,
        namespace=target.namespace,
        component=target.component,
        release=target.release_name,
        chart=planned.chart_label,
        values=dict(target.values),
        provenance=provenance(target),
        explain=_explain(target, explain) if explain is not None else None,
        objects=[_object_name(o, target.namespace) for o in planned.objects],
        prune=[str(ref) for ref in prune],
        takeOver=taken,
        dependencies=[_pinned(d) for d in planned.pin.dependencies] if planned.pin else [],
        usesLookup=planned.lookup,
        warnings=planned.warnings,
        # A refusal refuses no `up`: it is said here, and the target fails when it deploys.
        error=planned.error or planned.refused,
    )


def provenance(target: Target) -> dict[str, ValueOrigin]:
    """Every value a layer other than the chart's defaults set or deleted, by pointer;
    the value as Helm receives it, `${cluster...}` placeholders filled in."""
    return {
        json_pointer(path): {
            "from": setting.layer,
            "value": None if setting.deleted else _leaf(target.values, path),
            "deleted": setting.deleted,
        }
        for path, setting in sorted(target.provenance.last(VALUES).items())
        if setting.layer != CHART_DEFAULTS
    }


def _leaf(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = values
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _explain(target: Target, key: str) -> dict[str, ValueExplanation]:
    """`--explain KEY` (Helm's `--set` syntax: `podAnnotations.prometheus\\.io/scrape`):
    every layer that touched KEY, anything below it or anything that replaced it."""
    wanted = (*VALUES, *parse_path(key))
    return {
        json_pointer(path[len(VALUES) :]): ValueExplanation(
            layers=[_layer(s) for s in settings],
            winner=None if settings[-1].deleted else settings[-1].layer,
        )
        for path, settings in sorted(target.provenance.history.items())
        if path[: len(wanted)] == wanted or wanted[: len(path)] == path
        if path[: len(VALUES)] == VALUES and len(path) > len(VALUES)
    }


def _layer(setting: Setting) -> LayerView:
    return LayerView(
        layer=setting.layer,
        value=None if setting.deleted else setting.value,
        deleted=setting.deleted,
    )


def _pinned(pin: ChartPin) -> str:
    return f"{pin.requested.chart} {pin.version} {pin.digest}"


def _object_name(obj: Mapping[str, Any], namespace: str) -> str:
    metadata = obj.get("metadata") or {}
    ns = metadata.get("namespace") or namespace
    return f"{obj.get('kind')} {ns}/{metadata.get('name')}"
