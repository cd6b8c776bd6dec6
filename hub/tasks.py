"""One supervisor for every long-lived task of the hub: none dies quietly, none half-lives.

A hub runs for weeks. Its prober, its watch caches and its workflow runners are tasks
that can die of a bug or of something the code did not foresee; an `asyncio` task that
dies only logs "exception was never retrieved" when it is garbage-collected, and the part
it ran simply stops. Here every such task is spawned through a `Supervisor`, which logs a
death at once, records it where `cluster list`, `status` and metrics can show it,
restarts the task with exponential backoff, and, for a task the hub cannot live without
(`critical`) that keeps dying, stops the hub with a non-zero exit rather than leaving it
half alive.

A task that returns is done and is not restarted: returning is how a workflow runner says
that its application needs no driving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from hub.errors import FlotillaError

log = logging.getLogger(__name__)

# The first restart comes soon (most deaths are a blip), later ones no faster than twice a
# minute, so a task that dies at once on every start costs little.
FIRST_RESTART = 0.5
MAX_RESTART = 30.0
# A critical task that dies this many times without staying up for HEALTHY_AFTER seconds
# in between is not going to recover: the hub stops instead.
CRITICAL_DEATHS = 5
HEALTHY_AFTER = 60.0

Work = Callable[[], Awaitable[None]]


@dataclass
class TaskState:
    """What the supervisor knows of one task: shown by `cluster list`, status and metrics."""

    name: str
    critical: bool
    restarts: int = 0
    deaths: int = 0
    """Deaths since the task last stayed up for HEALTHY_AFTER seconds."""
    last_error: str | None = None
    failed_at: float | None = None
    started_at: float = 0.0
    """Loop time of the latest start (the loop's clock, so virtual time in tests)."""
    running: bool = True


class HubFailed(Exception):
    """A critical task kept dying: the hub cannot go on."""


class Supervisor:
    def __init__(
        self,
        *,
        first_restart: float = FIRST_RESTART,
        max_restart: float = MAX_RESTART,
        critical_deaths: int = CRITICAL_DEATHS,
    ) -> None:
        self._first = first_restart
        self._max = max_restart
        self._critical_deaths = critical_deaths
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._states: dict[str, TaskState] = {}
        self.restarts: Counter[str] = Counter()
        """Restarts since the hub started, by kind (`kind`): unlike a TaskState's count,
        it never goes down when a task ends or is cancelled, as a metric's counter must not."""
        self._fatal: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def spawn(self, name: str, work: Work, *, critical: bool = False) -> asyncio.Task[None]:
        """Run `work()` as the task `name`, restarting it whenever it raises.

        A task of that name that still runs is returned as is: one runner per name, so a
        second `kick` or `restart` can never start a second runner of one application."""
        current = self._tasks.get(name)
        if current is not None and not current.done():
            return current
        state = TaskState(name, critical)
        self._states[name] = state
        task = asyncio.create_task(self._supervise(state, work), name=name)
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._forget(name, done))
        return task

    def running(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def state(self, name: str) -> TaskState | None:
        return self._states.get(name)

    def states(self, prefix: str = "") -> Iterator[TaskState]:
        """Every task whose name starts with `prefix`, running or ended by a failure."""
        return (s for n, s in sorted(self._states.items()) if n.startswith(prefix))

    async def cancel(self, name: str) -> None:
        """Stop the task `name` (if it runs) and wait until it has stopped."""
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._states.pop(name, None)

    async def cancel_prefix(self, prefix: str) -> None:
        for name in [n for n in self._tasks if n.startswith(prefix)]:
            await self.cancel(name)

    async def close(self) -> None:
        """Cancel every task and wait for all of them: nothing outlives the hub."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def failed(self) -> None:
        """Returns (raising HubFailed) once a critical task cannot be kept alive."""
        await asyncio.shield(self._fatal)

    async def _supervise(self, state: TaskState, work: Work) -> None:
        while True:
            state.started_at, state.running = asyncio.get_running_loop().time(), True
            try:
                await work()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._died(state, error)
            if state.critical and state.deaths >= self._critical_deaths:
                message = f"{state.name} died {state.deaths} times in a row: {state.last_error}"
                log.critical("%s; the hub stops", message)
                if not self._fatal.done():
                    self._fatal.set_exception(HubFailed(message))
                return
            delay = min(self._first * 2 ** max(state.deaths - 1, 0), self._max)
            await asyncio.sleep(delay)
            state.restarts += 1
            self.restarts[kind(state.name)] += 1
            log.info("restarting %s (restart %d)", state.name, state.restarts)

    def _died(self, state: TaskState, error: Exception) -> None:
        if asyncio.get_running_loop().time() - state.started_at >= HEALTHY_AFTER:
            state.deaths = 0
        state.deaths += 1
        state.running = False
        state.failed_at = time.time()
        cause = innermost(error)
        state.last_error = f"{type(cause).__name__}: {first_line(cause)}"
        if isinstance(cause, FlotillaError):  # a condition the hub describes (a full disk)
            log.error("task %s died: %s", state.name, first_line(cause))
        else:
            log.error("task %s died", state.name, exc_info=error)

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        """A finished task leaves; a failed one keeps its state so the failure shows."""
        if self._tasks.get(name) is task:
            del self._tasks[name]
        state = self._states.get(name)
        if state is not None and state.last_error is None:
            self._states.pop(name, None)
        elif state is not None:
            state.running = False
        with contextlib.suppress(asyncio.CancelledError):
            if not task.cancelled() and task.exception() is not None:  # a bug in _supervise
                log.error("supervisor of %s died", name, exc_info=task.exception())


def kind(name: str) -> str:
    """What sort of task `name` is: `probe`, `observe` of `observe:<cluster>`, `workflow`
    of `workflow:<app>`. Few, whatever the fleet's size: what metrics count by."""
    return name.partition(":")[0]


def innermost(error: BaseException) -> BaseException:
    """The first error inside task groups' wrapping (nested, perhaps): the one to name
    where a person reads it."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def first_line(error: BaseException) -> str:
    """An error in one line, for a message: its first line, or its type if it says nothing."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
