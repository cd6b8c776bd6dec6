"""What the bench's shared API servers add to the hub's CPU per release (section 2b).

Each API server of the bench carries several logical clusters (`bench.fleet`), and the
watch cache of each logical cluster watches its whole server: an event of one release is
read by every cache there, work a fleet of separate clusters never does. This measures it
in the run rather than estimating it from a profile:

- the events of its own objects one cluster's cache sees per release, counted by a cache
  of the bench's own (the hub's kinds and selector) on the first server during the
  unwatched deploys;
- the hub CPU per event and cache: ConfigMaps of the same mean size written on that
  server, which all of its logical clusters' caches read, the hub otherwise idle. The
  size is the objects' as cached, without their managed fields, which the events on the
  wire carry as well: the duplication measured is, if anything, too small.

The duplication per release is then events x (caches per server - 1) x CPU per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from bench.fleet import BenchError, Fleet
from clusters.client import ClusterClient
from clusters.watch import ClusterCache
from e2e import clusters
from hub.fleet.objects import MANAGED_BY
from hub.fleet.observer import SELECTOR, WATCHED_KINDS

# Written on one server to time the hub's reading of them: enough for a CPU reading
# well above the idle hub's.
WRITES = 600
NAMESPACE = "bench-duplication"
# Each write's ConfigMap is one of these, so the caches hold few objects.
NAMES = 20
# The idle hub's CPU rate is read over this long, to take out of the writes' reading.
IDLE = 3.0
# After the last write, the hub's caches may still be reading: bounded, not awaited.
DRAIN = 2.0
WAIT = 60.0


@dataclass(frozen=True)
class Duplication:
    events_per_release: float
    """Events of a release's own objects that its cluster's cache read."""
    caches_per_server: int
    cpu_per_event: float
    """Hub CPU seconds per event and cache."""
    event_bytes: int

    @property
    def per_release(self) -> float:
        """Hub CPU seconds per release that the other caches of its server spend."""
        return self.events_per_release * (self.caches_per_server - 1) * self.cpu_per_event


class Counter:
    """Counts the events a cache of the hub's kinds and selector sees on the first server,
    while `counting`; and their mean size."""

    def __init__(self, client: ClusterClient) -> None:
        self.client = client
        self.cache = ClusterCache(
            client, WATCHED_KINDS, label_selector=SELECTOR, on_change=self.seen
        )
        self.events = 0
        self.bytes = 0
        self._on = False

    def seen(self, obj: dict[str, Any]) -> None:
        if self._on:
            self.events += 1
            self.bytes += len(orjson.dumps(obj))

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on = False


@contextlib.asynccontextmanager
async def counter(fleet: Fleet) -> AsyncIterator[Counter]:
    """A Counter on the server of the fleet's first slot, listed and watching."""
    document = yaml.safe_load(fleet.slots[0].info.kubeconfig.read_text())
    client = await ClusterClient.connect(document)
    seen = Counter(client)
    cache = seen.cache
    try:
        async with cache:
            if not await cache.wait_for(lambda: cache.synced, WAIT):
                raise BenchError(f"the bench's own watch did not sync: {cache.last_error}")
            yield seen
    finally:
        await client.close()


async def measure(fleet: Fleet, seen: Counter, deploys: int) -> Duplication:
    """From `seen`, which counted the events of `deploys` deploys to every slot of the
    fleet (of their targets on the first server, one per cache there), and from writes on
    that server."""
    server = fleet.slots[0].info
    caches = sum(1 for slot in fleet.slots if slot.info.server == server.server)
    releases = caches * deploys
    events = seen.events
    if not events or not releases:
        raise BenchError("the bench's own watch saw no event of the deploys")
    size = seen.bytes // events
    clusters.create_namespace(NAMESPACE, [server])
    try:
        cpu = await _reading(fleet, seen, size)
    finally:
        clusters.delete_namespace(NAMESPACE, [server])
    return Duplication(events / releases, caches, cpu / WRITES / caches, size)


async def _reading(fleet: Fleet, seen: Counter, size: int) -> float:
    """The hub CPU seconds of reading WRITES events of about `size` bytes, less what the
    idle hub used meanwhile."""
    idle_cpu, start = fleet.cpu(), time.monotonic()
    await asyncio.sleep(IDLE)
    rate = (fleet.cpu() - idle_cpu) / (time.monotonic() - start)
    cpu, start = fleet.cpu(), time.monotonic()
    seen.events = 0
    query = {"fieldManager": "bench", "force": "true"}
    filler = max(size - 300, 1)  # a ConfigMap's own fields are some 300 bytes
    with seen.counting():
        for index in range(WRITES):
            name = f"dup-{index % NAMES}"
            body = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name, "labels": {MANAGED_BY: "flotilla"}},
                "data": {"filler": str(index).rjust(filler, "x")},
            }
            await seen.client.request(
                "PATCH",
                f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}",
                query=query,
                body=body,
                content_type="application/apply-patch+yaml",
            )
        if not await seen.cache.wait_for(lambda: seen.events >= WRITES, WAIT):
            raise BenchError(f"the bench's own watch saw {seen.events} of {WRITES} writes")
    await asyncio.sleep(DRAIN)
    return fleet.cpu() - cpu - rate * (time.monotonic() - start)
