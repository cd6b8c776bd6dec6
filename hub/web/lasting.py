"""Responses that last as long as their client (event streams), ended when the hub stops.

A stream never ends by itself: without this, a hub stopping while a page or `flotilla
events --follow` is connected would wait out aiohttp's shutdown timeout (two minutes).
The client reconnects to the next hub and goes on from the last event it saw.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from aiohttp import web


class Lasting:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def register(self, app: web.Application) -> None:
        app.on_shutdown.append(self._end)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """While the calling handler streams: it is cancelled when the hub shuts down."""
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def _end(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
