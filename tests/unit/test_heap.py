"""The hub keeps its long-lived heap frozen, out of the collector's way, and thaws it now
and then so that cycles that died frozen are freed. Virtual time; the collector is the
interpreter's own."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref

import pytest

from hub import heap


class _Node:
    """A reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


@pytest.mark.looptime
async def test_a_cycle_that_dies_frozen_is_freed_at_the_next_thaw() -> None:
    task = asyncio.create_task(heap.keep())
    try:
        node = _Node()
        alive = weakref.ref(node)
        await asyncio.sleep(heap.FREEZE_EVERY + 1)
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: no collection looks at it
        await asyncio.sleep(heap.THAW_EVERY)
        assert alive() is None  # thawed and collected
        assert gc.get_freeze_count() > 0  # and what lives on is frozen again
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert gc.get_freeze_count() == 0  # a stopped hub gives its heap back


@pytest.mark.looptime
async def test_what_is_allocated_after_a_freeze_is_collected_as_before() -> None:
    task = asyncio.create_task(heap.keep())
    try:
        await asyncio.sleep(heap.FREEZE_EVERY + 1)
        node = _Node()
        alive = weakref.ref(node)
        del node
        gc.collect()
        assert alive() is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.looptime
async def test_what_survives_a_full_collection_is_frozen_at_once() -> None:
    task = asyncio.create_task(heap.keep())
    try:
        await asyncio.sleep(0)  # the task is waiting for its first freeze
        assert gc.get_freeze_count() == 0
        gc.collect(2)
        await asyncio.sleep(0)  # the freeze the collection asked for
        assert gc.get_freeze_count() > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
