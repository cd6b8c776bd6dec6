"""What a member cluster serves, as Helm's `.Capabilities` sees it when it renders live.

`helm upgrade --install` renders against the cluster it talks to: `.Capabilities.KubeVersion`
is the server's `/version` gitVersion and `.Capabilities.APIVersions` is Helm's version set
(`action.GetVersionSet`): every served `group/version`, and every `group/version/Kind` of
the resources and subresources served there (a subresource's kind under its parent's
group/version, e.g. `apps/v1/Scale`). Versions that discovery marks stale are left out, as
client-go leaves them out for Helm.

Both discovery documents are read aggregated (one request each for `/api` and `/apis`)
rather than one request per group, and sent again with their ETags: discovery rarely
changes, so a refresh is two 304s. This module must stay pure of any hub knowledge: it
answers plain data that the hub keeps per cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clusters.client import ClusterClient
from clusters.errors import ClusterError

# v2 (GA in 1.30), then v2beta1 (1.26 to 1.29: the same fields), as kubectl asks; plain
# JSON last, so that an older server answers its legacy list, refused by name rather than
# with a bare 406.
AGGREGATED = ",".join(
    (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        "application/json",
    )
)
# The core group (`/api`) and every other group (`/apis`), each one aggregated document.
CORE, GROUPS = "/api", "/apis"
DOCUMENTS = (CORE, GROUPS)
# A refresh asks only `/apis` (where CRDs and aggregated APIs come and go) unless it
# changed or this many refreshes went by: the server version and the core group change
# only with an upgrade, and asking them every time was two thirds of an idle hub's
# requests.
FULL_EVERY = 10
STALE = "Stale"


class DiscoveryUnsupported(ClusterError):
    """The server does not serve aggregated discovery (Kubernetes before 1.26 answers
    the legacy group list instead)."""


@dataclass(frozen=True)
class Capabilities:
    """A cluster's server version and Helm's version set of it, for rendering."""

    kube_version: str
    """The server's gitVersion, e.g. `v1.34.4` (or `v1.33.4-gke.1245000`)."""
    api_versions: tuple[str, ...]
    """Sorted: the order of a set is no difference between two clusters."""
    digest: str = field(init=False, compare=False)
    """Short and stable: renders are cached by it, not by the whole list."""

    def __post_init__(self) -> None:
        text = "\n".join((self.kube_version, *self.api_versions))
        object.__setattr__(self, "digest", hashlib.sha256(text.encode()).hexdigest()[:16])

    @classmethod
    def of(cls, kube_version: str, api_versions: Iterable[str]) -> Capabilities:
        return cls(kube_version, tuple(sorted(set(api_versions))))


@dataclass(frozen=True)
class Discovery:
    """One discovery of a cluster, with what makes the next one cheap: each document's
    ETag and the version set it gave."""

    capabilities: Capabilities
    etags: Mapping[str, str] = field(default_factory=dict)
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    partial: int = 0
    """Refreshes since the last discovery that asked every document."""


def version_set(document: Mapping[str, Any]) -> frozenset[str]:
    """Helm's version set of one aggregated discovery document (`APIGroupDiscoveryList`)."""
    if document.get("kind") != "APIGroupDiscoveryList":
        raise DiscoveryUnsupported(
            f"discovery answered {document.get('kind') or 'no kind'}, not an "
            "APIGroupDiscoveryList (aggregated discovery needs Kubernetes 1.26 or later)"
        )
    found: set[str] = set()
    for group in document.get("items") or ():
        name = (group.get("metadata") or {}).get("name") or ""
        for version in group.get("versions") or ():
            if version.get("freshness") == STALE:
                continue
            group_version = f"{name}/{version['version']}" if name else str(version["version"])
            found.add(group_version)
            for resource in version.get("resources") or ():
                kinds = [resource.get("responseKind")]
                kinds += [sub.get("responseKind") for sub in resource.get("subresources") or ()]
                found.update(f"{group_version}/{k['kind']}" for k in kinds if k and k.get("kind"))
    return frozenset(found)


async def discover(
    client: ClusterClient, previous: Discovery | None = None, *, timeout: float | None = None
) -> Discovery:
    """The cluster's capabilities now; the documents whose ETags still hold are not sent
    again (their sets come from `previous`). Raises ClusterError when it cannot ask.

    A first discovery asks for its three documents at once (a join waits for it). A
    refresh (`previous` given, every minute in the background) asks `/apis` alone,
    and the server version and the core group too when `/apis` changed or every
    FULL_EVERY refreshes, one after another over the one connection the prober keeps
    open. Asked at once, every refresh opened two more TLS connections that the pool
    closed again when they had idled for 15 s: at a thousand clusters, 67 handshakes a
    second, a quarter of an idle hub's CPU."""
    etags = dict(previous.etags) if previous else {}
    sets = dict(previous.sets) if previous else {}

    def ask(path: str) -> Awaitable[tuple[str | None, Any]]:
        return client.get_unless_match(
            path, accept=AGGREGATED, etag=etags.get(path), timeout=timeout
        )

    def server_version() -> Awaitable[Any]:
        return client.request("GET", "/version", timeout=timeout)

    answered: dict[str, tuple[str | None, Any]] = {}
    if previous is None:
        version, *answers = await asyncio.gather(server_version(), *map(ask, DOCUMENTS))
        answered = dict(zip(DOCUMENTS, answers, strict=True))
        kube_version = _git_version(client, version)
    else:
        answered[GROUPS] = await ask(GROUPS)
        kube_version = previous.capabilities.kube_version
        if answered[GROUPS][1] is not None or previous.partial + 1 >= FULL_EVERY:
            kube_version = _git_version(client, await server_version())
            answered[CORE] = await ask(CORE)
    for path, (etag, document) in answered.items():
        if document is not None:  # else 304: only sent with an ETag, so `sets` has it
            sets[path] = version_set(document)
        if etag:
            etags[path] = etag
        else:
            etags.pop(path, None)
    api_versions = frozenset().union(*sets.values())
    partial = previous.partial + 1 if previous and CORE not in answered else 0
    return Discovery(Capabilities.of(kube_version, api_versions), etags, sets, partial)


def _git_version(client: ClusterClient, answer: Any) -> str:
    """The gitVersion of `/version`'s answer."""
    found = str((answer or {}).get("gitVersion") or "")
    if not found:
        raise ClusterError(f"{client.server}: /version names no gitVersion")
    return found
