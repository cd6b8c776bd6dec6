"""The canary's state machine and the phases it runs: pure data, no I/O.

The engine persists a `CanaryState`, asks the plan for the `Phase`s of its stage, runs
them, and calls `advance`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hub.canary.objects import Manifest, Ref
from hub.errors import FlotillaError
from hub.model.phases import Stage


class CanaryError(FlotillaError):
    """The canary cannot be planned: the trait does not fit the release, or the stable
    workload is in no state to start one from."""


# --- the state machine ------------------------------------------------------------------------


class Event(enum.StrEnum):
    DONE = "done"
    """Every phase of the stage ran and every wait held."""
    RESUME = "resume"
    """`workflow resume`, or the paused step's duration passed."""
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class CanaryState:
    stage: Stage = Stage.UPGRADING
    step: int = 0
    """Index into the trait's `canary.steps`."""


def advance(state: CanaryState, event: Event, step_count: int) -> CanaryState:
    """The state after `event`. A resume that comes before the pause is a no-op, as in
    kruise: it does not skip the wait for the canary pods."""
    stage = state.stage
    if event is Event.ROLLBACK:
        if stage in (Stage.COMPLETED, Stage.ROLLED_BACK):
            raise CanaryError(f"the canary is {stage}: there is nothing to roll back")
        return CanaryState(Stage.ROLLING_BACK, state.step)
    if event is Event.RESUME:
        if stage is not Stage.PAUSED:
            return state
        if state.step + 1 < step_count:
            return CanaryState(Stage.UPGRADING, state.step + 1)
        return CanaryState(Stage.FINALISING, state.step)
    following = {
        Stage.UPGRADING: Stage.TRAFFIC_ROUTING,
        Stage.TRAFFIC_ROUTING: Stage.PAUSED,
        Stage.FINALISING: Stage.COMPLETED,
        Stage.ROLLING_BACK: Stage.ROLLED_BACK,
    }
    if stage not in following:
        raise ValueError(f"a canary that is {stage} has no work to finish")
    return CanaryState(following[stage], state.step)


# --- phases -------------------------------------------------------------------------------------


class Wait(enum.StrEnum):
    """What a phase waits for once its objects are applied and deleted."""

    NOTHING = "nothing"
    READY = "ready"
    """`CanaryStatus.of(live).ready` for every object in `wait_for`."""
    GONE = "gone"
    """Every object in `wait_for` no longer exists. Delete with Foreground propagation, so
    a Deployment is gone only once its pods are."""


@dataclass(frozen=True)
class Phase:
    """One move: apply these, delete those, wait, then let proxies catch up for `grace`
    seconds. The phases of a stage run in order; each may be repeated safely."""

    why: str
    """One line for the event log."""
    apply: tuple[Manifest, ...] = ()
    delete: tuple[Ref, ...] = ()
    wait: Wait = Wait.NOTHING
    wait_for: tuple[Ref, ...] = ()
    grace: float = 0.0
