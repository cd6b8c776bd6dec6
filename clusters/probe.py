"""What a member cluster is and what our credentials may do there.

`join` asks this before it stores anything, and the hub's background prober asks
`readiness` on a timer. Both answer in bounded time, because a dead cluster must never
hold up a command about a live one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from clusters.client import ClusterClient
from clusters.errors import ApiError, ClusterError, Unauthorized

# What Flotilla needs to deliver an application: create namespaces and workloads.
REQUIRED_PERMISSIONS: tuple[tuple[str, str, str], ...] = (
    ("create", "", "namespaces"),
    ("create", "apps", "deployments"),
    ("patch", "apps", "deployments"),
    ("create", "", "services"),
)
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class ClusterFacts:
    """The answer to `probe`: version, readiness, identity and missing permissions.

    `missing` lists what the credentials may not do cluster-wide; `usable` says whether
    they may at least deploy into `namespace` (a namespace-scoped user is usable there)."""

    version: str
    ready: bool
    user: str
    namespace: str
    usable: bool
    missing: list[str] = field(default_factory=list)


async def probe(client: ClusterClient, namespace: str = "default") -> ClusterFacts:
    """Version, /readyz, who we are, and which required permissions we lack."""
    version_doc, ready, user = await asyncio.gather(
        client.request("GET", "/version"), readiness(client), whoami(client)
    )
    if user == ANONYMOUS:
        raise Unauthorized(
            f"{client.server}: the server does not accept these credentials "
            "(it treats them as anonymous; is the client certificate signed by its CA?)"
        )
    checks = await asyncio.gather(*(can(client, *p) for p in REQUIRED_PERMISSIONS))
    missing = [
        f"{verb} {f'{group}/' if group else ''}{resource}"
        for (verb, group, resource), allowed in zip(REQUIRED_PERMISSIONS, checks, strict=True)
        if not allowed
    ]
    usable = not missing or await can(client, "create", "apps", "deployments", namespace)
    return ClusterFacts(
        version=str(version_doc.get("gitVersion", "unknown")),
        ready=ready,
        user=user,
        namespace=namespace,
        usable=usable,
        missing=missing,
    )


async def readiness(client: ClusterClient, timeout: float | None = None) -> bool:
    """True when /readyz answers ok; raises Unreachable/Unauthorized when it cannot ask."""
    try:
        answer = await client.request("GET", "/readyz", timeout=timeout)
    except ApiError:
        return False
    return isinstance(answer, str) and answer.strip() == "ok"


async def whoami(client: ClusterClient) -> str:
    """The user name the API server authenticated us as (SelfSubjectReview, GA in 1.28)."""
    review = await client.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    user: dict[str, Any] = review.get("status", {}).get("userInfo", {})
    return str(user.get("username", ANONYMOUS))


async def can(
    client: ClusterClient, verb: str, group: str, resource: str, namespace: str = ""
) -> bool:
    """SelfSubjectAccessReview: may we `verb` `resource` (cluster-wide unless `namespace`)?"""
    try:
        review = await client.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": verb,
                        "group": group,
                        "resource": resource,
                        "namespace": namespace,
                    }
                },
            },
        )
    except ClusterError:
        return False
    return bool(review.get("status", {}).get("allowed", False))
