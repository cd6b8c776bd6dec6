"""The workflow engine under virtual time, driven through its injected callables.

The engine runs on a real store (SQLite in tmp_path) and a real supervisor; `deploy` is a
script per cluster, and the canary tests run the real `Rollouts` state machine over a
scripted cluster. looptime fast-forwards every wait, so step timeouts and pauses of an
hour take no real time, and each wait of a test is bounded (`until`), so a broken engine
fails its test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from clusters.apply import AppliedRef
from clusters.client import ClusterClient
from clusters.errors import Forbidden, Unauthorized, Unreachable
from hub.canary import CanaryError, CanaryPlan, Phase
from hub.errors import Conflict
from hub.model.phases import AppPhase, Outcome, Stage, StepPhase, StepType, TargetPhase, Verdict
from hub.model.records import AppRecord, RolloutRecord, StepRecord, TargetRecord
from hub.model.targets import ChartSpec, TargetSpec
from hub.state.apps import SqliteAppStore
from hub.state.schema import MIGRATIONS, SCHEMA
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from hub.workflow.deploy import TargetFailed
from hub.workflow.engine import RUNNER, UNREACHABLE_RETRY, Engine, Judged
from hub.workflow.rollout import CanaryOutcome, Rollouts
from hub.workflow.signals import Signals
from hub.workflow.verbs import Verbs
from hub.workflow.waiting import Waits

pytestmark = pytest.mark.looptime

APP = "shop"
STEP_TIMEOUT = 300.0
# Virtual seconds any one wait of a test may take before the test fails.
WITHIN = 7200.0
CHART = ChartSpec("local", "/charts", "web", "1.0.0", digest="sha256:0")


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let virtual time pass in small steps until `condition` holds; fail if it never does."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"{what}: not within {WITHIN:.0f} virtual seconds")
        await asyncio.sleep(0.1)


# --- the engine's world: a revision's spec, the clusters, a hub ----------------------------------


@dataclass
class Workflow:
    """A revision as far as the engine sees it through `order` and `settings`."""

    generations: list[list[str]]
    clusters: dict[str, list[str]]
    """Deploy step -> the clusters it deploys to (one component, `web`)."""
    suspend: dict[str, float | None] = field(default_factory=dict)
    """Suspend step -> its duration in seconds, or None to wait for `resume`."""
    trait: dict[str, Any] | None = None
    """The `kruise-rollout` trait's properties on every target."""


THREE_ENVS = Workflow(
    [["deploy-dev"], ["deploy-prod"]], {"deploy-dev": ["dev"], "deploy-prod": ["eu", "us"]}
)


def with_approval(duration: float | None = None) -> Workflow:
    return Workflow(
        [["deploy-dev"], ["approve"], ["deploy-prod"]],
        THREE_ENVS.clusters,
        suspend={"approve": duration},
    )


Script = Callable[[TargetRecord, bool], Awaitable[bool]]


@dataclass
class Call:
    revision: int
    step: str
    cluster: str
    resumed: bool
    at: float
    """When the engine called `deploy`, in loop (virtual) time."""
    outcome: str = "running"
    """Then one of: healthy, paused, failed, cancelled."""


class Clusters:
    """The engine's `deploy`: each cluster runs the script a test gave it (healthy at once
    by default) and marks its target the way `Deployer` does."""

    def __init__(self, apps: SqliteAppStore) -> None:
        self.apps = apps
        self.scripts: dict[str, Script] = {}
        self.calls: list[Call] = []
        self._in_flight: dict[tuple[int, str, str], int] = {}
        self.most_in_flight = 0
        """The most deploys of one target at once: 2 would mean two runners."""

    async def __call__(self, target: TargetRecord, *, resumed: bool = False) -> bool:
        call = Call(
            target.revision,
            target.step,
            target.cluster,
            resumed,
            asyncio.get_running_loop().time(),
        )
        self.calls.append(call)
        key = (target.revision, target.step, target.cluster)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        self.most_in_flight = max(self.most_in_flight, self._in_flight[key])
        try:
            done = await self.scripts.get(target.cluster, self.healthy)(target, resumed)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        except Exception:
            call.outcome = "failed"
            raise
        finally:
            self._in_flight[key] -= 1
        call.outcome = "healthy" if done else "paused"
        return done

    def mark(self, target: TargetRecord, phase: TargetPhase, message: str = "") -> None:
        target.phase, target.message = phase, message
        self.apps.put_target(target)

    async def healthy(self, target: TargetRecord, resumed: bool) -> bool:
        self.mark(target, TargetPhase.HEALTHY)
        return True

    def held(self, gate: asyncio.Event) -> Script:
        """Healthy once the test sets `gate`."""

        async def script(target: TargetRecord, resumed: bool) -> bool:
            await gate.wait()
            return await self.healthy(target, resumed)

        return script

    async def paused_canary(self, target: TargetRecord, resumed: bool) -> bool:
        """A canary whose first step is ready and pauses; a resume finishes it."""
        if resumed:
            return await self.healthy(target, resumed)
        self.mark(target, TargetPhase.PAUSED, "paused at step 1/2 (20%)")
        return False

    def made(self, cluster: str | None = None, step: str | None = None) -> list[Call]:
        return [c for c in self.calls if cluster in (None, c.cluster) and step in (None, c.step)]

    def called(self) -> list[str]:
        return [c.cluster for c in self.calls]


