"""The workflow engine: runs each application's revision step by step, in the hub.

One runner per application: a task of the hub's supervisor named `workflow:<app>`. The
supervisor runs one task per name, so no `kick`, `resume` or `restart` can start a second
runner of an application; and a runner that dies of a bug is logged, shown in the
application's status message and started again with backoff. Before a runner acts on a
cluster it writes what it is about to do, and after the cluster confirms it writes the
outcome; every action is an idempotent server-side apply or delete. So the engine holds
no state of its own: a restarted runner, or a hub killed at any moment and started again,
finds the application in the store and runs it from the first step that has not
succeeded.

The steps of one generation of the workflow graph run side by side in a task group, and
so do the targets of a step. A target that fails the way clusters fail (a FlotillaError,
a ClusterError) fails itself and its step, never its siblings; any other error is a bug,
which cancels the whole group and kills the runner, to be restarted from the store. A
cluster that does not answer at all (`Unreachable`) is the exception: its target waits,
retried with backoff until the cluster answers or the step timeout has passed, so a
member that comes back completes its step without an operator. Deploys are idempotent and
the canary's state is stored, so the retry goes on from where the cluster stopped.

Operators reach a runner through the store and one `Signals` (`hub.workflow.verbs`): a
verb writes its decision, then notifies the application; every waiter reads the store
again when woken.

Deleting is driven the same way. `delete` writes the phase `deleting`; whoever drives the
application (this hub, or the replica holding its shard, which hears of the write through
the store) cancels its runner and starts the removal, the task `workflow:delete:<app>`,
which takes the application off every cluster and then out of the store. The verb never
touches a member cluster itself, so a delete sent to any replica is carried out by the
owner alone, and one cut short by a kill is taken up again by whoever resumes the
application.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from clusters.errors import ClusterError, Unreachable
from hub.errors import FlotillaError, NotFound
from hub.model.phases import (
    AppPhase,
    Outcome,
    Stage,
    StepPhase,
    StepType,
    TargetPhase,
    Verdict,
)
from hub.model.records import StepRecord, TargetRecord
from hub.model.settings import DEFAULTS
from hub.state.interface import AppStore
from hub.tasks import Supervisor, first_line, innermost
from hub.workflow.signals import Signals

log = logging.getLogger(__name__)

# How long a runner waits to see a revision the application names but this hub's store
# has not shown yet before it looks again (the revision's arrival wakes it sooner).
UNSEEN_REVISION_WAIT = 1.0
# An application's runner is the supervisor's task of this name plus the application's.
RUNNER = "workflow:"
# Its removal, once deleted: under the runners' prefix, so that stopping them stops it too
# (no application name holds a colon).
REMOVER = RUNNER + "delete:"
# How the status message of an application whose runner died begins; its next start
# clears it, as the retry is then under way.
INTERNAL_ERROR = "internal error: "
# The retries of a target whose cluster does not answer: the first soon (a blip of its API
# server), then doubling to at most the second, so a cluster back after minutes is found
# within seconds and a dead one costs a connection attempt now and then.
UNREACHABLE_RETRY = (1.0, 15.0)

# deploy(target, resumed=...) -> False when the target's canary step waits for resume;
# raises a FlotillaError or ClusterError to fail that target only (Unreachable: retried).
DeployTarget = Callable[..., Awaitable[bool]]
# The steps of a revision grouped in the order they may run (networkx generations).
StepOrder = Callable[[str, int], list[list[str]]]
# Extra per-step settings the engine needs from the spec: (auto, parallelism, duration).
StepSettings = Callable[[str, int, str], tuple[bool, int | None, float | None]]
# Called once a revision succeeded, before the application is marked succeeded.
AfterSuccess = Callable[[str, int], Awaitable[None]]
# Takes a deleted application off every cluster, then out of the store; or, when some
# cluster refused, marks it failed and keeps its records for another delete.
RemoveApp = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Judged:
    """The verdict of a step's metric analysis, and in one line why when it failed."""

    verdict: Verdict
    reason: str = ""


