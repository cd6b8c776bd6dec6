"""The web view's live feed: server-sent events, pushed from the hub's change stream.

One stream per open page, for the application it shows. Each message is the JSON an API
call answers (`clusters`, `ls`, `status`, `event` shapes), so the page renders exactly
what `flotilla ... -o json` prints and there is no second view of the state in Python:

    event: clusters   the fleet (GET /api/v1/clusters)
    event: apps       the applications (GET /api/v1/apps)
    event: status     the selected application's tree (GET /api/v1/apps/NAME)
    event: absent     the selected application does not exist (any more): {"error": ...}
    event: event      one event (as /api/v1/events lists them), with its id as the SSE id

A change (`Change`) says only that something changed; the feed drains every change
already queued and reads the state afresh, so a burst of writes costs one status, and a
feed that lagged loses nothing. The status goes out at most every STATUS_EVERY, the list
of applications (a status per application) at most every APPS_EVERY. The prober's view
of the clusters and the watch caches' object health change without passing the change
stream, so every RESYNC_EVERY the feed also compares the fleet and the status with what
it last sent, and sends them only if they differ. Nothing is sent twice unchanged.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from hub.errors import NotFound
from hub.service.applications import Applications
from hub.service.clusters import Clusters
from hub.state.changes import Change, Subscription

STATUS_EVERY = 0.2
APPS_EVERY = 1.0
RESYNC_EVERY = 5.0
# Seconds of silence after which a comment line tells the browser the stream is alive.
KEEPALIVE = 15.0
# Events a page starts with, and at most read again after one burst of changes.
EVENTS_SHOWN = 100


@dataclass
class _Throttle:
    """A kind of message that is due (`pending`) and may go once `every` has passed."""

    every: float
    pending: bool = True
    sent_at: float = -math.inf

    def ready(self, now: float) -> bool:
        return self.pending and now >= self.sent_at + self.every

    def due(self) -> float:
        return self.sent_at + self.every if self.pending else math.inf


class Feed:
    def __init__(
        self,
        response: web.StreamResponse,
        apps: Applications,
        clusters: Clusters,
        app: str | None,
        after: int | None,
    ) -> None:
        """`app`: the selected application (None: none, the events of every one);
        `after`: the last event the page has (a reconnecting EventSource's
        Last-Event-ID), None for a new page, which gets the latest EVENTS_SHOWN."""
        self._response = response
        self._apps = apps
        self._clusters = clusters
        self._app = app
        self._after = after
        self._sent: dict[str, bytes] = {}
        self._written_at = 0.0
        self._loop = asyncio.get_running_loop()

    async def run(self, subscription: Subscription) -> None:
        """Everything the page shows, then every change to it, until the browser goes."""
        status, listing = _Throttle(STATUS_EVERY), _Throttle(APPS_EVERY)
        await self._fleet()
        await self._events()
        resync_at = self._loop.time() + RESYNC_EVERY
        while True:
            now = self._loop.time()
            if status.ready(now):
                await self._status()
                status.pending, status.sent_at = False, now
            if listing.ready(now):
                await self._listing()
                listing.pending, listing.sent_at = False, now
            if now >= resync_at:
                await self._fleet()
                await self._status()
                resync_at = now + RESYNC_EVERY
            if now >= self._written_at + KEEPALIVE:
                await self._write(b": keepalive\n\n")
            wake = min(status.due(), listing.due(), resync_at, self._written_at + KEEPALIVE)
            changes = await _next(subscription, max(0.0, wake - self._loop.time()))
            if any(change.event is not None and self._concerns(change) for change in changes):
                await self._events()
            if changes:
                listing.pending = True
            if any(change.app == self._app for change in changes):
                status.pending = True

    def _concerns(self, change: Change) -> bool:
        return self._app is None or change.app == self._app

    async def _fleet(self) -> None:
        await self._send("clusters", self._clusters.ls())

    async def _listing(self) -> None:
        await self._send("apps", await self._apps.ls())

    async def _status(self) -> None:
        if self._app is None:
            return
        try:
            await self._send("status", await self._apps.status(self._app))
        except NotFound as e:
            await self._send("absent", {"error": str(e)})

    async def _events(self) -> None:
        """The events after the last one sent; ids only grow, so none goes twice."""
        try:
            found = self._apps.events(self._app, after=self._after or 0, limit=EVENTS_SHOWN)
        except NotFound:
            return  # the application is gone: `absent` says so
        for event in found["events"]:
            self._after = event["id"]
            await self._write(b"id: %d\nevent: event\ndata: %s\n\n" % (event["id"], _json(event)))

    async def _send(self, kind: str, data: Any) -> None:
        """One message of `kind`, unless it is what the page was last sent of that kind
        (`status` and `absent` are one kind: what the selected application is)."""
        slot = "status" if kind == "absent" else kind
        payload = _json(data)
        if self._sent.get(slot) == kind.encode() + payload:
            return
        self._sent[slot] = kind.encode() + payload
        await self._write(b"event: %s\ndata: %s\n\n" % (kind.encode(), payload))

    async def _write(self, data: bytes) -> None:
        await self._response.write(data)
        self._written_at = self._loop.time()


async def _next(subscription: Subscription, wait: float) -> list[Change]:
    """The changes of one burst: the first within `wait` seconds (none: []), and every
    change queued behind it."""
    try:
        async with asyncio.timeout(wait):
            first = await subscription.get()
    except TimeoutError:
        return []
    return [first, *subscription.drain()]


def _json(data: Any) -> bytes:
    """One line: SSE's `data:` ends at a newline, and orjson writes none."""
    return orjson.dumps(data)