class Hub:
    """An engine on a store at `path`, with a supervisor that restarts quickly. `workflows`
    is what the stored specs would say; a second Hub on the same path and workflows is
    the same hub started again."""

    def __init__(self, path: Path, workflows: dict[int, Workflow]) -> None:
        self.store = SqliteStore(path)
        self.apps = SqliteAppStore(self.store)
        self.supervisor = Supervisor(first_restart=1.0)
        self.signals = Signals()
        self.clusters = Clusters(self.apps)
        self.deploy: Callable[..., Awaitable[bool]] = self.clusters
        self.workflows = workflows
        self.succeeded: list[tuple[str, int]] = []
        self.removed: list[str] = []
        self.removal = asyncio.Event()  # set: removals finish (a test may clear it first)
        self.removal.set()
        self.engine = Engine(
            self.apps,
            deploy=self._deploy,
            order=lambda app, revision: self.workflows[revision].generations,
            step_settings=self._settings,
            after_success=self._after_success,
            analyse_pause=self._analyse_pause,
            check_metrics=self._check_metrics,
            remove=self._remove,
            supervisor=self.supervisor,
            signals=self.signals,
            step_timeout=STEP_TIMEOUT,
            clock=asyncio.get_running_loop().time,
        )
        self.verbs = Verbs(self.engine)
        # What the metric analysis of each canary pause says, in turn, after `analysis_time`
        # (virtual) seconds; `passed_gates`: the canary steps whose analysis has passed
        # (None: the canaries ask for none).
        self.pause_verdicts: list[Judged] = []
        self.analysis_time = 0.0
        self.passed_gates: set[int] | None = None
        self.analysed: list[tuple[str, list[str], float]] = []

    async def _analyse_pause(
        self, app: str, revision: int, step: str, paused: list[TargetRecord]
    ) -> Judged | None:
        gate = self.apps.rollout(app, paused[0].cluster, paused[0].component)
        if self.passed_gates is None or gate is None or gate.step in self.passed_gates:
            return None
        loop = asyncio.get_running_loop()
        self.analysed.append((step, sorted(t.cluster for t in paused), loop.time()))
        await asyncio.sleep(self.analysis_time)
        judged = self.pause_verdicts.pop(0)
        if judged.verdict is Verdict.PASSED:
            self.passed_gates.add(gate.step)
        return judged

    async def _check_metrics(self, app: str, revision: int, step: StepRecord) -> Judged:
        return Judged(Verdict.PASSED)

    def up(self, workflow: Workflow) -> int:
        """A new revision, and the engine told of it, as `flotilla up` does."""
        steps = [
            (name, StepType.SUSPEND if name in workflow.suspend else StepType.DEPLOY)
            for generation in workflow.generations
            for name in generation
        ]
        traits = {"kruise-rollout": workflow.trait} if workflow.trait else {}
        spec = TargetSpec("helm", chart=CHART, traits=traits)
        targets = [
            TargetRecord(
                app=APP,
                revision=0,
                step=step,
                cluster=cluster,
                component="web",
                namespace="shop",
                release="web",
                chart="web-1.0.0",
                spec=spec,
                phase=TargetPhase.PENDING,
            )
            for step, clusters in workflow.clusters.items()
            for cluster in clusters
        ]
        revision = self.apps.create_revision(
            APP,
            spec={},
            digest=f"digest-{len(self.workflows)}",
            publish_version="",
            source="test",
            base=".",
            steps=steps,
            targets=targets,
        )
        self.workflows[revision.number] = workflow
        self.engine.kick(APP)
        return revision.number

    async def _deploy(self, target: TargetRecord, *, resumed: bool = False) -> bool:
        return await self.deploy(target, resumed=resumed)

    def _settings(
        self, app: str, revision: int, step: str
    ) -> tuple[bool, int | None, float | None]:
        return True, None, self.workflows[revision].suspend.get(step)

    async def _after_success(self, app: str, revision: int) -> None:
        self.succeeded.append((app, revision))

    async def _remove(self, app: str) -> None:
        """What Applications._remove does once every cluster let go: forget the app."""
        self.removed.append(app)
        await self.removal.wait()
        self.apps.delete_app(app)

    def delete(self) -> None:
        """What the delete verb writes before it waits, as `flotilla delete` does."""
        self.apps.set_app(APP, phase=AppPhase.DELETING, message="deleting from every cluster")
        self.engine.kick(APP)

    def app(self) -> AppRecord:
        return self.apps.app(APP)

    def step(self, name: str) -> StepRecord:
        return next(s for s in self.apps.steps(APP, self.app().revision) if s.name == name)

    def target(self, step: str, cluster: str) -> TargetRecord:
        return next(
            t
            for t in self.apps.targets(APP, self.app().revision)
            if (t.step, t.cluster) == (step, cluster)
        )

    def running(self) -> bool:
        return self.supervisor.running(RUNNER + APP)

    async def settled(self) -> None:
        """Until the runner has nothing left to do (done, failed, or waiting for a person)."""
        await until(lambda: not self.running(), "the runner ends")

    async def close(self) -> None:
        await self.engine.stop()
        await self.supervisor.close()
        self.store.close()


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    hub = Hub(tmp_path / "flotilla.db", {})
    yield hub
    await hub.close()


# --- suspend, resume, timed pauses ----------------------------------------------------------------


