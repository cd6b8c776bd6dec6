"""From an Application file and the registry to rendered targets: `plan`, and `up`'s first half.

Placement is pure (placement/); this module adds what needs I/O: fetching each helm
component's chart for its defaults, then rendering every target with Helm. A target
whose values break the chart's schema or whose templates fail to render is reported on
that target; the others still plan, because one bad override should not hide the rest.

Every target's spec pins its chart (`ChartPin`: the exact version and digest), because the
spec is what every later deploy of the revision renders from, and a constraint resolved
again would deploy whatever the repository publishes by then.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from clusters.apply import stale
from clusters.discovery import Capabilities
from clusters.errors import ClusterError
from clusters.resources import ObjectRef
from hub.charts import ChartCache, ChartPin, ChartRef, LoadedChart, RepoType
from hub.charts.hooks import classify
from hub.charts.kubeversion import IncompatibleCluster
from hub.charts.offline import unstable_fields
from hub.errors import FlotillaError
from hub.fleet.keep import deletable
from hub.fleet.objects import ref_of
from hub.format import ROLLOUT_TRAIT, Application, CheckMetricsStep, SpecError, trait_properties
from hub.format.problems import repository_problems
from hub.model.records import ClusterRecord, TargetRecord
from hub.model.targets import TargetSpec
from hub.tasks import first_line
from placement.errors import PlacementError
from placement.targets import Target, resolve
from placement.topology import ClusterInfo

Inventory = Mapping[tuple[str, str], tuple[int, Sequence[Mapping[str, Any]]]]
"""What an application has applied, as `AppStore.inventory` answers: by (cluster,
component), the revision and the object references."""


@dataclass
class PlannedTarget:
    target: Target
    base: Path
    chart: LoadedChart | None = None
    pin: ChartPin | None = None
    objects: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    lookup: list[str] = field(default_factory=list)
    """The chart's templates that call `lookup`, which finds nothing offline."""
    warnings: list[str] = field(default_factory=list)
    """What would not deploy as planned: fields that change on every render."""
    refused: str | None = None
    """Why the target's cluster cannot take it (outside the chart's `kubeVersion`, or it
    could not be asked what it serves): the target fails when it deploys, and only it, so
    unlike `error` this refuses no `up`."""

    @property
    def spec(self) -> TargetSpec:
        """What the engine needs to deploy this target later, its chart pinned."""
        props = self.target.properties
        if self.target.component_type == "k8s-objects":
            return TargetSpec("k8s-objects", objects=tuple(props.get("objects") or ()))
        # Only a target whose chart could not be fetched lacks a pin, and `up` stores none.
        assert self.pin is not None, f"{self.target.component}: no chart to store: {self.error}"
        return TargetSpec(
            "helm",
            chart=self.pin.to_spec(),
            values=dict(self.target.values),
            traits={kind: dict(props) for kind, props in self.target.traits.items()},
        )

    @property
    def chart_label(self) -> str:
        if self.chart is not None:
            return f"{self.chart.name} {self.chart.version}"
        return ""


def chart_ref(props: Mapping[str, Any], base: Path) -> ChartRef:
    """A chart reference; a relative `local` directory is relative to the file's folder."""
    # The spec admits only RepoType's values, and the cache refuses any other.
    repo_type = cast(RepoType, props.get("repoType") or props.get("repo_type") or "helm")
    url = str(props.get("url", ""))
    if repo_type == "local":
        url = str(base / url.removeprefix("file://"))
    return ChartRef(repo_type, url, props["chart"], props.get("version"))


@dataclass(frozen=True)
class RevisionPins:
    """The charts a stored revision pinned, by the reference its file wrote: planning that
    revision's spec again (a rollback) deploys these, not what the constraints match now."""

    revision: int
    charts: Mapping[ChartRef, ChartPin]

    @classmethod
    def of(cls, revision: int, targets: Iterable[TargetRecord]) -> RevisionPins:
        """The pins in `targets`' specs; targets stored before pinning contribute none."""
        pins = (ChartPin.from_spec(target.spec) for target in targets)
        return cls(revision, {pin.requested: pin for pin in pins if pin is not None})


