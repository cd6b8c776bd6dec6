"""Wake-ups for an application's waiters: how `resume` and `suspend` reach a running workflow.

The store says what an operator decided; a signal says only that something changed. A verb
writes the store first and then calls `notify(app)`; every waiter of that application (a
timed suspend step, a timed canary pause) wakes, reads the store again and acts on what it
finds there. A signal carries nothing, so one lost with a hub restart loses nothing: the
new hub's waiters read the same store. Waiters sleep until notified or until their own
deadline, never on a polling timer, so a resume takes effect at once and an idle hub does
no work.
"""

from __future__ import annotations

import asyncio
import contextlib


class Signals:
    """One wake-up per application, owned by the engine and shared with the canaries."""

    def __init__(self) -> None:
        # Present only while someone waits: a notify that finds no waiter has nothing to do.
        self._events: dict[str, asyncio.Event] = {}

    def notify(self, app: str) -> None:
        """Wake everyone waiting on `app` now; later waiters wait for the next notify."""
        event = self._events.pop(app, None)
        if event is not None:
            event.set()

    async def wait(self, app: str, timeout: float | None) -> None:
        """Sleep until `notify(app)` or for `timeout` seconds, whichever comes first.

        Call it right after reading the store, with nothing awaited in between: the event
        is taken before the first suspension point, so no notify can fall between the
        read and the wait and be missed."""
        event = self._events.setdefault(app, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()