async def test_an_operator_suspend_takes_effect_between_steps(hub: Hub) -> None:
    gate = asyncio.Event()
    hub.clusters.scripts["dev"] = hub.clusters.held(gate)
    hub.up(THREE_ENVS)
    await until(lambda: bool(hub.clusters.made("dev")), "dev is being deployed")
    with pytest.raises(Conflict, match="still running; wait or suspend it first"):
        hub.verbs.restart(APP)
    with pytest.raises(Conflict, match="nothing waits for a resume yet: retry once"):
        hub.verbs.resume(APP)
    hub.verbs.suspend(APP)
    gate.set()
    await hub.settled()

    assert hub.step("deploy-dev").phase is StepPhase.SUCCEEDED  # the step under way finished
    assert (hub.app().phase, hub.app().message) == (AppPhase.SUSPENDED, "suspended by the operator")
    assert hub.clusters.called() == ["dev"]
    assert hub.verbs.resume(APP) == "workflow"
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert hub.clusters.called() == ["dev", "eu", "us"]
    assert hub.succeeded == [(APP, 1)]


async def test_resume_approves_a_suspend_step(hub: Hub) -> None:
    hub.up(with_approval())
    await hub.settled()
    assert hub.step("approve").phase is StepPhase.SUSPENDED
    assert hub.app().phase is AppPhase.SUSPENDED
    assert "flotilla workflow resume shop" in hub.app().message
    assert hub.clusters.called() == ["dev"]

    assert hub.verbs.resume(APP) == "approve"
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert hub.clusters.called() == ["dev", "eu", "us"]
    with pytest.raises(Conflict, match="is not suspended"):
        hub.verbs.resume(APP)


async def test_resume_advances_a_paused_canary_step_on_every_cluster_together(hub: Hub) -> None:
    gate = asyncio.Event()

    async def us(target: TargetRecord, resumed: bool) -> bool:
        await gate.wait()
        return await hub.clusters.paused_canary(target, resumed)

    hub.clusters.scripts.update(eu=hub.clusters.paused_canary, us=us)
    hub.up(THREE_ENVS)
    await until(lambda: hub.target("deploy-prod", "eu").phase is TargetPhase.PAUSED, "eu pauses")
    assert hub.step("deploy-prod").phase is StepPhase.RUNNING  # until us is paused too
    gate.set()
    await hub.settled()
    prod = hub.step("deploy-prod")
    assert (prod.phase, prod.message) == (StepPhase.PAUSED, "canary paused at step 1/2 (20%)")
    assert hub.app().phase is AppPhase.SUSPENDED

    assert hub.verbs.resume(APP) == "deploy-prod"
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert [(c.cluster, c.resumed) for c in hub.clusters.made(step="deploy-prod")] == [
        ("eu", False),
        ("us", False),
        ("eu", True),
        ("us", True),
    ]


async def test_a_timed_suspend_step_resumes_by_itself_when_its_time_is_up(hub: Hub) -> None:
    hub.up(with_approval(duration=90))
    await until(lambda: hub.step("approve").phase is StepPhase.SUSPENDED, "approve suspends")
    assert hub.running()  # the runner waits for the deadline itself
    deadline = hub.step("approve").resume_at
    assert deadline == pytest.approx(hub.clusters.made("dev")[0].at + 90)
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert [c.at for c in hub.clusters.made(step="deploy-prod")] == pytest.approx([deadline] * 2)


async def test_resume_cuts_a_timed_suspend_step_short_at_once(hub: Hub) -> None:
    hub.up(with_approval(duration=3600))
    await until(lambda: hub.step("approve").phase is StepPhase.SUSPENDED, "approve suspends")
    await asyncio.sleep(10)
    resumed_at = asyncio.get_running_loop().time()
    assert hub.verbs.resume(APP) == "approve"
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    # Woken by the resume, not by a poll that comes round later.
    assert [c.at for c in hub.clusters.made(step="deploy-prod")] == pytest.approx([resumed_at] * 2)


# --- failures -------------------------------------------------------------------------------------


async def test_a_deploy_that_times_out_fails_its_target_and_its_step(hub: Hub) -> None:
    async def never_healthy(target: TargetRecord, resumed: bool) -> bool:
        await asyncio.sleep(STEP_TIMEOUT)
        raise TargetFailed(f"not healthy after {STEP_TIMEOUT:.0f}s: Deployment shop/web: 0/3 ready")

    hub.clusters.scripts["us"] = never_healthy
    hub.up(THREE_ENVS)
    await hub.settled()
    assert STEP_TIMEOUT <= asyncio.get_running_loop().time() < STEP_TIMEOUT + 1
    us = hub.target("deploy-prod", "us")
    assert (us.phase, us.message) == (
        TargetPhase.FAILED,
        "not healthy after 300s: Deployment shop/web: 0/3 ready",
    )
    assert hub.target("deploy-prod", "eu").phase is TargetPhase.HEALTHY
    assert hub.step("deploy-prod").message == "failed on us/web"
    assert (hub.app().phase, hub.app().message) == (
        AppPhase.FAILED,
        "step deploy-prod: failed on us/web",
    )
    assert hub.apps.revision(APP, 1).outcome is Outcome.FAILED


