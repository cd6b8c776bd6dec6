"""The workflow engine: runs each application's revision step by step, in the hub.

One runner task per application. Before it acts on a cluster it writes what it is about
to do, and after the cluster confirms it writes the outcome; every action is an
idempotent server-side apply or delete. So the engine holds no state of its own: a hub
killed at any moment starts, finds applications whose phase is `running`, and runs them
again from the first step that has not succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from hub.errors import Conflict, FlotillaError
from hub.model.phases import AppPhase, Outcome, Stage, StepPhase, StepType, TargetPhase
from hub.model.records import StepRecord, TargetRecord
from hub.state.apps import AppStore

log = logging.getLogger(__name__)

# Clusters in flight per deploy step when the step does not set `parallelism` (KubeVela's
# default is unbounded; 32 keeps a hub's sockets and memory bounded at 100+ clusters).
DEFAULT_FANOUT = 32
# Checked between steps and while suspended: how soon `resume`/`suspend` take effect.
WAKE_INTERVAL = 1.0

# deploy(target, resumed=...) -> False when the target's canary step waits for resume;
# raises to fail that target only.
DeployTarget = Callable[..., Awaitable[bool]]
# The steps of a revision grouped in the order they may run (networkx generations).
StepOrder = Callable[[str, int], list[list[str]]]
# Extra per-step settings the engine needs from the spec: (auto, parallelism, duration).
StepSettings = Callable[[str, int, str], tuple[bool, int | None, float | None]]
# Called once a revision succeeded, before the application is marked succeeded.
AfterSuccess = Callable[[str, int], Awaitable[None]]


class Engine:
    def __init__(
        self,
        apps: AppStore,
        *,
        deploy: DeployTarget,
        order: StepOrder,
        settings: StepSettings,
        after_success: AfterSuccess,
        fanout: int = DEFAULT_FANOUT,
    ) -> None:
        self.apps = apps
        self._deploy = deploy
        self._order = order
        self._settings = settings
        self._after_success = after_success
        self._fanout = fanout
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}

    def start(self) -> None:
        """Resume every application the store says was running when the hub stopped."""
        for app in self.apps.apps():
            if app.phase.active:
                self.kick(app.name)

    async def stop(self) -> None:
        runners, self._runners = list(self._runners.values()), {}
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    def kick(self, app: str) -> None:
        """Make sure a runner drives `app`; wake it if it is waiting."""
        self._wake.setdefault(app, asyncio.Event()).set()
        task = self._runners.get(app)
        if task is None or task.done():
            task = asyncio.create_task(self._run(app), name=f"workflow:{app}")
            task.add_done_callback(functools.partial(self._finished, app))
            self._runners[app] = task

    def busy(self, app: str) -> bool:
        task = self._runners.get(app)
        return task is not None and not task.done()

    async def cancel(self, app: str) -> None:
        task = self._runners.pop(app, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # operator verbs

    def resume(self, app: str) -> str:
        """Approve a suspended step, advance a paused canary, lift an operator's suspend;
        on a failed workflow, retry what failed (as `restart`)."""
        record = self.apps.app(app)
        if record.phase == AppPhase.FAILED:
            self.restart(app)
            return "failed steps, retried"
        steps = self.apps.steps(app, record.revision)
        waiting = [s for s in steps if s.phase.waiting]
        timed = [r for r in self.apps.rollouts(app) if r.stage is Stage.PAUSED and r.resume_at]
        for rollout in timed:  # cut a timed canary pause short
            rollout.resume_at = time.time()
            self.apps.put_rollout(rollout)
        if timed and not waiting:
            self.apps.add_event(app, "resumed: timed canary pause cut short")
            return "canary pause"
        if not waiting and not record.suspend:
            raise Conflict(f"application {app!r} is not suspended (phase {record.phase})")
        for step in waiting:
            phase = StepPhase.APPROVED if step.phase is StepPhase.SUSPENDED else StepPhase.RESUMED
            self.apps.set_step(app, record.revision, step.name, phase=phase)
        self.apps.set_suspend(app, False)
        self.apps.set_app(app, phase=AppPhase.RUNNING)
        self.apps.add_event(app, f"resumed ({', '.join(s.name for s in waiting) or 'workflow'})")
        self.kick(app)
        return ", ".join(s.name for s in waiting) or "workflow"

    def suspend(self, app: str) -> None:
        record = self.apps.app(app)
        if not record.phase.active:
            raise Conflict(f"application {app!r} is not running (phase {record.phase})")
        self.apps.set_suspend(app, True)
        self.apps.add_event(app, "suspend requested: the workflow stops at the next step")

    def restart(self, app: str) -> None:
        """Retry what failed: failed steps go back to pending, healthy targets are kept."""
        record = self.apps.app(app)
        if self.busy(app) and record.phase == AppPhase.RUNNING:
            raise Conflict(f"application {app!r} is still running; wait or suspend it first")
        for step in self.apps.steps(app, record.revision):
            if step.phase == StepPhase.FAILED:
                self.apps.set_step(app, record.revision, step.name, phase=StepPhase.PENDING)
        self.apps.set_suspend(app, False)
        self.apps.set_app(app, phase=AppPhase.RUNNING)
        self.apps.add_event(app, f"workflow restarted at revision {record.revision}")
        self.kick(app)

    # the runner

    async def _run(self, app: str) -> None:
        while True:
            record = self.apps.app(app)
            revision = record.revision
            outcome = await self._run_revision(app, revision)
            if self.apps.app(app).revision != revision:
                continue  # superseded by a newer revision: drive that one now
            if outcome is None:
                return  # suspended: `resume` starts a new runner
            if outcome is Outcome.SUCCEEDED:
                await self._after_success(app, revision)
            self.apps.finish_revision(app, revision, outcome)
            phase = AppPhase.SUCCEEDED if outcome is Outcome.SUCCEEDED else AppPhase.FAILED
            message = "" if phase is AppPhase.SUCCEEDED else self._failure_summary(app, revision)
            self.apps.set_app(app, phase=phase, message=message)
            self.apps.add_event(app, f"revision {revision} {outcome}")
            return

    async def _run_revision(self, app: str, revision: int) -> Outcome | None:
        for generation in self._order(app, revision):
            steps = {s.name: s for s in self.apps.steps(app, revision)}
            pending = [
                steps[name] for name in generation if steps[name].phase != StepPhase.SUCCEEDED
            ]
            if not pending:
                continue
            if not await self._gate(app, revision):
                return None
            results = await asyncio.gather(*(self._step(app, revision, s) for s in pending))
            if None in results or self.apps.app(app).revision != revision:
                return None
            if Outcome.FAILED in results:
                return Outcome.FAILED
        return Outcome.SUCCEEDED

    async def _gate(self, app: str, revision: int) -> bool:
        """A suspend requested by the operator takes effect here, between steps."""
        record = self.apps.app(app)
        if record.revision != revision:
            return False
        if record.suspend:
            self.apps.set_app(app, phase=AppPhase.SUSPENDED, message="suspended by the operator")
            return False
        return True

    async def _step(self, app: str, revision: int, step: StepRecord) -> Outcome | None:
        auto, parallelism, duration = self._settings(app, revision, step.name)
        gated = step.type is StepType.SUSPEND or (step.type is StepType.DEPLOY and not auto)
        if (
            gated
            and step.phase != StepPhase.APPROVED
            and not await self._wait_for_approval(app, revision, step, duration)
        ):
            return None
        if step.type is StepType.SUSPEND:
            self.apps.set_step(app, revision, step.name, phase=StepPhase.SUCCEEDED)
            return Outcome.SUCCEEDED
        resumed = step.phase == StepPhase.RESUMED
        self.apps.set_step(app, revision, step.name, phase=StepPhase.RUNNING)
        targets = [
            t
            for t in self.apps.targets(app, revision)
            if t.step == step.name and t.phase != TargetPhase.HEALTHY
        ]
        bound = asyncio.Semaphore(parallelism or self._fanout)
        results = await asyncio.gather(*(self._target(bound, t, resumed) for t in targets))
        if self.apps.app(app).revision != revision:
            return None
        failed = [t for t, result in zip(targets, results, strict=True) if result is None]
        paused = [t for t, result in zip(targets, results, strict=True) if result is False]
        if paused and not failed:
            # Every cluster's canary step is ready: one resume advances them together.
            why = f"canary {paused[0].message}"
            self.apps.set_step(app, revision, step.name, phase=StepPhase.PAUSED, message=why)
            self.apps.set_app(app, phase=AppPhase.SUSPENDED, message=f"step {step.name}: {why}")
            self.apps.add_event(app, f"step {step.name}: {why} on {len(paused)} cluster(s)")
            return None
        if failed:
            names = ", ".join(f"{t.cluster}/{t.component}" for t in failed)
            self.apps.set_step(
                app, revision, step.name, phase=StepPhase.FAILED, message=f"failed on {names}"
            )
            return Outcome.FAILED
        self.apps.set_step(app, revision, step.name, phase=StepPhase.SUCCEEDED)
        return Outcome.SUCCEEDED

    async def _wait_for_approval(
        self, app: str, revision: int, step: StepRecord, duration: float | None
    ) -> bool:
        """Suspend the step until `workflow resume` or until its duration has passed.

        The deadline is stored, so a duration keeps counting across a hub restart."""
        resume_at = step.resume_at
        if step.phase != StepPhase.SUSPENDED:
            resume_at = time.time() + duration if duration is not None else None
            why = f"waiting for `flotilla workflow resume {app}`"
            if resume_at is not None:
                why += f" or {duration:.0f}s"
            self.apps.set_step(
                app,
                revision,
                step.name,
                phase=StepPhase.SUSPENDED,
                message=why,
                resume_at=resume_at,
            )
            self.apps.set_app(app, phase=AppPhase.SUSPENDED, message=f"step {step.name}: {why}")
            self.apps.add_event(app, f"step {step.name} suspended")
        if resume_at is None:
            return False  # `resume` marks the step approved and kicks a new runner
        wake = self._wake.setdefault(app, asyncio.Event())
        while time.time() < resume_at:
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    wake.wait(), timeout=min(WAKE_INTERVAL, resume_at - time.time())
                )
            current = self.apps.app(app)
            if current.revision != revision:
                return False
            phase = {s.name: s.phase for s in self.apps.steps(app, revision)}[step.name]
            if phase is StepPhase.APPROVED:
                break
        self.apps.set_app(app, phase=AppPhase.RUNNING)
        return True

    async def _target(
        self, bound: asyncio.Semaphore, target: TargetRecord, resumed: bool
    ) -> bool | None:
        """True deployed, False paused (canary), None failed."""
        async with bound:
            try:
                return await self._deploy(target, resumed=resumed)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one cluster fails its own target, never the process
                message = str(e) if isinstance(e, FlotillaError) else _describe(e)
                target.phase, target.message = TargetPhase.FAILED, message
                self.apps.put_target(target)
                self.apps.add_event(target.app, f"{target.cluster}/{target.component}: {message}")
                log.info("target %s/%s failed: %s", target.cluster, target.component, message)
                return None

    def _failure_summary(self, app: str, revision: int) -> str:
        failed = [s for s in self.apps.steps(app, revision) if s.phase == StepPhase.FAILED]
        return "; ".join(f"step {s.name}: {s.message}" for s in failed)

    def _finished(self, app: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("workflow runner of %s died", app, exc_info=error)
            try:
                self.apps.set_app(
                    app, phase=AppPhase.FAILED, message=f"internal error: {_describe(error)}"
                )
            except Exception:
                log.exception("cannot record the failure of %s", app)


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
