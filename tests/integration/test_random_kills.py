"""The hub SIGKILLed at moments a seeded generator picks, during a two-cluster canary that is
rolled back in the middle (issue 17, section 5).

Each run: canary-demo 1.0.0 everywhere, then 2.0.0 with a canary on prod-eu (3 replicas)
and prod-us (5), paused at step 1 (and, if the seed says so, resumed to step 2), then
rolled back. The hub is killed after chosen actions, either a random delay after it or
after the Nth event the hub records from then on, and started again on the same home each
time. Every run must end as the same run without kills does: 1.0.0 everywhere, the stable
pods those of the first deploy, no canary object, and no traceback in the hub's log.

`make test` runs a few seeds (fresh ones each session); `make chaos` many. The seed is in
the test id, the output and every assertion message: replay one with
`FLOTILLA_CHAOS_SEED=SEED pytest tests/integration/test_random_kills.py`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pytest

from e2e.chaos import seeds
from hub.cli.client import HubClient
from hub.home import Home
from tests.fleet import Fleet, until
from tests.integration.test_canary import _assert_v1_everywhere, _deploy_v1, _paused_at, _trait

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]

# Runs under `make test`; `make chaos` sets FLOTILLA_CHAOS_RUNS.
TEST_RUNS = 2
APP = "canary-demo"
TRAIT = _trait(steps=(20, 90))
# The actions a kill may follow: `paused` is the pause the rollback is sent at; after it
# nothing happens until the next command, so only a delay can place a kill there.
ACTIONS = ("upgrade", "resume", "paused", "rollback")
QUIET = frozenset({"paused"})
# Up to this long after its action: long enough to land after the canary paused, or after
# the rollback finished, now and then.
MAX_DELAY = 6.0
# Up to this many events after its action: an upgrade records about fifteen before it
# pauses, a rollback about twenty.
MAX_EVENTS = 8
# Bounds on waiting (never timing assertions): a canary step, a restarted hub's resume.
WAIT = 300.0


@dataclass(frozen=True)
class Kill:
    """A SIGKILL `delay` seconds after `after`, or once `events` more events are recorded
    (or the workflow stops running first)."""

    after: str
    delay: float | None = None
    events: int | None = None

    def __str__(self) -> str:
        moment = f"{self.delay:.2f}s" if self.delay is not None else f"{self.events} events"
        return f"{moment} after {self.after}"


@dataclass(frozen=True)
class Plan:
    rollback_at: int  # the canary step paused at when the rollback is sent
    kills: tuple[Kill, ...]

    def __str__(self) -> str:
        kills = ", ".join(map(str, self.kills))
        return f"rollback at step {self.rollback_at}; kills: {kills}"


def _plan(seed: int) -> Plan:
    """The run a seed stands for: where the rollback comes, and one kill or more (up to two
    after each action)."""
    rng = random.Random(seed)
    rollback_at = rng.choice((1, 2))
    actions = [a for a in ACTIONS if rollback_at == 2 or a != "resume"]
    kills: list[Kill] = []
    while not kills:
        for action in actions:
            for _ in range(rng.choice((0, 0, 1, 2))):
                if action in QUIET or rng.random() < 0.5:
                    kills.append(Kill(action, delay=round(rng.uniform(0.0, MAX_DELAY), 2)))
                else:
                    kills.append(Kill(action, events=rng.randint(1, MAX_EVENTS)))
    return Plan(rollback_at, tuple(kills))


def _client(fleet: Fleet) -> HubClient:
    """The API of the hub now running: a restarted hub listens on another port."""
    return HubClient(*Home(fleet.hub.home).locate())


def _last_event(client: HubClient) -> int:
    after = 0
    while page := client.request("GET", f"/api/v1/events?app={APP}&after={after}&limit=1000")[
        "events"
    ]:
        after = page[-1]["id"]
    return after


def _kill_after(fleet: Fleet, action: str, plan: Plan, context: str) -> None:
    """Every kill the plan has after `action`, each placed from the restart before it."""
    for kill in (k for k in plan.kills if k.after == action):
        _await_moment(_client(fleet), kill, context)
        fleet.hub.kill()
        fleet.hub.start()


def _await_moment(client: HubClient, kill: Kill, context: str) -> None:
    if kill.events is None:
        time.sleep(kill.delay or 0.0)  # the chosen moment itself: no condition to wait for
        return
    baseline, wanted = _last_event(client), kill.events

    def reached() -> bool:
        query = f"/api/v1/events?app={APP}&after={baseline}&limit={wanted}"
        recorded = len(client.request("GET", query)["events"])
        return recorded >= wanted or _phase(client) != "running"

    until(reached, timeout=WAIT, what=f"{kill} ({context})")


def _phase(client: HubClient) -> str:
    return str(client.request("GET", f"/api/v1/apps/{APP}")["phase"])


def _until_phase(fleet: Fleet, wanted: str, context: str) -> None:
    until(lambda: _phase(_client(fleet)) == wanted, timeout=WAIT, what=f"{wanted} ({context})")


@pytest.mark.parametrize("seed", seeds(TEST_RUNS), ids=lambda seed: f"seed={seed}")
def test_hub_killed_at_random_moments_ends_as_without_kills(fleet: Fleet, seed: int) -> None:
    plan = _plan(seed)
    context = f"FLOTILLA_CHAOS_SEED={seed}: {plan}"
    print(f"\n{context}")
    try:
        _run(fleet, plan, context)
    except Exception as e:
        raise AssertionError(f"{context}: {e}") from e
    assert "Traceback" not in fleet.hub.log(), context


def _run(fleet: Fleet, plan: Plan, context: str) -> None:
    uids = _deploy_v1(fleet, traits=TRAIT)
    fleet.hub.ok("up", "-f", str(fleet.app(version="2.0.0", traits=TRAIT)))
    _kill_after(fleet, "upgrade", plan, context)
    _until_phase(fleet, "suspended", context)
    _paused_at(fleet, 1)
    if plan.rollback_at == 2:
        fleet.hub.ok("workflow", "resume", APP)
        _kill_after(fleet, "resume", plan, context)
        _until_phase(fleet, "suspended", context)
        _paused_at(fleet, 2)
    _kill_after(fleet, "paused", plan, context)
    fleet.hub.ok("workflow", "rollback", APP)
    _kill_after(fleet, "rollback", plan, context)
    _until_phase(fleet, "succeeded", context)
    _assert_v1_everywhere(fleet, uids)
    assert fleet.image("dev") == "registry.local/canary-demo:1.0.0"
    history = fleet.hub.ok("history", APP, "-o", "json").json()["revisions"]
    assert [(r["revision"], r["rollbackOf"]) for r in history] == [(1, None), (2, None), (3, 1)]