@pytest.mark.parametrize(
    "error",
    [
        TargetFailed("chart values rejected: replicas: must be >= 0"),
        Forbidden("deployments.apps is forbidden", status=403),
    ],
    ids=["flotilla-error", "cluster-error"],
)
async def test_a_failing_target_fails_its_step_and_restart_retries_only_it(
    hub: Hub, error: Exception
) -> None:
    broken = asyncio.Event()
    broken.set()
    gate = asyncio.Event()

    async def eu(target: TargetRecord, resumed: bool) -> bool:
        if broken.is_set():
            raise error
        return await hub.clusters.healthy(target, resumed)

    hub.clusters.scripts.update(eu=eu, us=hub.clusters.held(gate))
    hub.up(THREE_ENVS)
    await until(lambda: hub.target("deploy-prod", "eu").phase is TargetPhase.FAILED, "eu fails")
    assert hub.running()  # us goes on: one cluster fails its own target only
    gate.set()
    await hub.settled()
    assert hub.target("deploy-prod", "us").phase is TargetPhase.HEALTHY
    assert hub.target("deploy-prod", "eu").message == str(error)
    assert hub.step("deploy-prod").phase is StepPhase.FAILED
    assert hub.app().phase is AppPhase.FAILED

    broken.clear()
    hub.verbs.restart(APP)
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert hub.clusters.called() == ["dev", "eu", "us", "eu"]


