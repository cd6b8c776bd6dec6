"""The Kubernetes store's memory of its objects: a watch cache of every flotilla kind and
of our Secrets, plus what the store itself just wrote.

Reads are answered from here without asking the API server, so a write must be seen at
once by the reads after it, before its watch event arrives: the object the server
returned goes into an overlay that wins over the watch cache until the cache holds that
resourceVersion or a newer one. A deleted object leaves a tombstone, so that a late watch
event of it (from before the delete) does not bring it back. resourceVersions are etcd
revisions: they are compared as integers.

Lives on the store's own event loop; nothing here is safe to call from another thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from clusters.client import ClusterClient
from clusters.watch import ClusterCache
from hub.state.kube.resources import (
    API_VERSION,
    KINDS,
    MANAGED_SELECTOR,
    SECRET,
    Object,
    resource_version,
)

# A tombstone outlives any watch event that could still name the deleted object: events
# arrive in order within seconds, and a cache that lost its watch for longer re-lists.
TOMBSTONE_SECONDS = 300.0


@dataclass(frozen=True)
class _Written:
    version: int
    obj: Object | None  # None: deleted
    at: float


class Mirror:
    """Objects of the store's namespace as last seen: watched, and written by us."""

    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        on_change: Callable[[Object], None] | None = None,
    ) -> None:
        """`on_change` is told of every object the watch brings (see ClusterCache)."""
        self.namespace = namespace
        kinds = [(API_VERSION, kind.kind) for kind in KINDS] + [("v1", SECRET)]
        self.cache = ClusterCache(
            client,
            kinds,
            label_selector=MANAGED_SELECTOR,
            namespaces=[namespace],
            on_change=on_change,
        )
        self._kinds = [kind for _, kind in kinds]
        self._written: dict[tuple[str, str], _Written] = {}

    async def start(self) -> None:
        await self.cache.start()

    async def stop(self) -> None:
        await self.cache.stop()

    def listed(self) -> bool:
        """Every kind listed at least once: only then is a miss an absence."""
        return all(self.cache.listed(kind) for kind in self._kinds)

    def get(self, kind: str, name: str) -> Object | None:
        return self._resolve(kind, name, self.cache.get(kind, self.namespace, name))

    def objects(self, kind: str) -> list[Object]:
        """Every object of `kind` (a scan: for the reads that need all of a kind)."""
        found = []
        seen = set()
        for obj in self.cache.list(kind, self.namespace):
            name = obj["metadata"]["name"]
            seen.add(name)
            if (current := self._resolve(kind, name, obj)) is not None:
                found.append(current)
        for (k, name), written in list(self._written.items()):
            if k == kind and name not in seen and written.obj is not None:
                found.append(written.obj)
        return found

    def observe(self, obj: Object) -> None:
        """An object the server returned from our write: read at once."""
        obj["metadata"].pop("managedFields", None)  # bulky, and only the server's
        name = obj["metadata"]["name"]
        kind = str(obj["kind"])
        self._put(kind, name, resource_version(obj), obj)

    def forget(self, kind: str, name: str, version: int) -> None:
        """An object we deleted at `version`: gone at once, whatever the watch says late."""
        self._put(kind, name, version, None)

    def _put(self, kind: str, name: str, version: int, obj: Object | None) -> None:
        held = self._written.get((kind, name))
        if held is None or held.version <= version:
            self._written[kind, name] = _Written(version, obj, time.monotonic())

    def _resolve(self, kind: str, name: str, cached: Object | None) -> Object | None:
        written = self._written.get((kind, name))
        if written is None:
            return cached
        seen = resource_version(cached) if cached is not None else 0
        caught_up = seen > written.version or (written.obj is not None and seen == written.version)
        expired = time.monotonic() - written.at > TOMBSTONE_SECONDS
        if caught_up or (expired and cached is None):
            del self._written[kind, name]
            return cached
        return written.obj


def copy_of(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """A deep copy for a mutation: the mirror's objects are never changed in place."""
    return None if obj is None else orjson.loads(orjson.dumps(obj))