class _PlanCharts:
    """The charts of one plan, each reference fetched once: every target of a revision then
    pins the same chart, even if the repository publishes while the plan runs."""

    def __init__(self, cache: ChartCache, pins: RevisionPins | None) -> None:
        self._cache = cache
        self._pins = pins
        self._fetches: dict[ChartRef, asyncio.Task[tuple[ChartPin, LoadedChart]]] = {}

    async def fetch(self, ref: ChartRef) -> tuple[ChartPin, LoadedChart]:
        if ref not in self._fetches:
            self._fetches[ref] = asyncio.create_task(self._fetch(ref))
        return await self._fetches[ref]

    async def _fetch(self, ref: ChartRef) -> tuple[ChartPin, LoadedChart]:
        if self._pins is not None and (pin := self._pins.charts.get(ref)) is not None:
            return pin, await self._cache.fetch_pinned(pin, revision=self._pins.revision)
        chart = await self._cache.fetch(ref)
        return ChartPin.of(ref, chart), chart


async def plan(
    app: Application,
    source: str,
    clusters: Sequence[ClusterRecord],
    charts: ChartCache,
    *,
    base: Path,
    revision: int = 1,
    pins: RevisionPins | None = None,
    capabilities: Callable[[str], Awaitable[Capabilities]] | None = None,
) -> list[PlannedTarget]:
    """Resolve and render every target; placement problems refuse the whole file.

    Each target renders with its cluster's `capabilities(name)` (`Registry.capabilities`),
    as `helm upgrade` renders live; None renders with Helm's defaults.

    A chart reference that `pins` holds gets exactly that chart (or the target fails with
    `ChartPinMismatch`); any other resolves as its constraint matches now. A `secretRef`
    that names no registered repository covering its URL refuses the file by field.
    """
    if problems := list(repository_problems(app, charts.repositories())):
        raise SpecError(source, problems)
    spec = app.to_placement()
    fetched = _PlanCharts(charts, pins)
    defaults: dict[str, dict[str, Any]] = {}
    for component in spec.components:
        if component.type == "helm":
            _, chart = await fetched.fetch(chart_ref(component.properties, base))
            defaults[component.name] = chart.default_values
    infos = [ClusterInfo(c.name, dict(c.labels)) for c in clusters]
    try:
        targets = resolve(spec, infos, defaults)
    except PlacementError as e:
        raise SpecError(source, [app.located(p) for p in e.problems]) from None
    planned = [PlannedTarget(t, base) for t in targets]
    await asyncio.gather(*(_render(p, fetched, revision, capabilities) for p in planned))
    by_name = {c.name: c for c in clusters}
    for p in planned:
        p.error = p.error or _unmeasurable(app, p.target, by_name[p.target.cluster])
    return planned


def _unmeasurable(app: Application, target: Target, cluster: ClusterRecord) -> str | None:
    """Why the target's metric analysis (its canary's, or a `check-metrics` step's after
    its deploy step) could not measure it: a metric with no endpoint, on a cluster that
    has no Prometheus of its own. Said now rather than after a canary has started."""
    missing = []
    props = target.traits.get(ROLLOUT_TRAIT)
    analysis = trait_properties(ROLLOUT_TRAIT, props).canary.analysis if props is not None else None
    if analysis is not None:
        missing += [
            f"canary.analysis metric {m.name}"
            for m in analysis.metrics
            if analysis.endpoint_of(m) is None
        ]
    workflow = app.spec.workflow
    for step in workflow.steps if workflow else []:
        if (
            isinstance(step, CheckMetricsStep)
            and step.properties.metric_endpoint is None
            and app.deploy_step_before(step.name) == target.step
        ):
            missing.append(f"check-metrics step {step.name}")
    if not missing or cluster.prometheus:
        return None
    return (
        f"{', '.join(missing)} names no metricEndpoint and cluster {cluster.name} has no "
        f"Prometheus registered: `flotilla cluster prometheus {cluster.name} URL`"
    )