class Dead:
    """A cluster that does not answer until the test revives it: every deploy raises
    Unreachable, as the cluster client does for a refused connection."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.dead = True

    async def __call__(self, target: TargetRecord, resumed: bool) -> bool:
        if self.dead:
            self.hub.clusters.mark(target, TargetPhase.APPLYING)
            raise Unreachable("https://127.0.0.1:6443: cannot connect (ConnectionRefusedError)")
        return await self.hub.clusters.healthy(target, resumed)


async def test_an_unreachable_cluster_holds_its_step_and_completes_it_once_it_answers(
    hub: Hub,
) -> None:
    us = Dead(hub)
    hub.clusters.scripts["us"] = us
    hub.up(THREE_ENVS)
    await until(lambda: "unreachable" in hub.target("deploy-prod", "us").message, "us waits")
    waiting = hub.target("deploy-prod", "us")
    assert waiting.phase is TargetPhase.APPLYING
    assert waiting.message.startswith("cluster us unreachable: waiting for it to answer again")
    assert "ConnectionRefusedError" in waiting.message
    assert hub.target("deploy-prod", "eu").phase is TargetPhase.HEALTHY
    assert (hub.step("deploy-prod").phase, hub.app().phase) == (StepPhase.RUNNING, AppPhase.RUNNING)
    # Retried with backoff while it stays dead, and said once.
    await until(lambda: len(hub.clusters.made("us")) >= 5, "us retried")
    retried = hub.target("deploy-prod", "us")
    assert retried.phase is TargetPhase.APPLYING
    assert retried.message == waiting.message  # said again over what each attempt wrote
    said = [e for e in hub.apps.events(APP) if "unreachable" in e.message]
    assert len(said) == 1, said

    us.dead = False
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert hub.target("deploy-prod", "us").phase is TargetPhase.HEALTHY
    times = [c.at for c in hub.clusters.made("us")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) <= UNREACHABLE_RETRY[1] + 1, gaps


async def test_an_unreachable_cluster_fails_its_target_once_the_step_timeout_passed(
    hub: Hub,
) -> None:
    hub.clusters.scripts["us"] = Dead(hub)
    hub.up(THREE_ENVS)
    await hub.settled()
    us = hub.target("deploy-prod", "us")
    assert us.phase is TargetPhase.FAILED
    assert us.message.startswith(
        f"timed out after {STEP_TIMEOUT:.0f}s waiting for cluster us to answer again ("
    ), us.message
    first, last = hub.clusters.made("us")[0].at, hub.clusters.made("us")[-1].at
    assert STEP_TIMEOUT <= last - first < STEP_TIMEOUT + UNREACHABLE_RETRY[1] + 1
    assert hub.target("deploy-prod", "eu").phase is TargetPhase.HEALTHY
    assert (hub.app().phase, hub.app().message) == (
        AppPhase.FAILED,
        "step deploy-prod: failed on us/web",
    )


async def test_a_refusal_of_the_credentials_fails_its_target_at_once(hub: Hub) -> None:
    async def refused(target: TargetRecord, resumed: bool) -> bool:
        raise Unauthorized("https://127.0.0.1:6443: credentials rejected (401 Unauthorized)")

    hub.clusters.scripts["us"] = refused
    hub.up(THREE_ENVS)
    await hub.settled()
    assert asyncio.get_running_loop().time() < UNREACHABLE_RETRY[0]
    assert len(hub.clusters.made("us")) == 1
    us = hub.target("deploy-prod", "us")
    assert (us.phase, us.message) == (
        TargetPhase.FAILED,
        "https://127.0.0.1:6443: credentials rejected (401 Unauthorized)",
    )
    assert hub.app().phase is AppPhase.FAILED


async def test_a_newer_revision_takes_over_from_a_target_waiting_for_its_cluster(
    hub: Hub,
) -> None:
    us = Dead(hub)
    hub.clusters.scripts["us"] = us
    hub.up(THREE_ENVS)
    await until(lambda: "unreachable" in hub.target("deploy-prod", "us").message, "us waits")
    us.dead = False
    assert hub.up(THREE_ENVS) == 2
    await hub.settled()
    assert (hub.app().revision, hub.app().phase) == (2, AppPhase.SUCCEEDED)
    assert [r.outcome for r in hub.apps.revisions(APP)] == [Outcome.SUPERSEDED, Outcome.SUCCEEDED]
    assert hub.clusters.most_in_flight == 1


async def test_a_runner_that_dies_of_a_bug_says_so_and_comes_back(hub: Hub) -> None:
    siblings = Workflow([["deploy-dev", "deploy-prod"]], THREE_ENVS.clusters)
    first = asyncio.Event()
    first.set()

    async def dev(target: TargetRecord, resumed: bool) -> bool:
        if first.is_set():
            await asyncio.sleep(1)  # the sibling step is deploying by then
            first.clear()
            raise RuntimeError("bug in the deploy\nwith a second line")
        return await hub.clusters.healthy(target, resumed)

    async def eu(target: TargetRecord, resumed: bool) -> bool:
        if first.is_set():
            await asyncio.Event().wait()  # still deploying when its sibling step dies
        return await hub.clusters.healthy(target, resumed)

    hub.clusters.scripts.update(dev=dev, eu=eu)
    hub.up(siblings)
    await until(lambda: hub.app().message.startswith("internal error"), "the death shows")
    assert (hub.app().phase, hub.app().message) == (
        AppPhase.RUNNING,
        "internal error: RuntimeError: bug in the deploy; retrying",
    )
    # The sibling step was cancelled with its targets, not left running beside the retry.
    assert [c.outcome for c in hub.clusters.made("eu")] == ["cancelled"]
    # While the supervisor waits to restart it, nothing starts a second runner.
    hub.engine.kick(APP)
    with pytest.raises(Conflict, match="still running"):
        hub.verbs.restart(APP)

    await hub.settled()
    assert (hub.app().phase, hub.app().message) == (AppPhase.SUCCEEDED, "")
    state = hub.supervisor.state(RUNNER + APP)
    assert state is not None and state.restarts == 1
    assert [(c.cluster, c.outcome) for c in hub.clusters.calls] == [
        ("dev", "failed"),
        ("eu", "cancelled"),
        ("us", "healthy"),
        ("dev", "healthy"),
        ("eu", "healthy"),  # us stayed healthy: the retry starts from the store
    ]
    assert hub.clusters.most_in_flight == 1


async def test_kick_resume_and_restart_never_start_a_second_runner(hub: Hub) -> None:
    beside = Workflow(
        [["deploy-dev", "approve"], ["deploy-prod"]], THREE_ENVS.clusters, {"approve": None}
    )
    gate = asyncio.Event()
    hub.clusters.scripts["dev"] = hub.clusters.held(gate)
    hub.up(beside)
    await until(lambda: hub.step("approve").phase is StepPhase.SUSPENDED, "approve suspends")
    assert hub.running() and hub.app().phase is AppPhase.SUSPENDED  # dev is still deploying
    for _ in range(3):
        hub.engine.kick(APP)
    hub.verbs.restart(APP)
    # Resumed while the runner is still there: it must go on with the approval itself.
    assert hub.verbs.resume(APP) == "approve"
    gate.set()
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert hub.clusters.called() == ["dev", "eu", "us"]
    assert hub.clusters.most_in_flight == 1


# --- revisions and restarts -----------------------------------------------------------------------


async def test_a_newer_revision_takes_over_from_a_step_under_way(hub: Hub) -> None:
    gate = asyncio.Event()

    async def dev(target: TargetRecord, resumed: bool) -> bool:
        if target.revision == 1:
            await gate.wait()
        return await hub.clusters.healthy(target, resumed)

    hub.clusters.scripts["dev"] = dev
    hub.up(THREE_ENVS)
    await until(lambda: bool(hub.clusters.made("dev")), "dev is being deployed")
    assert hub.up(THREE_ENVS) == 2
    gate.set()
    await hub.settled()
    assert (hub.app().revision, hub.app().phase) == (2, AppPhase.SUCCEEDED)
    assert [(c.revision, c.cluster) for c in hub.clusters.calls] == [
        (1, "dev"),
        (2, "dev"),
        (2, "eu"),
        (2, "us"),
    ]
    assert [r.outcome for r in hub.apps.revisions(APP)] == [Outcome.SUPERSEDED, Outcome.SUCCEEDED]
    assert hub.succeeded == [(APP, 2)]


async def test_a_restarted_hub_goes_on_from_the_first_unfinished_step(tmp_path: Path) -> None:
    workflows: dict[int, Workflow] = {}
    first = Hub(tmp_path / "flotilla.db", workflows)
    first.clusters.scripts["us"] = first.clusters.held(asyncio.Event())  # the hub dies first
    first.up(THREE_ENVS)
    await until(
        lambda: (
            first.target("deploy-prod", "eu").phase is TargetPhase.HEALTHY
            and bool(first.clusters.made("us"))
        ),
        "prod is half deployed",
    )
    await first.engine.stop()
    assert asyncio.all_tasks() == {asyncio.current_task()}  # the engine left nothing running
    assert [c.outcome for c in first.clusters.made("us")] == ["cancelled"]
    await first.close()

    second = Hub(tmp_path / "flotilla.db", workflows)
    try:
        second.engine.start()
        await second.settled()
        assert second.app().phase is AppPhase.SUCCEEDED
        assert second.clusters.called() == ["us"]  # dev and eu were done: the store says so
    finally:
        await second.close()


async def test_a_delete_stops_the_runner_and_a_finishing_run_does_not_undo_it(hub: Hub) -> None:
    gate = asyncio.Event()
    hub.clusters.scripts["dev"] = hub.clusters.held(gate)
    hub.up(THREE_ENVS)
    await until(lambda: bool(hub.clusters.made("dev")), "dev is being deployed")
    hub.removal.clear()
    hub.delete()
    await until(lambda: hub.removed == [APP], "the removal starts")
    assert not hub.running()  # the runner was cancelled before the removal began
    assert [c.outcome for c in hub.clusters.made("dev")] == ["cancelled"]
    # A write of a runner that finished just then (here, or on another replica).
    hub.apps.set_app(APP, phase=AppPhase.SUCCEEDED)
    assert hub.app().phase is AppPhase.DELETING
    hub.engine.kick(APP)  # another delete, or a store change: still one removal
    hub.removal.set()
    await until(lambda: APP not in {a.name for a in hub.apps.apps()}, "the app is gone")
    assert hub.removed == [APP]
    assert hub.clusters.called() == ["dev"]


async def test_a_restarted_hub_finishes_a_delete_cut_short(tmp_path: Path) -> None:
    workflows: dict[int, Workflow] = {}
    first = Hub(tmp_path / "flotilla.db", workflows)
    first.up(THREE_ENVS)
    await first.settled()
    first.removal.clear()
    first.delete()
    await until(lambda: first.removed == [APP], "the removal starts")
    assert first.app().phase is AppPhase.DELETING
    await first.close()  # killed mid-removal

    second = Hub(tmp_path / "flotilla.db", workflows)
    try:
        second.engine.start()
        await until(lambda: not second.apps.apps(), "the restarted hub removes the app")
        assert second.removed == [APP]
        assert second.clusters.called() == []  # nothing deployed again
    finally:
        await second.close()


# --- canaries: the real state machine over a scripted cluster -------------------------------------

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 4,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "web:2.0.0"}]},
        },
    },
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
}
INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"name": "web"},
    "spec": {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": "web.example",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    },
}
RELEASE = [DEPLOYMENT, SERVICE, INGRESS]


def canary_of(*steps: dict[str, Any], clusters: tuple[str, ...] = ("eu", "us")) -> Workflow:
    trait = {"canary": {"steps": list(steps), "trafficRoutings": [{"type": "nginx"}]}}
    return Workflow([["deploy-prod"]], {"deploy-prod": list(clusters)}, trait=trait)


@dataclass
class Move:
    cluster: str
    step: int
    stage: Stage
    at: float


class Canaries(Rollouts):
    """`Rollouts` as the hub runs it, over a scripted cluster: each phase is recorded and
    takes its grace period (in virtual time), and a test may hold one until it lets go."""

    def __init__(self, hub: Hub) -> None:
        loop = asyncio.get_running_loop()
        super().__init__(
            hub.apps,
            step_timeout=STEP_TIMEOUT,
            waits=Waits(lambda cluster: None, timeout=STEP_TIMEOUT),
            signals=hub.signals,
            analysed=lambda target, gate: hub.passed_gates is None or gate in hub.passed_gates,
            clock=loop.time,
        )
        self.hub = hub
        self.moves: list[Move] = []
        self.holds: dict[tuple[str, int, Stage], asyncio.Event] = {}
        self.failing: set[tuple[str, int, Stage]] = set()
        """Phases that fail once, as a canary that does not become ready."""
        self.late: dict[str, asyncio.Event] = {}
        """Clusters whose canary starts only once the test sets their event."""
        self.hash_reads = 0
        """Reads of the stable pods' hash from a cluster."""
        hub.deploy = self.deploy

    async def deploy(self, target: TargetRecord, *, resumed: bool = False) -> bool:
        """What `Deployer` does around a canary, the cluster aside."""
        if target.cluster in self.late:
            await self.late[target.cluster].wait()
        if self.apps.rollout(target.app, target.cluster, target.component) is None:
            # What `run` records once it finds that the revision changes the pod template.
            self.apps.put_rollout(
                RolloutRecord(
                    target.app,
                    target.cluster,
                    target.component,
                    target.revision,
                    "Deployment",
                    "web",
                    Stage.UPGRADING,
                    0,
                )
            )
        client = cast(ClusterClient, None)  # every call that needs one is scripted below
        outcome = await self.run(target, RELEASE, client, resumed=resumed, first_deploy=False)
        if outcome is CanaryOutcome.PAUSED:
            self.hub.clusters.mark(target, TargetPhase.PAUSED, self.describe(target))
            return False
        self.hub.clusters.mark(target, TargetPhase.HEALTHY)
        return True

    def hold(self, cluster: str, step: int, stage: Stage) -> asyncio.Event:
        return self.holds.setdefault((cluster, step, stage), asyncio.Event())

    def at(self, cluster: str) -> tuple[Stage, int] | None:
        record = self.apps.rollout(APP, cluster, "web")
        return None if record is None else (record.stage, record.step)

    def resume_at(self, cluster: str) -> float | None:
        record = self.apps.rollout(APP, cluster, "web")
        return None if record is None else record.resume_at

    def moved(self, cluster: str, step: int, stage: Stage) -> bool:
        return any((m.cluster, m.step, m.stage) == (cluster, step, stage) for m in self.moves)

    def first_move(self, cluster: str, step: int) -> float:
        return min(m.at for m in self.moves if (m.cluster, m.step) == (cluster, step))

    async def _run_phase(
        self, target: TargetRecord, client: ClusterClient, phase: Phase, record: RolloutRecord
    ) -> None:
        where = (target.cluster, record.step, record.stage)
        self.moves.append(Move(*where, asyncio.get_running_loop().time()))
        if where in self.holds:
            await self.holds[where].wait()
        if where in self.failing:
            self.failing.discard(where)
            raise CanaryError(f"canary not ready on cluster {target.cluster} after 300s")
        await asyncio.sleep(phase.grace)

    async def _apply(
        self, target: TargetRecord, client: ClusterClient, objects: list[dict[str, Any]]
    ) -> list[AppliedRef]:
        return []

    async def _read_stable_hash(
        self, client: ClusterClient, plan: CanaryPlan, namespace: str
    ) -> str | None:
        self.hash_reads += 1
        return "5d4f8b7c9"


