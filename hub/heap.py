"""The interpreter's garbage collector, kept off the hub's long-lived heap.

Most of what a hub holds lives as long as the hub: its watch caches' objects, the store's
records, the clients of its clusters. CPython's cyclic collector walks all of that in every
full (generation 2) collection, with the event loop stopped, and runs one whenever what
survived the younger collections reaches a quarter of what the last full one kept. A
`status` of a thousand targets builds a tree of some 100,000 objects that young
collections promote while it is being built, so every dozen calls or so paid a full
collection: 2.5 s each over the thousand caches of the scale bench
(`flotilla_gc_pause_seconds`).

So the hub moves everything it holds into the interpreter's permanent generation
(`gc.freeze`, which splices two lists and costs nothing), where no collection looks: after
every full collection (what survived one is long-lived, and no other should walk it
again) and every FREEZE_EVERY besides, right after a collection of what is not frozen
yet, so that nothing already dead is frozen. What is allocated afterwards is collected as
before, and full collections walk only that. The price: a reference cycle among objects
frozen while alive is not freed when it dies (what is in no cycle is freed by its
reference counts all the same, frozen or not). So every THAW_EVERY everything goes back to
the collector (`gc.unfreeze`) and one full collection frees what died meanwhile, before it
is frozen again.
"""

from __future__ import annotations

import asyncio
import gc

# The supervised task (hub.root).
TASK = "heap"
# Seconds between freezes: what a minute allocates and keeps is all a full collection walks.
FREEZE_EVERY = 60.0
# Seconds between thaws: cycles that died frozen wait this long at most to be freed, and
# the hub pays one full collection of its whole heap this often.
THAW_EVERY = 30 * 60.0


async def keep() -> None:
    """Freeze the heap after every full collection and every FREEZE_EVERY, and thaw and
    collect it every THAW_EVERY, until cancelled; it is given back to the collector then."""
    loop = asyncio.get_running_loop()
    thawed = loop.time()

    def collected(phase: str, info: dict[str, int]) -> None:
        # On the thread that collected (a render's, perhaps), within the collection.
        if phase == "stop" and info["generation"] == 2:
            loop.call_soon_threadsafe(gc.freeze)

    gc.callbacks.append(collected)
    try:
        while True:
            await asyncio.sleep(FREEZE_EVERY)
            if loop.time() - thawed >= THAW_EVERY:
                gc.unfreeze()
                thawed = loop.time()
            # What is dead is collected first, never frozen: cycles of answers that died
            # uncollected (an aiohttp response holds its body) were 0.5 MiB per cluster
            # frozen after a thousand joins. This walks only what is not frozen yet.
            gc.collect()
            gc.freeze()
    finally:
        gc.callbacks.remove(collected)
        gc.unfreeze()
