"""The hub's own change stream: every event the engine records, and a tick whenever an
application's state changes, for whoever watches (`flotilla events --follow`, the web
view).

The store is the truth and this stream only says that something changed: a watcher that
falls behind loses ticks, not state, and reads the store (or the status) again. So each
subscriber's queue is bounded; when it is full the oldest change goes and the subscriber
is told it lagged, and the hub never waits on a slow watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from hub.model.records import EventRecord

# Changes a subscriber may fall behind by before the oldest are dropped.
QUEUE_BOUND = 1000


@dataclass(frozen=True)
class Change:
    app: str
    event: EventRecord | None = None
    """The event recorded; None: the application's state changed (a step, a target, a
    canary, a measurement)."""


class Subscription:
    def __init__(self, changes: Changes, bound: int) -> None:
        self._changes = changes
        self._queue: asyncio.Queue[Change] = asyncio.Queue(bound)
        self.lagged = 0
        """Changes dropped because this subscriber fell behind."""

    def offer(self, change: Change) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.lagged += 1
        self._queue.put_nowait(change)

    async def get(self) -> Change:
        return await self._queue.get()

    def drain(self) -> list[Change]:
        """Every change already queued, at once (to coalesce a burst of ticks)."""
        found = []
        while not self._queue.empty():
            found.append(self._queue.get_nowait())
        return found

    def close(self) -> None:
        self._changes.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Change]:
        while True:
            yield await self.get()


class Changes:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def publish(self, change: Change) -> None:
        """Called by the store's writers, synchronously: offering never blocks."""
        for subscriber in self._subscribers:
            subscriber.offer(change)

    def subscribe(self, bound: int = QUEUE_BOUND) -> Subscription:
        """Changes from now on; `close()` the subscription when done."""
        subscription = Subscription(self, bound)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