async def test_a_resume_sent_while_the_canary_moves_traffic_approves_the_coming_pause(
    hub: Hub,
) -> None:
    canaries = Canaries(hub)
    hold = canaries.hold("us", 0, Stage.TRAFFIC_ROUTING)
    hub.up(canary_of({"weight": 20}, {"weight": 90}))
    await until(
        lambda: (
            canaries.at("eu") == (Stage.PAUSED, 0)
            and canaries.moved("us", 0, Stage.TRAFFIC_ROUTING)
        ),
        "eu paused at step 1, us still moving traffic",
    )
    assert (hub.app().phase, hub.step("deploy-prod").phase) == (AppPhase.RUNNING, StepPhase.RUNNING)
    assert hub.verbs.resume(APP) == "canary pause at step 1"  # neither refused nor lost
    released_at = asyncio.get_running_loop().time()
    hold.set()
    await hub.settled()

    # The approved pause did not hold; the next one does, on every cluster.
    assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 1)
    assert hub.app().phase is AppPhase.SUSPENDED
    assert hub.step("deploy-prod").message == "canary paused at step 2/2 (90%)"
    # Lock-step: no cluster went on to step 2 before every cluster had paused at step 1.
    assert min(canaries.first_move(c, 1) for c in ("eu", "us")) > released_at

    assert hub.verbs.resume(APP) == "deploy-prod"
    await hub.settled()
    assert hub.app().phase is AppPhase.SUCCEEDED
    assert canaries.at("eu") == canaries.at("us") == (Stage.COMPLETED, 1)


