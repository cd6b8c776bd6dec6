"""Verdicts of metric analysis, from measurements already taken: pure, no I/O.

Two ways of counting, one per place an analysis runs:

- a canary's `analysis` counts as Argo Rollouts does (`tally`): so many passes to succeed,
  one failure more than `failureLimit` or one error in a row more than
  `consecutiveErrorLimit` to abort;
- a `check-metrics` step times streaks as KubeVela does (`streak`): the condition must hold
  for `duration` without a failed measurement, and may stay broken for `failDuration`.

Each reads the measurements of one metric on one cluster, in the order they were taken,
and stops at the first that finishes it: a verdict, once reached, is not revised by a
later measurement (the engine may have acted on it already). `decide` then judges a whole
step over every (cluster, component, metric). The reasons are one line each, for `status`
and for the message a failed step keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hub.model.phases import Measured, Verdict
from hub.model.records import MeasurementRecord

_FINISHED = {
    Measured.PASS: Verdict.PASSED,
    Measured.FAIL: Verdict.FAILED,
    Measured.ERROR: Verdict.ERRORED,
}

# What a running step's reason tells first: what stands in the way, before mere progress.
_CONCERN = {Measured.ERROR: 0, Measured.FAIL: 1, Measured.PASS: 2}


@dataclass(frozen=True)
class Limits:
    """The counts of a canary's analysis (`hub.format.CanaryAnalysis`)."""

    success_count: int
    failure_limit: int
    consecutive_error_limit: int


Key = tuple[str, str, str]
"""What a tally is of: (cluster, component, metric); cluster "" for a measurement taken
once at a shared endpoint, component "" for a `check-metrics` step."""


@dataclass(frozen=True)
class Tally:
    """Where one metric on one cluster stands.

    For `tally` the counts are of every measurement up to the verdict (errors: in a row);
    for `streak` they are of the current streaks and run of errors."""

    verdict: Verdict
    condition: str
    """The metric's condition as written, for messages."""
    passes: int = 0
    failures: int = 0
    errors: int = 0
    last: MeasurementRecord | None = None
    """The measurement that reached the verdict; while running, the latest."""
    detail: str = ""
    """The counts against the rule `last` bears on, e.g. `2 failed measurements,
    failureLimit 1`."""

    def describe(self, cluster: str, metric: str, component: str = "") -> str:
        """One line: `cluster prod-eu: error-rate = 0.312 broke <0.05 (2 failed
        measurements, failureLimit 1)`; `component` named if given; cluster "": measured
        once, at a shared endpoint."""
        where = ", ".join(
            part
            for part in (cluster and f"cluster {cluster}", component and f"component {component}")
            if part
        )
        subject = f"{where}: {metric}" if where else metric
        last = self.last
        if last is None:
            return f"{subject}: not measured yet"
        if last.outcome is Measured.ERROR or last.value is None:
            return f"{subject}: {self.detail}: {last.message}"
        verb = "holds" if last.outcome is Measured.PASS else "broke"
        return f"{subject} = {_number(last.value)} {verb} {self.condition} ({self.detail})"


@dataclass(frozen=True)
class StepVerdict:
    """The verdict of a whole step, with what decided it (`None`: nothing did)."""

    verdict: Verdict
    reason: str
    cluster: str | None = None
    component: str | None = None
    metric: str | None = None
    value: float | None = None
    open: frozenset[Key] = frozenset()
    """The tallies still running: what the next round measures."""


def tally(measurements: Iterable[MeasurementRecord], limits: Limits, condition: str) -> Tally:
    """Argo Rollouts' counting: PASSED at `success_count` passes, FAILED at one failure more
    than `failure_limit`, ERRORED at one error in a row more than `consecutive_error_limit`
    (a pass or a failure ends the row); whichever is reached first."""
    passes = failures = errors = 0
    last = None
    verdict = Verdict.RUNNING
    for last in measurements:
        if last.outcome is Measured.PASS:
            passes, errors = passes + 1, 0
        elif last.outcome is Measured.FAIL:
            failures, errors = failures + 1, 0
        else:
            errors += 1
        verdict = (
            Verdict.FAILED
            if failures > limits.failure_limit
            else Verdict.ERRORED
            if errors > limits.consecutive_error_limit
            else Verdict.PASSED
            if passes >= limits.success_count
            else Verdict.RUNNING
        )
        if verdict.finished:
            break
    if last is None:
        detail = ""
    elif last.outcome is Measured.PASS:
        detail = f"{_count(passes, 'passed measurement')}, successCount {limits.success_count}"
    elif last.outcome is Measured.FAIL:
        detail = f"{_count(failures, 'failed measurement')}, failureLimit {limits.failure_limit}"
    else:
        detail = (
            f"{_count(errors, 'measurement error')} in a row "
            f"(consecutiveErrorLimit {limits.consecutive_error_limit})"
        )
    return Tally(verdict, condition, passes, failures, errors, last, detail)


