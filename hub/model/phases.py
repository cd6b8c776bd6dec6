"""The phases of the hub's state machines, one enum each; every value written is a member.

They are `StrEnum`s because they are stored in SQLite and sent as JSON as their values:
a member compares equal to its value, so a record read back needs no translation.
"""

from __future__ import annotations

import enum


class AppPhase(enum.StrEnum):
    """Where an application's current revision stands (`status`, `ls`)."""

    RUNNING = "running"
    SUSPENDED = "suspended"
    """Waiting for a person: a suspend step, a paused canary, or an operator's suspend."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DELETING = "deleting"

    @property
    def active(self) -> bool:
        """A runner drives (or must drive, after a restart) an application in this phase."""
        return self in (AppPhase.RUNNING, AppPhase.SUSPENDED)

    @property
    def driven(self) -> bool:
        """The hub that drives the application has work to resume after a restart or a
        failover: a runner for an active one, the removal for one being deleted."""
        return self.active or self is AppPhase.DELETING

    def yields_to(self, new: AppPhase) -> bool:
        """A write of phase `new` may replace this one. An application being deleted stays
        deleting until its removal ends (failed, or gone), so that a runner finishing as
        the delete comes in, on this hub or on another replica, cannot undo it."""
        return self is not AppPhase.DELETING or new in (AppPhase.DELETING, AppPhase.FAILED)

    @property
    def settled(self) -> bool:
        """Nothing moves until a person acts: what `up --wait` waits for."""
        return self in (AppPhase.SUCCEEDED, AppPhase.FAILED, AppPhase.SUSPENDED)


class StepType(enum.StrEnum):
    DEPLOY = "deploy"
    SUSPEND = "suspend"
    CHECK_METRICS = "check-metrics"


class StepPhase(enum.StrEnum):
    """One workflow step of one revision."""

    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    """A suspend step, or an `auto: false` deploy step, waiting for approval."""
    APPROVED = "approved"
    """Approved while suspended; the runner deploys it next."""
    PAUSED = "paused"
    """A deploy step whose canary is ready on every cluster, waiting for resume."""
    RESUMED = "resumed"
    """A paused canary step that was resumed; the runner advances it next."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (StepPhase.SUCCEEDED, StepPhase.FAILED)

    @property
    def waiting(self) -> bool:
        """Held until `workflow resume`."""
        return self in (StepPhase.SUSPENDED, StepPhase.PAUSED)


class TargetPhase(enum.StrEnum):
    """One (cluster, component) of one step."""

    PENDING = "pending"
    APPLYING = "applying"
    WAITING = "waiting"
    """Applied; waiting for its objects to become healthy."""
    PAUSED = "paused"
    """Its canary step is ready and waits for resume."""
    HEALTHY = "healthy"
    FAILED = "failed"


class Outcome(enum.StrEnum):
    """How a revision ended (`history`)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SUPERSEDED = "superseded"


class Stage(enum.StrEnum):
    """Where one workload's canary is; persisted by the engine with the step index.

    Per step: UPGRADING (hold the stable workload, run the canary pods, wait until ready),
    TRAFFIC_ROUTING (send the step's traffic to them), PAUSED (until resumed). After the
    last step: FINALISING, then COMPLETED. ROLLING_BACK can interrupt any of them.
    """

    UPGRADING = "upgrading"
    TRAFFIC_ROUTING = "traffic-routing"
    PAUSED = "paused"
    FINALISING = "finalising"
    COMPLETED = "completed"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"


class Measured(enum.StrEnum):
    """What one measurement of one metric on one cluster said."""

    PASS = "pass"
    FAIL = "fail"
    """The value broke the metric's condition."""
    ERROR = "error"
    """No value: Prometheus unreachable, a PromQL error, no series, several, or NaN."""


class Verdict(enum.StrEnum):
    """Where an analysis stands: of one metric on one cluster, or of a whole step."""

    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    """Too many measurement errors in a row: it aborts as a failure does, saying why."""

    @property
    def finished(self) -> bool:
        return self is not Verdict.RUNNING


class HookPhase(enum.StrEnum):
    """The last run of a Helm hook, as Helm records it; and what became of a `crds/`
    object, which the hub creates when absent and then leaves alone."""

    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CREATED = "Created"
    EXISTED = "Existed"