# (app, revision, step, paused targets) -> the metric analysis of the pause every target
# of a deploy step reached: None when it asks for none (or passed it already), PASSED once
# it just passed, FAILED or ERRORED once it aborted the step (its canaries rolled back on
# every cluster), RUNNING when stopped before a verdict (a suspend, a newer revision).
AnalysePause = Callable[[str, int, str, list[TargetRecord]], Awaitable[Judged | None]]
# (app, revision, step) -> the verdict of a `check-metrics` step, RUNNING when stopped.
CheckMetrics = Callable[[str, int, StepRecord], Awaitable[Judged]]

T = TypeVar("T")


def every_app(app: str) -> bool:
    """A hub alone on its store drives every application."""
    return True


class Engine:
    def __init__(
        self,
        apps: AppStore,
        *,
        deploy: DeployTarget,
        order: StepOrder,
        step_settings: StepSettings,
        after_success: AfterSuccess,
        analyse_pause: AnalysePause,
        check_metrics: CheckMetrics,
        remove: RemoveApp,
        supervisor: Supervisor,
        signals: Signals,
        fanout: int = DEFAULTS.fanout,
        step_timeout: float = DEFAULTS.step_timeout,
        clock: Callable[[], float] = time.time,
        owns: Callable[[str], bool] = every_app,
    ) -> None:
        """`clock` gives the epoch seconds stored as a timed suspend step's deadline (the
        wall clock, so that the deadline survives a hub restart); tests give a virtual one.
        `step_timeout` bounds how long a target waits for its cluster to answer again.
        `owns` says whether this hub drives an application: all of them, unless several
        hubs share the store (hub.service.replicas), each driving the shards it holds."""
        self.apps = apps
        self.owns = owns
        self.signals = signals
        self._deploy = deploy
        self._order = order
        self._step_settings = step_settings
        self._after_success = after_success
        self._analyse_pause = analyse_pause
        self._check_metrics = check_metrics
        self._remove = remove
        self._supervisor = supervisor
        self._fanout = fanout
        self._step_timeout = step_timeout
        self._clock = clock

    def start(self) -> None:
        """Resume every application the store says was running when the hub stopped (of
        those this hub drives)."""
        self.adopt(lambda app: True)

    def adopt(self, which: Callable[[str], bool]) -> None:
        """Resume the active applications `which` picks: this hub drives them from now on
        (it took their shard over from a replica that stopped)."""
        for app in self.apps.apps():
            if app.phase.driven and which(app.name):
                self.kick(app.name)

    async def let_go(self, which: Callable[[str], bool]) -> None:
        """Stop driving the applications `which` picks, and wait until their runners are
        gone: another hub is about to drive them."""
        await asyncio.gather(*(self.cancel(a.name) for a in self.apps.apps() if which(a.name)))

    async def stop(self) -> None:
        """Cancel every runner and wait for it. Steps and targets run in the runners' task
        groups, so nothing of the engine is left running."""
        await self._supervisor.cancel_prefix(RUNNER)

    def kick(self, app: str) -> None:
        """Make sure a runner drives `app` (its removal, once it is being deleted), and
        wake its waiters to read the store again. A runner that drives it already is the
        one that goes on; an application another hub drives gets no runner here (its owner
        hears of the change through the store)."""
        self.signals.notify(app)
        if not self.owns(app):
            return
        try:
            deleting = self.apps.app(app).phase is AppPhase.DELETING
        except NotFound:
            return  # deleted meanwhile: nothing to drive
        if deleting:
            self._supervisor.spawn(REMOVER + app, functools.partial(self._delete, app))
        else:
            self._supervisor.spawn(RUNNER + app, functools.partial(self._drive, app))

    async def cancel(self, app: str) -> None:
        """Stop driving `app` here: its runner, or its removal."""
        await self._supervisor.cancel(RUNNER + app)
        await self._supervisor.cancel(REMOVER + app)

    def running(self, app: str) -> bool:
        """A runner drives `app` now (or waits to be started again after dying)."""
        return self._supervisor.running(RUNNER + app)

    # the runner

    async def _delete(self, app: str) -> None:
        """The removal of a deleted application: its runner stopped first, so that nothing
        deploys what is being taken away; its waiters told when it is done."""
        await self._supervisor.cancel(RUNNER + app)
        try:
            await self._remove(app)
        finally:
            self.signals.notify(app)

    async def _drive(self, app: str) -> None:
        """A runner's life under the supervisor. A death is written into the application's
        status message before the supervisor logs it and starts the runner again."""
        try:
            await self._run(app)
        except Exception as error:
            self._record_death(app, error)
            raise

    async def _run(self, app: str) -> None:
        while self.owns(app):
            try:
                record = self.apps.app(app)
            except NotFound:
                return  # deleted: nothing to drive
            if not record.phase.active:
                return
            if record.message.startswith(INTERNAL_ERROR):
                self.apps.set_app(app, phase=record.phase)
            revision = record.revision
            try:
                self.apps.revision(app, revision)
            except NotFound:
                # Another hub's new revision, named by the application before its own
                # record reached this hub's store mirror (they come by separate watches).
                await self.signals.wait(app, UNSEEN_REVISION_WAIT)
                continue
            outcome = await self._run_revision(app, revision)
            current = self.apps.app(app)
            if current.revision != revision:
                continue  # superseded by a newer revision: drive that one now
            if outcome is None:
                if current.phase is AppPhase.RUNNING:
                    # Whatever stopped the run wrote `suspended`; `running` means a verb came
                    # after that, while this runner still ran, so it started none: go round
                    # again, and whatever still waits says so again. Read with nothing
                    # awaited before the runner ends, so no verb can slip in between.
                    continue
                return  # waits for a person: `resume` starts a runner
            if outcome is Outcome.SUCCEEDED:
                await self._after_success(app, revision)
                if self.apps.app(app).revision != revision:
                    continue  # superseded meanwhile: that revision is still to drive
            self.apps.finish_revision(app, revision, outcome)
            phase = AppPhase.SUCCEEDED if outcome is Outcome.SUCCEEDED else AppPhase.FAILED
            message = "" if phase is AppPhase.SUCCEEDED else self._failure_summary(app, revision)
            self.apps.set_app(app, phase=phase, message=message)
            self.apps.add_event(app, f"revision {revision} {outcome}", revision=revision)
            return

    async def _run_revision(self, app: str, revision: int) -> Outcome | None:
        for generation in self._order(app, revision):
            steps = {s.name: s for s in self.apps.steps(app, revision)}
            pending = [
                steps[name] for name in generation if steps[name].phase != StepPhase.SUCCEEDED
            ]
            if not pending:
                continue
            if not self._gate(app, revision):
                return None
            results = await _together(self._step(app, revision, s) for s in pending)
            if None in results or self.apps.app(app).revision != revision:
                return None
            if Outcome.FAILED in results:
                return Outcome.FAILED
        return Outcome.SUCCEEDED

    def _gate(self, app: str, revision: int) -> bool:
        """A suspend requested by the operator takes effect here, between steps."""
        record = self.apps.app(app)
        if record.revision != revision:
            return False
        if record.suspend:
            self.apps.set_app(app, phase=AppPhase.SUSPENDED, message="suspended by the operator")
            return False
        return True

    async def _step(self, app: str, revision: int, step: StepRecord) -> Outcome | None:
        auto, parallelism, duration = self._step_settings(app, revision, step.name)
        gated = step.type is StepType.SUSPEND or not auto
        if (
            gated
            and step.phase != StepPhase.APPROVED
            and not await self._wait_for_approval(app, revision, step, duration)
        ):
            return None
        if step.type is StepType.SUSPEND:
            self.apps.set_step(app, revision, step.name, phase=StepPhase.SUCCEEDED)
            return Outcome.SUCCEEDED
        if step.type is StepType.CHECK_METRICS:
            return await self._check(app, revision, step)
        resumed = step.phase == StepPhase.RESUMED
        if step.phase is not StepPhase.RUNNING:
            self.apps.add_event(app, f"step {step.name} started", revision=revision, step=step.name)
        self.apps.set_step(app, revision, step.name, phase=StepPhase.RUNNING)
        bound = asyncio.Semaphore(parallelism or self._fanout)
        while True:
            targets = [
                t
                for t in self.apps.targets(app, revision)
                if t.step == step.name and t.phase != TargetPhase.HEALTHY
            ]
            results = await _together(self._target(bound, t, resumed) for t in targets)
            if self.apps.app(app).revision != revision:
                return None
            failed = [t for t, result in zip(targets, results, strict=True) if result is None]
            paused = [t for t, result in zip(targets, results, strict=True) if result is False]
            if not paused or failed:
                break
            judged = await self._analyse_pause(app, revision, step.name, paused)
            verdict = None if judged is None else judged.verdict
            if verdict is Verdict.RUNNING or self.apps.app(app).revision != revision:
                self._gate(app, revision)  # a suspend takes effect here, as between steps
                return None
            if judged is not None and verdict in (Verdict.FAILED, Verdict.ERRORED):
                self.apps.set_step(
                    app, revision, step.name, phase=StepPhase.FAILED, message=judged.reason
                )
                return Outcome.FAILED
            if verdict is Verdict.PASSED:
                # Every cluster passed: the canaries go on to what their pause asks next
                # (its time, a person, or nothing), from the pause they stand at.
                resumed = False
                continue
            if not self._pause_approved(app, paused):
                break
            # Every cluster paused where a resume approved it in advance: on together.
            resumed = True
            self.apps.add_event(
                app,
                f"step {step.name}: canary pause approved in advance",
                revision=revision,
                step=step.name,
            )
        if paused and not failed:
            # Every cluster's canary step is ready: one resume advances them together.
            why = f"canary {paused[0].message}"
            self.apps.set_step(app, revision, step.name, phase=StepPhase.PAUSED, message=why)
            self.apps.set_app(app, phase=AppPhase.SUSPENDED, message=f"step {step.name}: {why}")
            self.apps.add_event(
                app,
                f"step {step.name}: {why} on {len(paused)} cluster(s)",
                revision=revision,
                step=step.name,
            )
            return None
        if failed:
            names = ", ".join(f"{t.cluster}/{t.component}" for t in failed)
            self.apps.set_step(
                app, revision, step.name, phase=StepPhase.FAILED, message=f"failed on {names}"
            )
            return Outcome.FAILED
        self.apps.set_step(app, revision, step.name, phase=StepPhase.SUCCEEDED)
        return Outcome.SUCCEEDED

    async def _check(self, app: str, revision: int, step: StepRecord) -> Outcome | None:
        """A `check-metrics` step: measured until its verdict; a suspend or a newer
        revision stops it, and the next run counts on from the stored measurements."""
        self.apps.set_step(app, revision, step.name, phase=StepPhase.RUNNING)
        judged = await self._check_metrics(app, revision, step)
        if judged.verdict is Verdict.RUNNING or self.apps.app(app).revision != revision:
            self._gate(app, revision)
            return None
        if judged.verdict is Verdict.PASSED:
            self.apps.set_step(app, revision, step.name, phase=StepPhase.SUCCEEDED)
            return Outcome.SUCCEEDED
        self.apps.set_step(app, revision, step.name, phase=StepPhase.FAILED, message=judged.reason)
        return Outcome.FAILED

    def _pause_approved(self, app: str, paused: list[TargetRecord]) -> bool:
        """Whether every paused canary stands at the pause a `resume` approved in advance;
        an operator's suspend wins over any approval."""
        if self.apps.app(app).suspend:
            return False
        for target in paused:
            rollout = self.apps.rollout(target.app, target.cluster, target.component)
            if (
                rollout is None
                or rollout.revision != target.revision
                or rollout.stage is not Stage.PAUSED
                or rollout.resume_step != rollout.step
            ):
                return False
        return True

    async def _wait_for_approval(
        self, app: str, revision: int, step: StepRecord, duration: float | None
    ) -> bool:
        """Suspend the step until `workflow resume` or until its duration has passed; True
        once it may go on.

        The deadline is stored, so a duration keeps counting across a hub restart. Until it
        passes the runner sleeps on the application's signal, so a resume (or a newer
        revision) takes effect at once."""
        resume_at, why = step.resume_at, step.message
        if step.phase != StepPhase.SUSPENDED:
            resume_at = self._clock() + duration if duration is not None else None
            why = f"waiting for `flotilla workflow resume {app}`"
            if duration is not None:
                why += f" or {duration:.0f}s"
            self.apps.set_step(
                app,
                revision,
                step.name,
                phase=StepPhase.SUSPENDED,
                message=why,
                resume_at=resume_at,
            )
            self.apps.add_event(
                app, f"step {step.name} suspended", revision=revision, step=step.name
            )
        # Written again by a runner that finds the step suspended (after a hub restart, a
        # `restart`): the application waits, whatever was written in between.
        self.apps.set_app(app, phase=AppPhase.SUSPENDED, message=f"step {step.name}: {why}")
        while True:
            if self.apps.app(app).revision != revision:
                return False
            phase = next(s.phase for s in self.apps.steps(app, revision) if s.name == step.name)
            if phase is StepPhase.APPROVED:
                break
            if resume_at is None:
                return False  # `resume` marks the step approved and starts a runner
            remaining = resume_at - self._clock()
            if remaining <= 0:
                self.apps.add_event(
                    app,
                    f"step {step.name} resumed by the hub: its {duration or 0:.0f}s passed",
                    revision=revision,
                    step=step.name,
                )
                break
            await self.signals.wait(app, remaining)
        self.apps.set_app(app, phase=AppPhase.RUNNING)
        return True

    async def _target(
        self, bound: asyncio.Semaphore, target: TargetRecord, resumed: bool
    ) -> bool | None:
        """True deployed, False paused (canary), None failed (or superseded while its
        cluster did not answer). The semaphore is held only while deploying, so a target
        waiting for its cluster keeps no sibling from its turn."""
        loop = asyncio.get_running_loop()
        since: float | None = None  # when the cluster stopped answering, in loop time
        delay = UNREACHABLE_RETRY[0]
        while True:
            try:
                async with bound:
                    return await self._deploy(target, resumed=resumed)
            except Unreachable as e:
                error = first_line(e)
                if since is not None and loop.time() - since >= self._step_timeout:
                    self._fail_target(
                        target,
                        f"timed out after {self._step_timeout:.0f}s waiting for cluster "
                        f"{target.cluster} to answer again ({error})",
                    )
                    return None
                self._unreachable(target, error, first=since is None)
                since = loop.time() if since is None else since
            except (FlotillaError, ClusterError) as e:  # a cluster fails its own target
                self._fail_target(target, str(e) if isinstance(e, FlotillaError) else first_line(e))
                return None
            remaining = since + self._step_timeout - loop.time()
            # Woken early by a verb or a newer revision, which may make the wait moot.
            await self.signals.wait(target.app, min(delay, max(remaining, 0.0)))
            if self.apps.app(target.app).revision != target.revision:
                return None
            delay = min(delay * 2, UNREACHABLE_RETRY[1])

    def _unreachable(self, target: TargetRecord, error: str, *, first: bool) -> None:
        """Say in the target's message that its cluster does not answer and that the hub
        waits for it, again after each retry (the attempt wrote its own); the event and
        the log say it once. The target keeps its phase."""
        target.message = (
            f"cluster {target.cluster} unreachable: waiting for it to answer again, the "
            f"hub retries ({error})"
        )
        self.apps.put_target(target)
        if not first:
            return
        self.apps.add_target_event(target, f"{target.cluster}/{target.component}: {target.message}")
        log.info(
            "target %s/%s waits: %s",
            target.cluster,
            target.component,
            target.message,
            extra={"app": target.app, "cluster": target.cluster},
        )

    def _fail_target(self, target: TargetRecord, message: str) -> None:
        self.apps.fail_target(target, message)
        log.info(
            "target %s/%s failed: %s",
            target.cluster,
            target.component,
            message,
            extra={"app": target.app, "cluster": target.cluster},
        )

    def _failure_summary(self, app: str, revision: int) -> str:
        failed = [s for s in self.apps.steps(app, revision) if s.phase == StepPhase.FAILED]
        return "; ".join(f"step {s.name}: {s.message}" for s in failed)

    def _record_death(self, app: str, error: Exception) -> None:
        cause = innermost(error)
        what, text = type(cause).__name__, str(cause).strip()
        if text:
            what += f": {text.splitlines()[0]}"
        message = f"{INTERNAL_ERROR}{what}; retrying"
        try:
            self.apps.set_app(app, phase=self.apps.app(app).phase, message=message)
        except FlotillaError:
            pass  # the store refuses writes (its disk is full): it and the supervisor say so
        except Exception:
            log.exception("cannot record the failure of %s", app, extra={"app": app})


async def _together(work: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run `work` side by side and return the results in order. The first error cancels
    the others, and none of them is left running when this returns or raises."""
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(w) for w in work]
    return [t.result() for t in tasks]
