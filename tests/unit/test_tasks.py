"""The supervisor under virtual time: deaths are seen, tasks come back, a hopeless critical
task stops the hub, and one name never runs twice."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from hub.tasks import HubFailed, Supervisor

pytestmark = pytest.mark.looptime


async def test_a_task_that_dies_is_restarted_with_backoff_and_its_failure_shows() -> None:
    supervisor = Supervisor(first_restart=1.0, max_restart=8.0)
    starts: list[float] = []
    loop = asyncio.get_running_loop()
    recovered = asyncio.Event()

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) < 4:
            raise RuntimeError(f"boom {len(starts)}\nsecond line")
        recovered.set()
        await asyncio.Event().wait()

    supervisor.spawn("prober", flaky)
    await asyncio.wait_for(recovered.wait(), 60)

    gaps = [round(b - a, 3) for a, b in itertools.pairwise(starts)]
    assert gaps == [1.0, 2.0, 4.0]
    state = supervisor.state("prober")
    assert state is not None and state.running and state.restarts == 3
    assert state.last_error == "RuntimeError: boom 3"
    await supervisor.close()


async def test_a_critical_task_that_keeps_dying_stops_the_hub() -> None:
    supervisor = Supervisor(first_restart=0.1, critical_deaths=3)

    async def broken() -> None:
        raise ValueError("no store")

    supervisor.spawn("root", broken, critical=True)
    with pytest.raises(HubFailed, match="root died 3 times in a row: ValueError: no store"):
        await asyncio.wait_for(supervisor.failed(), 10)
    await supervisor.close()


async def test_one_name_runs_once_and_a_returning_task_is_not_restarted() -> None:
    supervisor = Supervisor()
    release = asyncio.Event()
    runs = 0

    async def runner() -> None:
        nonlocal runs
        runs += 1
        await release.wait()

    first = supervisor.spawn("workflow:app", runner)
    second = supervisor.spawn("workflow:app", runner)
    assert first is second
    await asyncio.sleep(0)
    release.set()
    await first
    assert runs == 1 and not supervisor.running("workflow:app")
    assert supervisor.state("workflow:app") is None  # a clean end leaves no trace
    await supervisor.close()


async def test_cancel_and_close_leave_nothing_running() -> None:
    supervisor = Supervisor()

    async def forever() -> None:
        await asyncio.Event().wait()

    tasks = [supervisor.spawn(f"observe:{i}", forever) for i in range(3)]
    await supervisor.cancel("observe:0")
    assert tasks[0].cancelled()
    await supervisor.close()
    assert all(t.done() for t in tasks)


async def test_a_death_inside_a_task_group_is_named_by_its_cause() -> None:
    supervisor = Supervisor(first_restart=100.0)

    async def grouped() -> None:
        async def fail() -> None:
            raise KeyError("target")

        async with asyncio.TaskGroup() as group:
            group.create_task(fail())

    supervisor.spawn("workflow:app", grouped)
    await asyncio.sleep(1)  # virtual time: it dies at once, and restarts only after 100 s
    state = supervisor.state("workflow:app")
    assert state is not None and state.last_error == "KeyError: 'target'"
    assert state.restarts == 0
    await supervisor.close()