async def _render(
    planned: PlannedTarget,
    charts: _PlanCharts,
    revision: int,
    capabilities: Callable[[str], Awaitable[Capabilities]] | None,
) -> None:
    target = planned.target
    if target.component_type != "helm":
        planned.objects = [dict(o) for o in target.properties.get("objects") or []]
        return
    try:
        planned.pin, chart = await charts.fetch(chart_ref(target.properties, planned.base))
        planned.chart = chart
        values = dict(target.values)
        await asyncio.to_thread(chart.validate, values)
        try:
            seen = await capabilities(target.cluster) if capabilities else None
            if seen is not None:
                chart.check_cluster(seen, target.cluster)
        except (ClusterError, IncompatibleCluster) as e:
            planned.refused = first_line(e)
            return
        render = functools.partial(
            chart.render_async,
            values,
            release_name=target.release_name,
            namespace=target.namespace,
            revision=revision,
            capabilities=seen,
        )
        planned.objects = classify(await render()).release  # hooks are no object of it
        # A second render of the same input: what differs changes on every render. Half of
        # a plan's renders, made only where a template may draw what differs.
        again = planned.objects
        if not chart.renders_alike:
            again = classify(await render(again=True)).release
    except FlotillaError as e:
        planned.error = str(e)
        return
    planned.lookup = list(chart.lookups)
    unstable = unstable_fields(planned.objects, again, target.namespace)
    planned.warnings = [str(u) for u in unstable]


def failures(planned: Sequence[PlannedTarget]) -> str | None:
    """One line per failed target, or None when all rendered."""
    lines = [
        f"step {p.target.step}, cluster {p.target.cluster}, "
        f"component {p.target.component}: {p.error}"
        for p in planned
        if p.error
    ]
    return "\n".join(lines) or None


def pruned(
    planned: Sequence[PlannedTarget], inventory: Inventory
) -> dict[tuple[str, str], list[ObjectRef]]:
    """By (cluster, component): what applying the plan would prune there, the entries of
    the release's inventory its render no longer holds. A release the plan no longer
    places on a cluster is not here: that is garbage collection, not a prune."""
    found: dict[tuple[str, str], list[ObjectRef]] = {}
    for p in planned:
        key = (p.target.cluster, p.target.component)
        # A failed render holds nothing, and a refused target renders nothing.
        if key in inventory and p.error is None and p.refused is None:
            # What a resource policy keeps, `up` leaves on the cluster: no deletion.
            previous = [ref_of(e) for e in deletable(inventory[key][1])]
            gone = stale(previous, _rendered_refs(p.objects, p.target.namespace))
            if gone:
                found[key] = gone
    return found


def _rendered_refs(objects: Iterable[Mapping[str, Any]], namespace: str) -> list[ObjectRef]:
    """A render's objects as an inventory names them, without asking a cluster which kinds
    are cluster-scoped: each is named with its namespace (as written, or the target's) and
    without one. An inventory entry knows its scope (it is what the server answered), so
    only the name of the right scope can match it."""
    refs = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        refs += [ObjectRef(ref.api_version, ref.kind, ref.namespace or namespace, ref.name)]
        refs += [ObjectRef(ref.api_version, ref.kind, None, ref.name)]
    return refs


def prune_refusal(
    pruned: Mapping[tuple[str, str], Sequence[ObjectRef]], inventory: Inventory
) -> str | None:
    """One line per release that the plan would empty or cut by more than half (counted
    against its inventory), naming what it would delete; None when there is none. One bad
    value (a chart condition, a selector in a template) must not delete a release."""
    lines = []
    for (cluster, component), refs in sorted(pruned.items()):
        total = len(inventory[cluster, component][1])
        if 2 * len(refs) > total:
            share = "all" if len(refs) == total else f"{len(refs)} of"
            lines.append(
                f"cluster {cluster}, component {component}: would delete {share} {total} "
                f"object(s): {', '.join(str(r) for r in refs)}"
            )
    return "\n".join(lines) or None