async def test_an_early_resume_covers_the_canaries_under_way_and_says_which_it_does_not(
    hub: Hub,
) -> None:
    canaries = Canaries(hub)
    late = canaries.late.setdefault("ap", asyncio.Event())
    hub.up(canary_of({"weight": 20}, {"weight": 90}, clusters=("ap", "eu", "us")))
    await until(
        lambda: canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0), "eu and us pause"
    )
    assert hub.verbs.resume(APP) == (
        "canary pause at step 1 (not on ap/web: no canary runs there yet)"
    )
    late.set()
    await hub.settled()
    # ap's own pause was not approved: the step holds there, every cluster at step 1.
    assert canaries.at("ap") == canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0)
    assert hub.step("deploy-prod").message == "canary paused at step 1/2 (20%)"
    assert hub.verbs.resume(APP) == "deploy-prod"
    await hub.settled()
    assert canaries.at("ap") == canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 1)


async def test_restart_forgets_a_pause_approved_for_the_attempt_that_failed(hub: Hub) -> None:
    canaries = Canaries(hub)
    hold = canaries.hold("us", 0, Stage.TRAFFIC_ROUTING)
    canaries.failing.add(("us", 0, Stage.TRAFFIC_ROUTING))
    hub.up(canary_of({"weight": 20}, {"weight": 90}))
    await until(lambda: canaries.at("eu") == (Stage.PAUSED, 0), "eu paused at step 1")
    assert hub.verbs.resume(APP) == "canary pause at step 1"
    hold.set()
    await hub.settled()
    assert (hub.app().phase, hub.app().message) == (
        AppPhase.FAILED,
        "step deploy-prod: failed on us/web",
    )

    hub.verbs.restart(APP)
    await hub.settled()
    assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0)  # held here again
    assert hub.step("deploy-prod").message == "canary paused at step 1/2 (20%)"


async def test_a_timed_canary_pause_ends_by_itself_and_nothing_polls_the_store(hub: Hub) -> None:
    canaries = Canaries(hub)
    hub.up(canary_of({"weight": 20, "pause": {"duration": "60s"}}, {"weight": 90}))
    await until(lambda: canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0), "both pause")
    due = {c: canaries.resume_at(c) for c in ("eu", "us")}
    statements: list[str] = []
    hub.store.connection.set_trace_callback(statements.append)
    await asyncio.sleep(50)  # inside the pause on both clusters
    hub.store.connection.set_trace_callback(None)
    assert statements == []
    await hub.settled()
    assert {c: canaries.first_move(c, 1) for c in ("eu", "us")} == pytest.approx(due)
    assert hub.step("deploy-prod").message == "canary paused at step 2/2 (90%)"
    # The stable pods' hash is read once per cluster, not once per phase of every step.
    assert canaries.hash_reads == 2


