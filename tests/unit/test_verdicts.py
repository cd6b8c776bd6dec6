"""Verdicts of metric analysis: Argo's counting for canaries, KubeVela's streaks for
`check-metrics`, and one verdict for a step over every cluster, with its one-line reason."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from hub.analysis.verdicts import Key, Limits, StepVerdict, Tally, decide, streak, tally
from hub.model.phases import Measured, Verdict
from hub.model.records import MeasurementRecord

P, F, E = Measured.PASS, Measured.FAIL, Measured.ERROR
UNREACHABLE = "Prometheus at http://127.0.0.1:9090 unreachable: Connection refused"
LIMITS = Limits(success_count=3, failure_limit=1, consecutive_error_limit=2)


def measured(
    outcomes: Iterable[Measured],
    *,
    every: float = 10.0,
    cluster: str = "prod-eu",
    component: str = "web",
    metric: str = "error-rate",
) -> list[MeasurementRecord]:
    """One measurement per outcome, `every` seconds apart from t=0; a pass reads 0.01, a
    failure 0.312."""
    return [
        MeasurementRecord(
            app="web",
            revision=2,
            step="deploy-prod",
            gate=0,
            cluster=cluster,
            component=component,
            metric=metric,
            at=index * every,
            value=None if outcome is E else 0.01 if outcome is P else 0.312,
            outcome=outcome,
            message=UNREACHABLE if outcome is E else "",
        )
        for index, outcome in enumerate(outcomes)
    ]


def counted(*outcomes: Measured, limits: Limits = LIMITS) -> Tally:
    return tally(measured(outcomes), limits, "<0.05")


# --- tally: Argo Rollouts' counting -------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "verdict", "counts"),
    [
        ((), Verdict.RUNNING, (0, 0, 0)),
        ((P, P), Verdict.RUNNING, (2, 0, 0)),
        ((P, P, P), Verdict.PASSED, (3, 0, 0)),
        ((P, F, P, P), Verdict.PASSED, (3, 1, 0)),  # failures within failureLimit
        ((F, F), Verdict.FAILED, (0, 2, 0)),
        ((F, P, P, F), Verdict.FAILED, (2, 2, 0)),  # failures need not be in a row
        ((E, E), Verdict.RUNNING, (0, 0, 2)),
        ((E, E, E), Verdict.ERRORED, (0, 0, 3)),
        ((E, E, P, E, E, F, E, E), Verdict.RUNNING, (1, 1, 2)),  # a value ends a row of errors
        ((E, P, E, P, E, P), Verdict.PASSED, (3, 0, 0)),  # errors do not stop passes counting
    ],
)
def test_tally_counts_as_argo_does(
    outcomes: tuple[Measured, ...], verdict: Verdict, counts: tuple[int, int, int]
) -> None:
    result = counted(*outcomes)
    assert result.verdict is verdict
    assert (result.passes, result.failures, result.errors) == counts


@pytest.mark.parametrize(
    ("outcomes", "verdict", "finishing"),
    [
        ((P, P, P, F, F), Verdict.PASSED, 2),
        ((F, F, P, P, P), Verdict.FAILED, 1),
        ((E, E, E, P, P, P), Verdict.ERRORED, 2),
        ((P, P, E, E, E, P), Verdict.ERRORED, 4),
    ],
)
def test_the_first_rule_to_finish_wins_and_later_measurements_change_nothing(
    outcomes: tuple[Measured, ...], verdict: Verdict, finishing: int
) -> None:
    result = counted(*outcomes)
    assert result.verdict is verdict
    assert result.last == measured(outcomes)[finishing]


def test_limits_of_zero_finish_at_the_first_failure_or_error() -> None:
    strict = Limits(success_count=1, failure_limit=0, consecutive_error_limit=0)
    assert counted(F, limits=strict).verdict is Verdict.FAILED
    assert counted(E, limits=strict).verdict is Verdict.ERRORED
    assert counted(P, limits=strict).verdict is Verdict.PASSED


@pytest.mark.parametrize(
    ("outcomes", "line"),
    [
        ((), "cluster prod-eu: error-rate: not measured yet"),
        (
            (P,),
            "cluster prod-eu: error-rate = 0.01 holds <0.05 (1 passed measurement, successCount 3)",
        ),
        (
            (F, P, F),
            "cluster prod-eu: error-rate = 0.312 broke <0.05 (2 failed measurements, "
            "failureLimit 1)",
        ),
        (
            (E, E, E),
            "cluster prod-eu: error-rate: 3 measurement errors in a row "
            f"(consecutiveErrorLimit 2): {UNREACHABLE}",
        ),
    ],
)
def test_a_tally_says_where_it_stands_in_one_line(
    outcomes: tuple[Measured, ...], line: str
) -> None:
    assert counted(*outcomes).describe("prod-eu", "error-rate") == line


def test_a_description_names_the_component_when_asked_and_no_cluster_when_there_is_none() -> None:
    result = counted(P)
    assert result.describe("prod-eu", "error-rate", "web").startswith(
        "cluster prod-eu, component web: error-rate = 0.01"
    )
    assert result.describe("", "slo").startswith("slo = 0.01 holds")


# --- streak: KubeVela's check-metrics -----------------------------------------------------------


def timed(*outcomes: Measured, duration: float = 30.0, fail_duration: float = 20.0) -> Tally:
    return streak(measured(outcomes), duration, fail_duration, ">=1")


@pytest.mark.parametrize(
    ("outcomes", "verdict", "finishing"),
    [
        ((), Verdict.RUNNING, None),
        ((P, P, P), Verdict.RUNNING, 2),  # held 20s of 30s
        ((P, P, P, P), Verdict.PASSED, 3),  # held 30s
        ((P, P, F, P, P, P), Verdict.RUNNING, 5),  # a failure restarts the success streak
        ((P, P, F, P, P, P, P), Verdict.PASSED, 6),
        ((P, E, E, P), Verdict.PASSED, 3),  # errors end no streak
        ((F, F, F), Verdict.FAILED, 2),  # broken for 20s
        ((F, F, P, F, F), Verdict.RUNNING, 4),  # a pass restarts the failure streak
        ((F, E, F), Verdict.FAILED, 2),
        ((E, E, E), Verdict.ERRORED, 2),  # errors alone for failDuration
        ((E, E, P, E, E), Verdict.RUNNING, 4),  # a value ends a run of errors
        ((P, P, P, P, F, F, F), Verdict.PASSED, 3),  # once passed, it stays passed
        ((F, F, F, P, P, P, P), Verdict.FAILED, 2),
    ],
)
def test_streak_times_as_kubevela_does(
    outcomes: tuple[Measured, ...], verdict: Verdict, finishing: int | None
) -> None:
    result = timed(*outcomes)
    assert result.verdict is verdict
    assert result.last == (None if finishing is None else measured(outcomes)[finishing])


def test_a_duration_of_zero_passes_at_the_first_pass() -> None:
    assert timed(E, F, P, duration=0).verdict is Verdict.PASSED


def test_a_streak_counts_its_current_streaks() -> None:
    result = timed(P, F, F, E, duration=300, fail_duration=300)
    assert (result.passes, result.failures, result.errors) == (0, 2, 1)


@pytest.mark.parametrize(
    ("outcomes", "every", "line"),
    [
        ((P,), 10.0, "cluster prod-eu: slo = 0.01 holds >=1 (held for 0s, duration 5m)"),
        (
            (P,) * 14,
            10.0,
            "cluster prod-eu: slo = 0.01 holds >=1 (held for 2m10s, duration 5m)",
        ),
        ((F,) * 3, 60.0, "cluster prod-eu: slo = 0.312 broke >=1 (broken for 2m, failDuration 2m)"),
        (
            (F, E),
            0.5,
            "cluster prod-eu: slo: measurement errors for 0s (failDuration 2m): " + UNREACHABLE,
        ),
        (
            (E,) * 5,  # errored at the second
            5405.0,
            "cluster prod-eu: slo: measurement errors for 1h30m5s (failDuration 2m): "
            + UNREACHABLE,
        ),
    ],
)
def test_a_streak_says_how_long_it_has_lasted(
    outcomes: tuple[Measured, ...], every: float, line: str
) -> None:
    result = streak(measured(outcomes, every=every), 300.0, 120.0, ">=1")
    assert result.describe("prod-eu", "slo") == line


# --- decide: one verdict for a step -------------------------------------------------------------


def tallies(**per_cluster: tuple[Measured, ...]) -> dict[Key, Tally]:
    """A tally of error-rate per cluster, measured from t=0 on each."""
    return {
        (cluster, "web", "error-rate"): tally(measured(outcomes, cluster=cluster), LIMITS, "<0.05")
        for cluster, outcomes in per_cluster.items()
    }


def test_nothing_measured_is_running() -> None:
    assert decide({}) == StepVerdict(Verdict.RUNNING, "nothing measured yet")


def test_one_failed_cluster_fails_the_step_whatever_the_others_say() -> None:
    verdict = decide(tallies(prod_us=(P, P, P), prod_eu=(P, F, F), prod_ap=(E, E, E)))
    assert verdict == StepVerdict(
        Verdict.FAILED,
        "cluster prod_eu: error-rate = 0.312 broke <0.05 (2 failed measurements, failureLimit 1)",
        "prod_eu",
        "web",
        "error-rate",
        0.312,
        frozenset(),
    )


def test_of_several_failed_the_first_to_fail_decides() -> None:
    late, early = (P, P, F, F), (F, F)
    assert decide(tallies(late=late, early=early)).cluster == "early"


def test_errors_abort_when_nothing_failed() -> None:
    verdict = decide(tallies(prod_us=(P, P), prod_eu=(E, E, E)))
    assert verdict.verdict is Verdict.ERRORED
    assert verdict.reason == (
        "cluster prod_eu: error-rate: 3 measurement errors in a row (consecutiveErrorLimit 2): "
        f"{UNREACHABLE}"
    )
    assert verdict.value is None
    assert verdict.open == {("prod_us", "web", "error-rate")}


def test_every_tally_passed_passes_the_step() -> None:
    passed = tallies(prod_us=(P, P, P), prod_eu=(F, P, P, P))
    passed[("prod_eu", "web", "latency")] = passed[("prod_eu", "web", "error-rate")]
    verdict = decide(passed)
    assert verdict.verdict is Verdict.PASSED
    assert verdict.reason == "every metric passed (error-rate, latency on 2 clusters)"
    assert (verdict.cluster, verdict.metric, verdict.open) == ("prod_eu", "error-rate", frozenset())


def test_a_running_step_names_what_stands_in_the_way_and_what_is_open() -> None:
    verdict = decide(tallies(a=(P, P, P), b=(P, P), c=(P, F), d=(P, E)))
    assert verdict.verdict is Verdict.RUNNING
    assert verdict.cluster == "d"
    assert verdict.reason.startswith("cluster d: error-rate: 1 measurement error in a row")
    assert verdict.open == {
        ("b", "web", "error-rate"),
        ("c", "web", "error-rate"),
        ("d", "web", "error-rate"),
    }
    without_errors = decide(tallies(a=(P, P, P), b=(P, P), c=(P, F)))
    assert without_errors.reason == (
        "cluster c: error-rate = 0.312 broke <0.05 (1 failed measurement, failureLimit 1)"
    )


def test_components_are_named_when_a_step_has_several() -> None:
    web = measured((F, F), component="web")
    api = measured((P,), component="api")
    verdict = decide(
        {
            ("prod-eu", "web", "error-rate"): tally(web, LIMITS, "<0.05"),
            ("prod-eu", "api", "error-rate"): tally(api, LIMITS, "<0.05"),
        }
    )
    assert verdict.reason.startswith("cluster prod-eu, component web: error-rate = 0.312 broke")


def test_a_check_measured_once_names_no_cluster() -> None:
    once = streak(measured((F, F, F), cluster="", component=""), 300.0, 20.0, "==0")
    verdict = decide({("", "", "fleet-slo"): once})
    assert verdict.verdict is Verdict.FAILED
    assert verdict.reason == "fleet-slo = 0.312 broke ==0 (broken for 20s, failDuration 20s)"
