"""Whether a cached copy of an object is at least as new as what an apply returned.

A watch cache lags the API server by the time an event takes to arrive. Right after an
apply it may still hold the pre-apply object, and that object's status, written for the
old spec (observedGeneration == the old generation), looks perfectly healthy. A wait
that judged it would pass before the controller had even seen the change. So a waiter
first asks `caught_up`: is the cached object the applied one, or newer?

Pure: no I/O, no clock; the answers depend only on the two objects' metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clusters.apply import AppliedRef


def caught_up(cached: Mapping[str, Any] | None, applied: AppliedRef) -> bool:
    """Whether `cached` is the object `applied` names, at the applied version or later.

    The uid must be the applied one: an object with another uid is another incarnation
    (deleted and re-created, before or after our apply), and telling which came later
    would take more than its metadata. Then, for kinds with a generation, the cached
    generation must have reached the applied one: only spec changes bump it, and the
    spec is what health is judged against. For kinds without, the cached resourceVersion
    must have reached the applied one.
    """
    if cached is None:
        return False
    metadata = cached.get("metadata") or {}
    if metadata.get("uid") != applied.uid:
        return False
    if applied.generation is not None:
        generation = metadata.get("generation")
        return generation is not None and int(generation) >= applied.generation
    if not applied.resource_version:
        return True  # the apply's answer is not known: the uid is all we can ask for
    return _not_older(str(metadata.get("resourceVersion") or ""), applied.resource_version)


def gone(cached: Mapping[str, Any] | None, applied: AppliedRef) -> bool:
    """Whether the object `applied` names is deleted: nothing is cached under its name,
    or something with another uid is (it was deleted and someone re-created it).

    An object pending deletion (finalizers still running) is not gone yet.
    """
    return cached is None or (cached.get("metadata") or {}).get("uid") != applied.uid


def _not_older(cached: str, applied: str) -> bool:
    """Whether resourceVersion `cached` is `applied` or a later one.

    Kubernetes calls resourceVersions opaque and promises only that equal means
    unchanged. But every etcd-backed API server (kube-apiserver, and aggregated servers
    that store in etcd) hands out the etcd revision of the write: a decimal integer
    that only grows. Equality alone would not do: a cache keeps only the latest copy,
    so once a controller writes again (or a re-list replaces the copy) the applied
    version is never seen again, and a waiter woken after both events must still know
    that it has been passed. Versions that are not decimal come from some other
    storage, where only equality means anything.
    """
    if _decimal(cached) and _decimal(applied):
        return int(cached) >= int(applied)
    return cached == applied


def _decimal(version: str) -> bool:
    return version.isascii() and version.isdigit()
