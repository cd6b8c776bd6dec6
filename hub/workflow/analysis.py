"""Metric analysis in the workflow: every cluster of a step measured together, from the
hub, and one verdict for all of them.

Two things ask for it. A canary whose trait declares `canary.analysis` is measured during
each of its pauses, on every cluster of the deploy step at once: the step goes on once
every cluster has passed every metric, and one cluster that fails (or errs too often)
aborts the step on all of them, its canaries rolled back everywhere. A `check-metrics`
workflow step (KubeVela's) is measured the same way on every cluster of the deploy step
it follows when its query names the cluster or the cluster's own Prometheus answers it,
or once when it names one global endpoint.

Every measurement is stored as it is taken and every verdict is computed from the stored
measurements (`hub.analysis.verdicts`), so a hub killed mid-analysis counts on where it
was. Measurements wait on the application's signal, so a suspend or a newer revision
stops them at once; nothing polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from hub.analysis.prometheus import Endpoint, MeasurementError, instant
from hub.analysis.verdicts import Key, Limits, StepVerdict, Tally, decide, streak, tally
from hub.canary.objects import canary_name
from hub.fleet.registry import Registry
from hub.format import (
    ROLLOUT_TRAIT,
    Application,
    CanaryAnalysis,
    Condition,
    MissingPlaceholder,
    cluster_values,
    duration_seconds,
    expand,
    trait_properties,
)
from hub.model.phases import Measured, Verdict
from hub.model.records import (
    CHECK_GATE,
    ClusterRecord,
    MeasurementRecord,
    RolloutRecord,
    StepRecord,
    TargetRecord,
)
from hub.model.settings import DEFAULTS, Settings
from hub.model.timestamps import timestamp
from hub.model.views import MeasurementView
from hub.state.interface import AppStore
from hub.workflow.signals import Signals

log = logging.getLogger(__name__)

# Where a measurement's key leaves the component out: a `check-metrics` step's.
NO_COMPONENT = ""


@dataclass(frozen=True)
class Probe:
    """One metric to measure on one cluster: the query as sent, and where to."""

    cluster: str
    component: str
    metric: str
    condition: Condition
    query: str
    endpoint: Endpoint | None
    problem: str = ""
    """Why it cannot be measured (no Prometheus for the cluster, a label the query names
    that the cluster lacks): each attempt is a measurement error saying so."""

    @property
    def key(self) -> Key:
        return (self.cluster, self.component, self.metric)


# The verdict of one (cluster, component, metric) from its measurements, oldest first.
Judge = Callable[[Key, Sequence[MeasurementRecord]], Tally]


class Analyses:
    def __init__(
        self,
        apps: AppStore,
        registry: Registry,
        *,
        signals: Signals,
        application: Callable[[str, int], Application],
        settings: Settings = DEFAULTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`application(app, revision)` reads a revision's spec back; `clock` gives the
        epoch seconds a measurement is stamped with (tests give a virtual one)."""
        self.apps = apps
        self.registry = registry
        self.signals = signals
        self._application = application
        self._timeout = settings.prometheus_timeout
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # canary pauses

    def passed(self, target: TargetRecord, gate: int) -> bool:
        """Whether canary step `gate` of the target's workflow step has passed its analysis
        on every cluster (true when its canary asks for none): what lets a pause go on."""
        if _analysis(target) is None:
            return True
        canaries = self._canaries(target.app, target.revision, target.step)
        verdict = self._verdict(target.app, target.revision, target.step, gate, canaries)
        return verdict.verdict is Verdict.PASSED

    async def pause(
        self, app: str, revision: int, step: str, paused: list[TargetRecord]
    ) -> StepVerdict | None:
        """Measure the pause every canary of the step has reached, until a verdict; None
        when these canaries ask for no analysis, or passed it already."""
        held = {(t.cluster, t.component) for t in paused}
        canaries = [
            c for c in self._canaries(app, revision, step) if (c[0].cluster, c[0].component) in held
        ]
        if not canaries:
            return None
        gate = canaries[0][1].step
        if any(rollout.step != gate for _, rollout, _ in canaries):
            return None  # not all at one pause: the engine holds them as usual
        verdict = self._verdict(app, revision, step, gate, canaries)
        if verdict.verdict is Verdict.PASSED:
            return None
        analysis = canaries[0][2]
        probes = [p for c in canaries for p in self._canary_probes(app, *c)]
        limits = _limits(analysis)
        conditions = {p.key: str(p.condition) for p in probes}
        self.apps.add_event(
            app,
            revision=revision,
            step=step,
            message=f"step {step}: analysing canary step {gate + 1} on "
            f"{len({p.cluster for p in probes})} cluster(s)",
        )
        return await self._measure_until(
            app,
            revision,
            step,
            gate,
            probes,
            lambda key, ms: tally(ms, limits, conditions[key]),
            duration_seconds(analysis.interval),
        )

    def _canaries(
        self, app: str, revision: int, step: str
    ) -> list[tuple[TargetRecord, RolloutRecord, CanaryAnalysis]]:
        """The targets of a workflow step whose canary (of this revision) has analysis."""
        rollouts = {
            (r.cluster, r.component): r for r in self.apps.rollouts(app) if r.revision == revision
        }
        found = []
        for target in self.apps.targets(app, revision):
            analysis = _analysis(target)
            rollout = rollouts.get((target.cluster, target.component))
            if target.step == step and analysis is not None and rollout is not None:
                found.append((target, rollout, analysis))
        return found

    def _verdict(
        self,
        app: str,
        revision: int,
        step: str,
        gate: int,
        canaries: Sequence[tuple[TargetRecord, RolloutRecord, CanaryAnalysis]],
    ) -> StepVerdict:
        rules = _rules(canaries)
        return self._decide(
            self.apps.measurements(app, revision, step, gate),
            rules,
            lambda key, ms: tally(ms, rules[key][1], rules[key][0]),
        )

    def _canary_probes(
        self, app: str, target: TargetRecord, rollout: RolloutRecord, analysis: CanaryAnalysis
    ) -> list[Probe]:
        cluster = self.registry.store.cluster(target.cluster)
        values = cluster_values(cluster.name, cluster.labels) | {
            "app": app,
            "namespace": target.namespace,
            "component": target.component,
            "workload": rollout.name,
            "canary.workload": canary_name(rollout.name),
            "stable.hash": rollout.stable_hash or "",
        }
        return [
            self._probe(
                cluster,
                target.component,
                metric.name,
                metric.condition,
                metric.query,
                values,
                analysis.endpoint_of(metric),
            )
            for metric in analysis.metrics
        ]

    # status

    def view(self, app: str, revision: int, step: StepRecord) -> list[MeasurementView]:
        """The latest measurement of every metric on every cluster of the step's latest
        measured pause (or of its `check-metrics`), with where its count stands."""
        stored = self.apps.measurements(app, revision, step.name)
        if not stored:
            return []
        gate = stored[-1].gate
        judge = self._judge(app, revision, step, gate)
        grouped: dict[Key, list[MeasurementRecord]] = {}
        for m in stored:
            if m.gate == gate:
                grouped.setdefault((m.cluster, m.component, m.metric), []).append(m)
        views: list[MeasurementView] = []
        for key, taken in sorted(grouped.items()):
            last, counted = taken[-1], judge(key, taken) if judge is not None else None
            views.append(
                {
                    "cluster": last.cluster or None,
                    "component": last.component or None,
                    "canaryStep": None if gate == CHECK_GATE else gate + 1,
                    "metric": last.metric,
                    "verdict": counted.verdict if counted else Verdict.RUNNING,
                    "value": last.value,
                    "condition": counted.condition if counted else "",
                    "outcome": last.outcome,
                    "message": last.message,
                    "at": timestamp(last.at),
                    "passes": counted.passes if counted else 0,
                    "failures": counted.failures if counted else 0,
                    "errors": counted.errors if counted else 0,
                }
            )
        return views

    def _judge(self, app: str, revision: int, step: StepRecord, gate: int) -> Judge | None:
        """How the measurements of one gate of a step are counted, from its spec."""
        if gate == CHECK_GATE:
            props = self._application(app, revision).check_metrics_step(step.name).properties
            condition = str(props.condition)
            duration = duration_seconds(props.duration)
            fail_duration = duration_seconds(props.fail_duration)
            return lambda key, ms: streak(ms, duration, fail_duration, condition)
        rules = _rules(self._canaries(app, revision, step.name))
        if not rules:
            return None
        return lambda key, ms: tally(ms, rules[key][1], rules[key][0])

    # check-metrics steps

    async def check(self, app: str, revision: int, step: StepRecord) -> StepVerdict:
        """Measure a `check-metrics` step until its verdict."""
        spec = self._application(app, revision)
        found = spec.check_metrics_step(step.name)
        props = found.properties
        deploy_step = spec.deploy_step_before(step.name)
        names = sorted(
            {t.cluster for t in self.apps.targets(app, revision) if t.step == deploy_step}
        )
        clusters: list[ClusterRecord | None] = [self.registry.store.cluster(n) for n in names]
        if not props.measures_each_cluster:
            clusters = [None]  # one global measurement: the fleet's one number
        probes = [
            self._probe(
                cluster,
                NO_COMPONENT,
                found.name,
                props.condition,
                props.query,
                {"app": app}
                | (cluster_values(cluster.name, cluster.labels) if cluster is not None else {}),
                props.metric_endpoint,
            )
            for cluster in clusters
        ]
        duration = duration_seconds(props.duration)
        fail_duration = duration_seconds(props.fail_duration)
        conditions = {p.key: str(p.condition) for p in probes}
        return await self._measure_until(
            app,
            revision,
            step.name,
            CHECK_GATE,
            probes,
            lambda key, ms: streak(ms, duration, fail_duration, conditions[key]),
            duration_seconds(props.interval),
        )

    # measuring

    def _probe(
        self,
        cluster: ClusterRecord | None,
        component: str,
        metric: str,
        condition: Condition,
        query: str,
        values: Mapping[str, str],
        endpoint_url: str | None,
    ) -> Probe:
        name = cluster.name if cluster is not None else ""
        problem, expanded = "", query
        try:
            expanded = expand(query, values)
        except MissingPlaceholder as e:
            problem = str(e)
        endpoint = self._endpoint(cluster, endpoint_url)
        if endpoint is None and not problem:
            problem = (
                f"no metricEndpoint, and cluster {name} has no Prometheus registered "
                f"(`flotilla cluster prometheus {name} URL`)"
            )
        return Probe(name, component, metric, condition, expanded, endpoint, problem)

    def _endpoint(self, cluster: ClusterRecord | None, url: str | None) -> Endpoint | None:
        """The endpoint named in the file, with the credentials of a cluster that
        registered that same URL; else the cluster's own Prometheus."""
        if url is None:
            own = cluster.prometheus if cluster is not None else {}
            return _endpoint_of(own) if own else None
        url = url.rstrip("/")
        for record in self.registry.clusters():
            if record.prometheus.get("url") == url:
                return _endpoint_of(record.prometheus)
        return Endpoint(url)

    async def _measure_until(
        self,
        app: str,
        revision: int,
        step: str,
        gate: int,
        probes: Sequence[Probe],
        judge: Judge,
        interval: float,
    ) -> StepVerdict:
        """Measure every probe whose verdict is open, every `interval`, until the step's
        verdict; a suspend or a newer revision stops it with `RUNNING`. Counting starts
        from what the store holds, so a restarted hub goes on where it was."""
        keys = {p.key: p.condition for p in probes}
        if not keys:
            return StepVerdict(Verdict.FAILED, "no cluster to measure: none was deployed to")
        while True:
            stored = self.apps.measurements(app, revision, step, gate)
            verdict = self._decide(stored, keys, judge)
            record = self.apps.app(app)
            if verdict.verdict.finished or record.revision != revision or record.suspend:
                if verdict.verdict.finished:
                    self.apps.add_event(
                        app,
                        f"step {step}: analysis {verdict.verdict}: {verdict.reason}",
                        revision=revision,
                        step=step,
                    )
                return verdict
            due = (stored[-1].at + interval - self._clock()) if stored else 0.0
            if due > 0:
                await self.signals.wait(app, due)
                continue
            open_keys = verdict.open
            taken = await asyncio.gather(
                *(self._measure(app, revision, step, gate, p) for p in probes if p.key in open_keys)
            )
            for measurement in taken:
                self.apps.add_measurement(measurement)

    def _decide(
        self,
        stored: Sequence[MeasurementRecord],
        keys: Mapping[Key, object],
        judge: Judge,
    ) -> StepVerdict:
        grouped: dict[Key, list[MeasurementRecord]] = {k: [] for k in keys}
        for m in stored:
            key = (m.cluster, m.component, m.metric)
            if key in grouped:
                grouped[key].append(m)
        return decide({key: judge(key, ms) for key, ms in grouped.items()})

    async def _measure(
        self, app: str, revision: int, step: str, gate: int, probe: Probe
    ) -> MeasurementRecord:
        at = self._clock()
        value: float | None = None
        outcome, message = Measured.ERROR, probe.problem
        if not probe.problem and probe.endpoint is not None:
            try:
                value = await instant(
                    self._client(), probe.endpoint, probe.query, timeout=self._timeout
                )
            except MeasurementError as e:
                message = str(e)
            else:
                outcome = Measured.PASS if probe.condition.holds(value) else Measured.FAIL
        return MeasurementRecord(
            app=app,
            revision=revision,
            step=step,
            gate=gate,
            cluster=probe.cluster,
            component=probe.component,
            metric=probe.metric,
            at=at,
            value=value,
            outcome=outcome,
            message=message,
        )

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


def _analysis(target: TargetRecord) -> CanaryAnalysis | None:
    props = target.spec.trait(ROLLOUT_TRAIT)
    return None if props is None else trait_properties(ROLLOUT_TRAIT, props).canary.analysis


def _rules(
    canaries: Sequence[tuple[TargetRecord, RolloutRecord, CanaryAnalysis]],
) -> dict[Key, tuple[str, Limits]]:
    """Each measured (cluster, component, metric) with its condition and its limits."""
    return {
        (t.cluster, t.component, m.name): (str(m.condition), _limits(a))
        for t, _, a in canaries
        for m in a.metrics
    }


def _limits(analysis: CanaryAnalysis) -> Limits:
    return Limits(
        success_count=analysis.success_count,
        failure_limit=analysis.failure_limit,
        consecutive_error_limit=analysis.consecutive_error_limit,
    )


def _endpoint_of(access: Mapping[str, str]) -> Endpoint:
    return Endpoint(
        access["url"],
        token=access.get("token"),
        username=access.get("username"),
        password=access.get("password"),
    )