def streak(
    measurements: Iterable[MeasurementRecord],
    duration: float,
    fail_duration: float,
    condition: str,
) -> Tally:
    """KubeVela's `check-metrics` timing (seconds): PASSED once passes have held for
    `duration` since the first of them, FAILED once failures have for `fail_duration`; a
    pass ends a failure streak and a failure a success streak. Errors end neither, but
    errors alone (no value at all) for `fail_duration` are ERRORED."""
    since: dict[Measured, float] = {}
    counts = dict.fromkeys(Measured, 0)
    last = None
    verdict = Verdict.RUNNING
    for last in measurements:
        if last.outcome is not Measured.ERROR:  # a value ends the other streak and any errors
            for other in Measured:
                if other is not last.outcome:
                    since.pop(other, None)
                    counts[other] = 0
        started = since.setdefault(last.outcome, last.at)
        counts[last.outcome] += 1
        limit = duration if last.outcome is Measured.PASS else fail_duration
        if last.at - started >= limit:
            verdict = _FINISHED[last.outcome]
            break
    if last is None:
        detail = ""
    else:
        lasted = _span(last.at - since[last.outcome])
        if last.outcome is Measured.PASS:
            detail = f"held for {lasted}, duration {_span(duration)}"
        elif last.outcome is Measured.FAIL:
            detail = f"broken for {lasted}, failDuration {_span(fail_duration)}"
        else:
            detail = f"measurement errors for {lasted} (failDuration {_span(fail_duration)})"
    passes, failures, errors = (counts[m] for m in (Measured.PASS, Measured.FAIL, Measured.ERROR))
    return Tally(verdict, condition, passes, failures, errors, last, detail)


def decide(tallies: Mapping[Key, Tally]) -> StepVerdict:
    """The verdict of a step over its tallies: FAILED if any failed (the first to), else
    ERRORED if any errored (the first to), else PASSED if all passed, else RUNNING, naming
    a tally that stands in the way. No tallies: RUNNING, for nothing was measured."""
    if not tallies:
        return StepVerdict(Verdict.RUNNING, "nothing measured yet")
    components = len({component for _, component, _ in tallies}) > 1
    running = [key for key, t in tallies.items() if t.verdict is Verdict.RUNNING]

    def deciding(verdict: Verdict, key: Key, reason: str = "") -> StepVerdict:
        cluster, component, metric = key
        last = tallies[key].last
        reason = reason or tallies[key].describe(cluster, metric, component if components else "")
        value = last.value if last else None
        return StepVerdict(verdict, reason, cluster, component, metric, value, frozenset(running))

    for verdict in (Verdict.FAILED, Verdict.ERRORED):
        finished = [key for key, t in tallies.items() if t.verdict is verdict]
        if finished:
            return deciding(verdict, min(finished, key=lambda key: _at(tallies[key])))
    if running:
        return deciding(Verdict.RUNNING, min(running, key=lambda key: _concern(tallies[key])))
    metrics = ", ".join(sorted({metric for _, _, metric in tallies}))
    clusters = {cluster for cluster, _, _ in tallies if cluster}
    where = f" on {_count(len(clusters), 'cluster')}" if clusters else ""
    return deciding(
        Verdict.PASSED,
        max(tallies, key=lambda key: _at(tallies[key])),
        f"every metric passed ({metrics}{where})",
    )


def _at(t: Tally) -> float:
    """When a tally was last measured: for a finished one, when it finished."""
    return t.last.at if t.last else float("-inf")


def _concern(t: Tally) -> tuple[int, float]:
    """What a running step's reason tells first: errors, then failures, then progress;
    of those alike, the latest."""
    return (_CONCERN[t.last.outcome], -t.last.at) if t.last else (len(_CONCERN), 0.0)


def _number(value: float) -> str:
    """A measured value, compactly: `0.312`, `1.235e+06`."""
    return f"{value:.4g}"


def _span(seconds: float) -> str:
    """A duration as Go writes it, without its zeros: `45s`, `2m10s`, `1h30m`, `0.5s`."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"