@pytest.mark.parametrize("verb", ["resume", "suspend"])
async def test_resume_and_suspend_reach_a_timed_canary_pause_at_once(hub: Hub, verb: str) -> None:
    canaries = Canaries(hub)
    hub.up(canary_of({"weight": 20, "pause": {"duration": "1h"}}, {"weight": 90}))
    await until(lambda: canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0), "both pause")
    await asyncio.sleep(10.5)  # between any two ticks a once-a-second poll would make
    loop = asyncio.get_running_loop()
    acted_at = loop.time()
    if verb == "resume":
        assert hub.verbs.resume(APP) == "canary pause at step 1"
        await hub.settled()
        assert [canaries.first_move(c, 1) for c in ("eu", "us")] == pytest.approx([acted_at] * 2)
        assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 1)
        return
    hub.verbs.suspend(APP)
    await hub.settled()
    assert loop.time() - acted_at < 0.5  # frozen when told, not at the end of a poll
    assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0)
    assert (hub.app().phase, hub.step("deploy-prod").phase) == (
        AppPhase.SUSPENDED,
        StepPhase.PAUSED,
    )
    assert hub.verbs.resume(APP) == "deploy-prod"
    await hub.settled()
    assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 1)


# --- metric analysis of canary pauses ------------------------------------------------------------


async def test_a_canary_pause_is_analysed_on_every_cluster_then_waits_for_a_person(
    hub: Hub,
) -> None:
    canaries = Canaries(hub)
    hub.passed_gates, hub.analysis_time = set(), 90.0
    hub.pause_verdicts = [Judged(Verdict.PASSED), Judged(Verdict.PASSED)]
    hub.up(canary_of({"weight": 20}, {"weight": 90}))
    await hub.settled()
    # Measured once for the whole step, when every cluster had paused; then held as usual.
    assert [(step, clusters) for step, clusters, _ in hub.analysed] == [
        ("deploy-prod", ["eu", "us"])
    ]
    assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 0)
    assert hub.step("deploy-prod").phase is StepPhase.PAUSED
    assert hub.verbs.resume(APP) == "deploy-prod"
    await hub.settled()
    assert len(hub.analysed) == 2
    assert canaries.at("eu") == canaries.at("us") == (Stage.PAUSED, 1)


async def test_a_timed_canary_pause_goes_on_when_both_its_time_and_its_analysis_allow(
    hub: Hub,
) -> None:
    canaries = Canaries(hub)
    hub.passed_gates, hub.analysis_time = set(), 200.0
    hub.pause_verdicts = [Judged(Verdict.PASSED), Judged(Verdict.PASSED)]
    hub.up(canary_of({"weight": 20, "pause": {"duration": "60s"}}, {"weight": 90}))
    await until(lambda: len(hub.analysed) == 1, "the first analysis starts")
    analysed_at = hub.analysed[0][2]
    await hub.settled()
    # The pause's 60 s were up long before the analysis passed: it went on when that did.
    assert {c: canaries.first_move(c, 1) for c in ("eu", "us")} == pytest.approx(
        {"eu": analysed_at + 200.0, "us": analysed_at + 200.0}
    )


async def test_an_analysis_that_fails_fails_the_step_and_touches_no_later_environment(
    hub: Hub,
) -> None:
    canaries = Canaries(hub)
    hub.passed_gates = set()
    why = "cluster us: error-rate = 0.3 broke <0.05 (1 failed measurement, failureLimit 0)"
    hub.pause_verdicts = [Judged(Verdict.FAILED, why)]
    trait = {"canary": {"steps": [{"weight": 20}], "trafficRoutings": [{"type": "nginx"}]}}
    hub.up(
        Workflow(
            [["deploy-prod"], ["deploy-later"]],
            {"deploy-prod": ["eu", "us"], "deploy-later": ["dev"]},
            trait=trait,
        )
    )
    await hub.settled()
    assert hub.app().phase is AppPhase.FAILED
    assert (hub.step("deploy-prod").phase, hub.step("deploy-prod").message) == (
        StepPhase.FAILED,
        why,
    )
    assert why in hub.app().message
    assert hub.step("deploy-later").phase is StepPhase.PENDING
    assert canaries.at("dev") is None


# --- where an approval is kept --------------------------------------------------------------------


def test_an_approval_outlives_the_canary_writing_its_state_but_not_its_revision(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "flotilla.db")
    apps = SqliteAppStore(store)
    apps.create_revision(
        APP, spec={}, digest="d", publish_version="", source="test", base=".", steps=[], targets=[]
    )
    record = RolloutRecord(APP, "eu", "web", 1, "Deployment", "web", Stage.TRAFFIC_ROUTING, 0)
    apps.put_rollout(record)
    apps.approve_pause(APP, "eu", "web", 0)
    record.stage = Stage.PAUSED  # written by a canary that read its record before the resume
    apps.put_rollout(record)
    assert apps.rollout(APP, "eu", "web") == RolloutRecord(
        APP, "eu", "web", 1, "Deployment", "web", Stage.PAUSED, 0, resume_step=0
    )
    apps.put_rollout(RolloutRecord(APP, "eu", "web", 2, "Deployment", "web", Stage.UPGRADING, 0))
    stored = apps.rollout(APP, "eu", "web")
    assert stored is not None and stored.resume_step is None
    store.close()


def test_a_store_from_before_approvals_gets_the_column(tmp_path: Path) -> None:
    path = tmp_path / "flotilla.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    MIGRATIONS[2](db)
    db.execute("PRAGMA user_version=2")
    db.close()
    store = SqliteStore(path)
    columns = {row[1] for row in store.connection.execute("PRAGMA table_info(rollouts)")}
    assert "resume_step" in columns
    store.close()
