"""Where a kind lives on one cluster, and how to call it without hammering it.

A manifest names `apiVersion` and `kind`; the REST path needs the plural resource name
and whether the kind is namespaced, which only the cluster's discovery documents know.
Discovery here is lazy and per group-version (`GET /apis/apps/v1`): one small request
per group-version a release actually uses, instead of the whole cluster's catalogue,
and it works on every API server version. A miss refreshes that group-version once,
because the kind may belong to a CRD installed moments ago.

Every request goes through `clusters.client.ClusterClient` (timeouts, the per-cluster
bound on requests in flight, errors mapped to `clusters.errors`). `ResourceClient.call`
adds retries with backoff and is only for idempotent requests: GET, DELETE, and
server-side apply.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient

from clusters.client import JSON, ClusterClient
from clusters.errors import ApiError, NotFound, Unreachable, reworded

# Either the cluster's shared ClusterClient (preferred: callers then share its bound on
# requests in flight) or a bare ApiClient, which gets a bound of its own per call.
Connection = ClusterClient | ApiClient

# Transient answers worth another try: throttled, or the server (or a proxy in front of
# it) briefly unable to answer. Anything else is the request's fault and will not heal.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# With the default backoff, five attempts span about 3 s: enough to ride out an API
# server restart behind a load balancer, short enough to fail a dead cluster promptly.
RETRY_ATTEMPTS = 5


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, so that many clients do not retry in step."""

    first: float = 0.2
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0-based): half fixed, half random."""
        ceiling = min(self.cap, self.first * self.factor**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class ObjectRef:
    """The address of one object; `namespace` is None for cluster-scoped kinds."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        metadata = obj.get("metadata") or {}
        return cls(
            str(obj.get("apiVersion", "")),
            str(obj.get("kind", "")),
            metadata.get("namespace"),
            str(metadata.get("name", "")),
        )

    def __str__(self) -> str:
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ResourceType:
    """What discovery says about one kind: its plural resource name and scope."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The REST path of the collection (no name) or of one object.

        Without a namespace a namespaced kind's path is the cluster-wide collection,
        which is what a list or watch across all namespaces asks for.
        """
        path = _group_version_path(self.api_version)
        if self.namespaced and namespace:
            path += f"/namespaces/{namespace}"
        path += f"/{self.plural}"
        return f"{path}/{name}" if name else path


class _Catalogue:
    """Discovered kinds of one cluster, per group-version, and the namespaces an apply
    made sure of; lives as long as its ApiClient."""

    def __init__(self) -> None:
        self.kinds: dict[str, dict[str, ResourceType]] = {}
        self.fetches: dict[str, int] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.namespaces: set[str] = set()


_CATALOGUES: weakref.WeakKeyDictionary[ApiClient, _Catalogue] = weakref.WeakKeyDictionary()


class ResourceClient:
    """Discovery, paths and retried idempotent calls for one cluster.

    Cheap to create: the discovered catalogue is cached per ApiClient, not per instance.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        backoff: Backoff = Backoff(),
        attempts: int = RETRY_ATTEMPTS,
    ) -> None:
        if isinstance(connection, ClusterClient):
            self.client = connection
        else:
            self.client = ClusterClient(connection, server=str(connection.configuration.host))
        self.backoff = backoff
        self.attempts = attempts
        self._catalogue = _CATALOGUES.setdefault(self.client.api, _Catalogue())

    async def resolve(self, api_version: str, kind: str) -> ResourceType:
        """The resource type for (apiVersion, kind); NotFound if the cluster does not serve it."""
        known = self._catalogue.kinds.get(api_version)
        if known is None or kind not in known:
            await self._discover(api_version, self._catalogue.fetches.get(api_version, 0))
        found = self._catalogue.kinds.get(api_version, {}).get(kind)
        if found is None:
            raise NotFound(
                f"{kind} ({api_version}): the cluster does not serve this kind",
                status=404,
                reason="NotFound",
            )
        return found

    @property
    def ensured_namespaces(self) -> set[str]:
        """Namespaces an apply through this cluster's client created or found: the next
        apply into one skips the round trip that makes sure of it (`clusters.apply`)."""
        return self._catalogue.namespaces

    async def path(self, ref: ObjectRef) -> str:
        """The REST path of one object; a cluster-scoped kind ignores `ref.namespace`."""
        resource = await self.resolve(ref.api_version, ref.kind)
        if resource.namespaced and not ref.namespace:
            raise ValueError(f"{ref}: {ref.kind} is namespaced but the reference has no namespace")
        return resource.path(ref.namespace, ref.name)

    async def call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """One idempotent request, retried on transient failures; errors say `what` it was.

        Retries honour the server's Retry-After advice when it gives one. The error of
        the last attempt is raised, prefixed with `what` ("apply Deployment shop/web").
        """
        failures = 0
        while True:
            try:
                return await self.client.request(
                    method, path, query=query, body=body, content_type=content_type
                )
            except (Unreachable, ApiError) as e:
                transient = isinstance(e, Unreachable) or e.status in RETRY_STATUSES
                failures += 1
                if not transient or failures >= self.attempts:
                    # The object names the failure better than the URL the client cited.
                    detail = str(e).removeprefix(f"{method} {path}: ")
                    raise reworded(e, f"{what}: {detail}") from e
                advice = e.retry_after if isinstance(e, ApiError) else None
                await asyncio.sleep(advice or self.backoff.delay(failures - 1))

    async def _discover(self, api_version: str, seen: int) -> None:
        """Fetch one group-version's kinds, unless another task did since we looked."""
        catalogue = self._catalogue
        lock = catalogue.locks.setdefault(api_version, asyncio.Lock())
        async with lock:
            if catalogue.fetches.get(api_version, 0) != seen:
                return
            try:
                document = await self.call(
                    "GET", _group_version_path(api_version), what=f"discover {api_version}"
                )
            except NotFound:
                document = {}
            catalogue.kinds[api_version] = {
                r["kind"]: ResourceType(api_version, r["kind"], r["name"], bool(r["namespaced"]))
                for r in document.get("resources", ())
                if "/" not in r["name"]  # subresources such as deployments/scale
            }
            catalogue.fetches[api_version] = seen + 1


def _group_version_path(api_version: str) -> str:
    """The core group lives under /api, every other group under /apis."""
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
