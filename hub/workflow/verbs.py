"""What operators ask of a running workflow: resume, suspend, restart.

Each verb writes its decision to the store first, then notifies the application's waiters
(`hub.workflow.signals`), which read the store again: one signal path, and a hub restart
loses nothing a verb said.

A `resume` sent while a canary step is still on its way to its pause (the step running,
its canaries upgrading, routing traffic, or paused on some clusters only) approves that
coming pause: each of those canaries records `resume_step`, and once every cluster of the
step has paused where its pause was approved the step goes on at once instead of pausing,
all clusters together as after any resume. The approval is for that one pause only; a
`restart` forgets it, since it was given to an attempt that failed.
"""

from __future__ import annotations

from hub.errors import Conflict
from hub.model.phases import AppPhase, Stage, StepPhase, StepType, TargetPhase
from hub.model.records import AppRecord, StepRecord
from hub.state.interface import AppStore
from hub.workflow.engine import Engine

# Canary stages of a running step on its way to a pause that `resume` may approve.
APPROACHING = (Stage.UPGRADING, Stage.TRAFFIC_ROUTING, Stage.PAUSED)


class Verbs:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.apps: AppStore = engine.apps

    def resume(self, app: str) -> str:
        """Approve a suspended step, advance a paused canary, lift an operator's suspend;
        on a failed workflow, retry what failed (as `restart`). When nothing of that kind
        waits, approve the pause a running canary step is on its way to (module docstring);
        with no such step either, the application is not suspended: refused."""
        record = self.apps.app(app)
        if record.phase == AppPhase.FAILED:
            self.restart(app)
            return "failed steps, retried"
        steps = self.apps.steps(app, record.revision)
        waiting = [s for s in steps if s.phase.waiting]
        if not waiting and not record.suspend:
            approved = self._approve_coming_pause(record, steps)
            if approved is None:
                message = f"application {app!r} is not suspended (phase {record.phase})"
                if record.phase is AppPhase.RUNNING:
                    message += (
                        f"; nothing waits for a resume yet: retry once `flotilla status {app}`"
                        " shows a step waiting"
                    )
                raise Conflict(message)
            self._engine.signals.notify(app)
            return approved
        for step in waiting:
            phase = StepPhase.APPROVED if step.phase is StepPhase.SUSPENDED else StepPhase.RESUMED
            self.apps.set_step(app, record.revision, step.name, phase=phase)
        self.apps.set_suspend(app, False)
        self.apps.set_app(app, phase=AppPhase.RUNNING)
        self.apps.add_event(
            app,
            f"resumed by the operator ({', '.join(s.name for s in waiting) or 'workflow'})",
            revision=record.revision,
        )
        self._engine.kick(app)
        return ", ".join(s.name for s in waiting) or "workflow"

    def suspend(self, app: str) -> None:
        """Stop the workflow at the next step; a canary freezes between its phases, and one
        in a timed pause at once."""
        record = self.apps.app(app)
        if not record.phase.active:
            raise Conflict(f"application {app!r} is not running (phase {record.phase})")
        self.apps.set_suspend(app, True)
        self.apps.add_event(
            app,
            "suspend requested by the operator: the workflow stops at the next step",
            revision=record.revision,
        )
        self._engine.signals.notify(app)

    def restart(self, app: str) -> None:
        """Retry what failed: failed steps go back to pending with their measurements
        forgotten, healthy targets are kept, pauses approved in advance are forgotten."""
        record = self.apps.app(app)
        if self._engine.running(app) and record.phase == AppPhase.RUNNING:
            raise Conflict(f"application {app!r} is still running; wait or suspend it first")
        for step in self.apps.steps(app, record.revision):
            if step.phase == StepPhase.FAILED:
                self.apps.set_step(app, record.revision, step.name, phase=StepPhase.PENDING)
                # A retry is measured afresh, not judged by the attempt that failed.
                self.apps.drop_measurements(app, record.revision, step.name)
        for rollout in self.apps.rollouts(app):
            if rollout.resume_step is not None:
                self.apps.approve_pause(app, rollout.cluster, rollout.component, None)
        self.apps.set_suspend(app, False)
        self.apps.set_app(app, phase=AppPhase.RUNNING)
        self.apps.add_event(
            app, f"workflow restarted at revision {record.revision}", revision=record.revision
        )
        self._engine.kick(app)

    def _approve_coming_pause(self, record: AppRecord, steps: list[StepRecord]) -> str | None:
        """Record `resume` on every canary of a running deploy step that is on its way to
        a pause; what was approved, or None when no canary is on its way. Targets of such a
        step with no canary under way (not started yet, or a release without one) are
        named: a pause of theirs would hold the step as usual."""
        running = {
            s.name for s in steps if s.type is StepType.DEPLOY and s.phase is StepPhase.RUNNING
        }
        targets = [
            t
            for t in self.apps.targets(record.name, record.revision)
            if t.step in running and t.phase != TargetPhase.HEALTHY
        ]
        canaries = {
            (r.cluster, r.component): r
            for r in self.apps.rollouts(record.name)
            if r.revision == record.revision
        }
        coming = [
            canaries[key]
            for key in ((t.cluster, t.component) for t in targets)
            if key in canaries and canaries[key].stage in APPROACHING
        ]
        if not coming:
            return None
        for rollout in coming:
            self.apps.approve_pause(record.name, rollout.cluster, rollout.component, rollout.step)
        numbers = ", ".join(str(n + 1) for n in sorted({r.step for r in coming}))
        what = f"canary pause at step {numbers}"
        uncovered = [
            f"{t.cluster}/{t.component}"
            for t in targets
            if (t.cluster, t.component) not in canaries
        ]
        if uncovered:
            what += f" (not on {', '.join(uncovered)}: no canary runs there yet)"
        self.apps.add_event(
            record.name,
            f"resumed by the operator while the step runs: the {what} is approved and will "
            "not hold",
            revision=record.revision,
        )
        return what
