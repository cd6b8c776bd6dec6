"""The hub's work split into shards, each owned through a Lease, so that several
`flotilla serve` replicas on one Kubernetes store drive every application exactly once.

An application belongs to a shard by a stable hash of its name. Every replica keeps a
membership Lease alive; from the members it sees live, every replica computes the same
desired owner of each shard (`assign`), takes the shards given to it once their Leases are
free, and hands back those given to someone else. The Leases are the truth: a replica acts
on a shard only while it holds the shard's Lease, and every write is guarded by
`resourceVersion`, so a race is lost cleanly instead of overwriting.

Nothing compares clocks across machines (client-go's leader election does the same): a
Lease another replica holds counts as expired only once this replica has seen it
unchanged for the lease duration on its own monotonic clock. The holder, in turn, stops
acting (`owns` turns False) a safety margin before that could happen, counted from when it
sent its last successful renewal. That is the fence: it must never let `owns` be True on
two replicas at once, even when one of them cannot reach the store.

A replica that is gone without deleting its membership (killed, its machine lost) counts
as dead after one lease duration; its Lease is deleted after DEAD_MEMBER, so that the
store does not fill up with the members of every replica that ever ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clusters.client import ClusterClient
from clusters.errors import ClusterError, Conflict, NotFound
from hub.errors import InvalidInput

log = logging.getLogger(__name__)

# Fixed for the life of a store: an application's shard must never change while replicas
# run, or two of them could drive it. 32 splits within one shard of even among up to about
# ten replicas, and renewing all of them costs one small PUT each per renew period.
SHARDS = 32

MANAGED_BY = {"app.kubernetes.io/managed-by": "flotilla"}
ROLE = "flotilla.dev/role"
REPLICA, SHARD = "replica", "shard"
REPLICA_PREFIX, SHARD_PREFIX = "flotilla-replica-", "flotilla-shard-"
_LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
# Lease durations a membership Lease stays unchanged before it is deleted: far beyond the
# one after which its replica counts as dead, so that a replica cut off from the store for
# a while finds its Lease again, and so does a person wondering where a replica went.
DEAD_MEMBER = 10
# The identity ends a Lease's name, a DNS subdomain of at most 253 characters.
_IDENTITY = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_IDENTITY_LENGTH = 253 - len(REPLICA_PREFIX)

Callback = Callable[[int], Awaitable[None]]


def shard_of(app: str, shards: int = SHARDS) -> int:
    """The shard of an application: the same in every process and release (no `hash()`,
    which Python salts per process)."""
    return int.from_bytes(hashlib.sha256(app.encode()).digest()[:8], "big") % shards


def assign(members: Sequence[str], shards: int) -> dict[int, str]:
    """The desired owner of every shard among the live `members`.

    Pure, so that every replica that sees the same members computes the same map.
    Rendezvous hashing with bounded loads: each (shard, member) pair has a score, and
    pairs are taken best first while the member has room, room being the even share
    (`shards // members`) plus one for the first `shards % members` members to fill
    up. Counts therefore differ by at most one, and since a member's best-scoring shards
    stay its best whoever else comes or goes, one member joining or leaving moves its own
    share and few others."""
    distinct = sorted(set(members))
    if not distinct:
        return {}
    share, extra = divmod(shards, len(distinct))
    counts = dict.fromkeys(distinct, 0)
    above, owners = 0, dict[int, str]()
    pairs = sorted(((_score(m, s), s, m) for s in range(shards) for m in distinct), reverse=True)
    for _, shard, member in pairs:
        count = counts[member]
        if shard not in owners and (count < share or (count == share and above < extra)):
            owners[shard] = member
            counts[member] = count + 1
            above += count == share
    return dict(sorted(owners.items()))


def _score(member: str, shard: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{shard}/{member}".encode()).digest()[:8], "big")


@dataclass(frozen=True)
class _Held:
    """A shard this replica holds: the Lease as the store answered our last write (its
    resourceVersion guards the next), and when that write was sent (monotonic)."""

    lease: Mapping[str, Any]
    renewed: float


class Shards:
    """This replica's membership and its shards, kept by one long-lived task (`run`).

    `on_acquired(shard)` is awaited once the shard is held (`owns` is True by then);
    `on_lost(shard)` once it is no longer (`owns` is False by then), before the Lease is
    handed back. Both are awaited inline, so they should only start or stop work.
    `identity` must be unique to this process (a pod's name is): two processes under one
    identity would renew each other's membership.
    """

    def __init__(
        self,
        client: ClusterClient,
        namespace: str,
        identity: str,
        *,
        lease_seconds: float = 15.0,
        renew_seconds: float = 5.0,
        shards: int = SHARDS,
        on_acquired: Callback | None = None,
        on_lost: Callback | None = None,
    ) -> None:
        if not _IDENTITY.fullmatch(identity) or len(identity) > _IDENTITY_LENGTH:
            raise InvalidInput(f"replica identity {identity!r}: not a DNS subdomain")
        # Counted from the renewal's request: the Lease's last change, as others see it,
        # is later, and their lease_seconds wait starts later still. Two renew periods of
        # margin absorb a round that runs late and the observers' own round.
        self._deadline = lease_seconds - 2 * renew_seconds
        if renew_seconds <= 0 or self._deadline <= 0:
            raise InvalidInput(
                f"shard leases of replica {identity}: lease_seconds ({lease_seconds:g}) must "
                f"exceed twice renew_seconds ({renew_seconds:g})"
            )
        self.identity = identity
        self._client = client
        self._path = _LEASES.format(namespace=namespace)
        self._lease_seconds = lease_seconds
        self._renew_seconds = renew_seconds
        self._shards = shards
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._held: dict[int, _Held] = {}
        self._member: Mapping[str, Any] | None = None
        self._seen: dict[str, tuple[str, float]] = {}
        """Lease name -> (resourceVersion, when this replica first saw it: monotonic)."""
        self._partitioned = False
        self._released = False
        self._busy = asyncio.Lock()
        self._acquired = asyncio.Event()

    def owns(self, app: str) -> bool:
        """Whether this replica may act on `app` now: no I/O, asked before every action."""
        held = self._held.get(shard_of(app, self._shards))
        return held is not None and self._fresh(held, time.monotonic())

    def owned(self) -> frozenset[int]:
        now = time.monotonic()
        return frozenset(i for i, held in self._held.items() if self._fresh(held, now))

    @property
    def partitioned(self) -> bool:
        """The store did not answer this replica's latest round."""
        return self._partitioned

    async def run(self) -> None:
        """Keep the membership and the shards until cancelled or released."""
        async with asyncio.TaskGroup() as group:
            fence = group.create_task(self._fence())
            try:
                while not self._released:
                    started = time.monotonic()
                    async with self._busy:
                        if not self._released:
                            await self._round()
                    await asyncio.sleep(max(started + self._renew_seconds - time.monotonic(), 0))
            finally:
                fence.cancel()

    async def release(self) -> None:
        """Stop for good, at once: every shard's work stopped, the membership deleted (so
        that the others leave it out at once), then every shard's Lease handed back."""
        async with self._busy:
            self._released = True
            held = dict(self._held)
            await asyncio.gather(*(self._lose(i, h, "the replica stops") for i, h in held.items()))
            try:
                await self._delete()
                results = await asyncio.gather(
                    *(self._hand_back(i, h) for i, h in held.items()), return_exceptions=True
                )
                error = _first_error(results)
            except ClusterError as e:
                error = e
            if error is not None:
                log.warning(
                    "replica %s could not release its leases (%s): the others take its "
                    "shards when they expire",
                    self.identity,
                    error,
                )

    async def _round(self) -> None:
        """Renew what is held, look at every Lease, then take and hand back shards."""
        listing = asyncio.create_task(self._list())
        renewals = [self._renew(i, held) for i, held in self._held.items()]
        results = await asyncio.gather(
            listing, self._keep_membership(), *renewals, return_exceptions=True
        )
        if not self._answered(results):
            return
        replicas, shards = listing.result()
        if self._member is None:
            self._member = replicas.get(REPLICA_PREFIX + self.identity)
        wanted = assign(self._live(replicas.values()), self._shards)
        moves = [
            self._reassign(i, held, wanted[i])
            for i, held in self._held.items()
            if wanted.get(i) != self.identity
        ]
        moves += [
            self._take(i, shards.get(i))
            for i, owner in wanted.items()
            if owner == self.identity and i not in self._held and self._free(shards.get(i))
        ]
        moves += [
            self._bury(name, lease)
            for name, lease in replicas.items()
            if name != REPLICA_PREFIX + self.identity and self._expired(lease, DEAD_MEMBER)
        ]
        self._answered(await asyncio.gather(*moves, return_exceptions=True))

    async def _fence(self) -> None:
        """Give up each shard as its renew deadline passes, whatever the round is waiting for."""
        while True:
            self._acquired.clear()
            now = time.monotonic()
            for i, held in list(self._held.items()):
                if not self._fresh(held, now):
                    await self._lose(i, held, f"not renewed within {self._deadline:g}s")
            due = min((h.renewed + self._deadline for h in self._held.values()), default=None)
            wait = None if due is None else max(due - time.monotonic(), 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acquired.wait(), wait)

    def _fresh(self, held: _Held, now: float) -> bool:
        return now - held.renewed < self._deadline

    def _answered(self, results: Iterable[object]) -> bool:
        """Whether the store answered every call of a step; marks and logs a partition."""
        error = _first_error(results)
        if error is not None and not self._partitioned:
            log.warning(
                "replica %s cannot reach the store (%s): its shards stop as their leases run out",
                self.identity,
                error,
            )
        elif error is None and self._partitioned:
            log.info("replica %s reaches the store again: rejoining", self.identity)
        self._partitioned = error is not None
        return error is None

    async def _list(self) -> tuple[dict[str, Mapping[str, Any]], dict[int, Mapping[str, Any]]]:
        """Every Lease of ours in the namespace, membership by name and shards by number,
        noting when each resourceVersion was first seen."""
        selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items()) + f",{ROLE}"
        answer = await self._client.request(
            "GET", self._path, query={"labelSelector": selector}, timeout=self._deadline
        )
        now, seen = time.monotonic(), dict[str, tuple[str, float]]()
        replicas, shards = dict[str, Mapping[str, Any]](), dict[int, Mapping[str, Any]]()
        for lease in answer.get("items") or ():
            meta = lease["metadata"]
            name, version = meta["name"], meta["resourceVersion"]
            before = self._seen.get(name)
            seen[name] = before if before and before[0] == version else (version, now)
            role = (meta.get("labels") or {}).get(ROLE)
            number = name.removeprefix(SHARD_PREFIX)
            if role == REPLICA:
                replicas[name] = lease
            elif role == SHARD and number.isdigit() and int(number) < self._shards:
                shards[int(number)] = lease
        self._seen = seen
        return replicas, shards

    def _live(self, replicas: Iterable[Mapping[str, Any]]) -> list[str]:
        """This replica and every member whose Lease changed lately, as seen from here."""
        members = [self.identity]
        for lease in replicas:
            holder = lease.get("spec", {}).get("holderIdentity")
            if holder and holder != self.identity and not self._expired(lease):
                members.append(holder)
        return members

    def _free(self, lease: Mapping[str, Any] | None) -> bool:
        """A shard's Lease may be taken: absent, handed back, or unchanged for its duration.
        One naming this replica counts as another's: it may be a predecessor's under the
        same identity, or a write of ours whose answer never came."""
        return (
            lease is None or not lease.get("spec", {}).get("holderIdentity") or self._expired(lease)
        )

    def _expired(self, lease: Mapping[str, Any], durations: int = 1) -> bool:
        """Whether this replica has seen the Lease unchanged for `durations` of its lease
        durations (ours, if it claims less)."""
        _, since = self._seen[lease["metadata"]["name"]]
        duration = lease.get("spec", {}).get("leaseDurationSeconds") or 0
        return time.monotonic() - since >= durations * max(self._lease_seconds, duration)

    async def _keep_membership(self) -> None:
        name, spec = REPLICA_PREFIX + self.identity, self._renewed(self._member)
        # None after a lost race: the next list gives the current one.
        self._member = await self._write(name, self._member, spec, REPLICA)

    async def _renew(self, shard: int, held: _Held) -> None:
        sent = time.monotonic()
        spec = self._renewed(held.lease)
        written = await self._write(SHARD_PREFIX + str(shard), held.lease, spec, SHARD)
        if self._held.get(shard) is not held:
            return  # given up while the renewal was under way
        if written is None:
            await self._lose(shard, held, "its lease was changed by someone else")
        else:
            self._held[shard] = _Held(written, sent)

    async def _take(self, shard: int, lease: Mapping[str, Any] | None) -> None:
        sent = time.monotonic()
        before = (lease or {}).get("spec", {})
        # As client-go counts them: every write that names a new holder.
        changed = lease is not None and before.get("holderIdentity") != self.identity
        spec = self._renewed(None) | {
            "leaseTransitions": before.get("leaseTransitions", 0) + (1 if changed else 0)
        }
        written = await self._write(SHARD_PREFIX + str(shard), lease, spec, SHARD)
        if written is None:
            return  # another replica won the race; the next round sees it
        self._held[shard] = _Held(written, sent)
        self._acquired.set()
        log.info("shard %d acquired by replica %s", shard, self.identity)
        if self._on_acquired is not None:
            await self._on_acquired(shard)

    async def _reassign(self, shard: int, held: _Held, owner: str) -> None:
        if await self._lose(shard, held, f"handed to replica {owner}"):
            await self._hand_back(shard, held)

    async def _lose(self, shard: int, held: _Held, why: str) -> bool:
        """Stop acting on the shard (once, however many paths get here at the same time)."""
        if self._held.get(shard) is not held:
            return False
        del self._held[shard]
        log.info("shard %d released by replica %s: %s", shard, self.identity, why)
        if self._on_lost is not None:
            await self._on_lost(shard)
        return True

    async def _hand_back(self, shard: int, held: _Held) -> None:
        """Clear the holder in one write, so that the next owner need not wait it out."""
        spec = {k: v for k, v in held.lease["spec"].items() if k != "holderIdentity"}
        await self._write(
            SHARD_PREFIX + str(shard), held.lease, spec | {"renewTime": _now()}, SHARD
        )

    async def _delete(self) -> None:
        if self._member is None:
            return
        await self._delete_lease(self._member)
        self._member = None

    async def _bury(self, name: str, lease: Mapping[str, Any]) -> None:
        """Delete the membership of a replica long gone, as this replica last saw it: one
        renewed meanwhile (a replica back from a partition) stays."""
        if await self._delete_lease(lease):
            holder = lease.get("spec", {}).get("holderIdentity") or name
            log.info(
                "replica %s: deleted the membership of replica %s, long gone", self.identity, holder
            )

    async def _delete_lease(self, lease: Mapping[str, Any]) -> bool:
        """Delete the Lease unless it changed since `lease` (a lost race is no error):
        whether this call deleted it."""
        meta = lease["metadata"]
        options = {"kind": "DeleteOptions", "apiVersion": "v1"}
        try:
            await self._client.request(
                "DELETE",
                f"{self._path}/{meta['name']}",
                body=options | {"preconditions": {"resourceVersion": meta["resourceVersion"]}},
                timeout=self._deadline,
            )
        except (Conflict, NotFound):
            return False
        return True

    def _renewed(self, lease: Mapping[str, Any] | None) -> dict[str, Any]:
        """The spec of a Lease held by this replica, as of now: a new one is acquired now."""
        now = _now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self._lease_seconds),
            "renewTime": now,
        }
        return dict(lease["spec"]) | spec if lease else spec | {"acquireTime": now}

    async def _write(
        self, name: str, current: Mapping[str, Any] | None, spec: Mapping[str, Any], role: str
    ) -> Mapping[str, Any] | None:
        """Create the Lease, or replace it guarded by the resourceVersion we last saw: the
        stored Lease, or None when the store holds another than we thought (a lost race)."""
        metadata = (
            current["metadata"] if current else {"name": name, "labels": MANAGED_BY | {ROLE: role}}
        )
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata}
        method, path = ("PUT", f"{self._path}/{name}") if current else ("POST", self._path)
        try:
            written: Mapping[str, Any] = await self._client.request(
                method, path, body=body | {"spec": spec}, timeout=self._deadline
            )
        except (Conflict, NotFound):
            return None
        return written


def _first_error(results: Iterable[object]) -> ClusterError | None:
    """The first failure of a store call among gathered results; any other error is a bug
    and is raised."""
    first = None
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ClusterError):
            raise result
        first = first or (result if isinstance(result, ClusterError) else None)
    return first


def _now() -> str:
    """A Lease's MicroTime: RFC 3339 in UTC, to the microsecond."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
