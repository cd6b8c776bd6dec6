"""Shards owned through Leases (hub.state.shards) by replicas sharing one real API server,
the local cluster e2e-1 as the management cluster.

Every replica is a `Shards` of its own, with a client of its own, in this process. For the
whole of each test a sampler looks every few milliseconds at every shard and records any
moment two replicas would both act on it: that must never happen, whatever dies or is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clusters.client import ClusterClient
from clusters.kubeconfig import load_file
from e2e.clusters import ClusterInfo
from e2e.faultproxy import running_proxy
from e2e.kubeconfigs import derive
from hub.state.kube.backend import CLOSE_GRACE
from hub.state.shards import (
    DEAD_MEMBER,
    REPLICA,
    ROLE,
    SHARD_PREFIX,
    SHARDS,
    Shards,
    shard_of,
)

pytestmark = pytest.mark.cluster

# Short leases, so that a takeover takes seconds; the margin of the fence (the lease less two
# renew periods) stays a whole second, far above a round's time on a loaded API server.
LEASE, RENEW = 3.0, 0.5
# A dead replica's shards are free once the others have seen its Leases unchanged for the
# lease duration; then a round to take them, and a few more to even out the counts.
TAKEOVER = LEASE + 6 * RENEW
# Replicas starting or rejoining first race for shards, then hand over the surplus: a few
# rounds, bounded generously for an API server that other tests load at the same time.
SETTLE = 30.0
# How often the sampler looks: well inside the second of margin the fence keeps.
SAMPLE = 0.02


def one_app_per_shard() -> list[str]:
    """An application name in each shard, so that `owns` can be asked of every shard."""
    names: dict[int, str] = {}
    n = 0
    while len(names) < SHARDS:
        names.setdefault(shard_of(f"app-{n}"), f"app-{n}")
        n += 1
    return [names[i] for i in range(SHARDS)]


APPS = one_app_per_shard()


@dataclass
class Replica:
    shards: Shards
    client: ClusterClient
    task: asyncio.Task[None] | None = None
    acquired: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.shards.identity

    async def stop(self) -> None:
        """Cancel the task without releasing anything, as a SIGKILL leaves the Leases."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@dataclass
class Ring:
    """The replicas of one test, on the namespace `namespace` of the management cluster."""

    namespace: str
    document: Mapping[str, Any]
    replicas: dict[str, Replica] = field(default_factory=dict)
    shared: list[tuple[int, list[str]]] = field(default_factory=list)

    async def add(
        self, name: str, document: Mapping[str, Any] | None = None, *, run: bool = True
    ) -> Replica:
        client = await ClusterClient.connect(document or self.document)
        acquired: list[int] = []
        lost: list[int] = []

        async def on_acquired(shard: int) -> None:
            acquired.append(shard)

        async def on_lost(shard: int) -> None:
            lost.append(shard)

        shards = Shards(
            client,
            self.namespace,
            name,
            lease_seconds=LEASE,
            renew_seconds=RENEW,
            on_acquired=on_acquired,
            on_lost=on_lost,
        )
        replica = Replica(shards, client, acquired=acquired, lost=lost)
        if run:
            replica.task = asyncio.create_task(replica.shards.run())
        self.replicas[name] = replica
        return replica

    def __getitem__(self, name: str) -> Replica:
        return self.replicas[name]

    async def sample(self) -> None:
        while True:
            for shard, app in enumerate(APPS):
                owners = [r.name for r in self.replicas.values() if r.shards.owns(app)]
                if len(owners) > 1:
                    self.shared.append((shard, owners))
            await asyncio.sleep(SAMPLE)

    def balanced(self, *names: str) -> bool:
        """Every shard owned by exactly one of `names`, their counts within one of another."""
        owned = [self[n].shards.owned() for n in names]
        counts = [len(o) for o in owned]
        every = set().union(*owned) == set(range(SHARDS)) and sum(counts) == SHARDS
        return every and max(counts) - min(counts) <= 1

    async def lease(self, shard: int) -> dict[str, Any]:
        lease: dict[str, Any] = await self._client.request(
            "GET", f"{self._leases}/{SHARD_PREFIX}{shard}"
        )
        return lease

    async def members(self) -> set[str]:
        """Whose membership Leases the store holds."""
        query = {"labelSelector": f"{ROLE}={REPLICA}"}
        answer = await self._client.request("GET", self._leases, query=query)
        return {lease["spec"].get("holderIdentity") for lease in answer["items"]}

    @property
    def _client(self) -> ClusterClient:
        return next(iter(self.replicas.values())).client

    @property
    def _leases(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases"


@pytest.fixture
async def ring(e2e_clusters: list[ClusterInfo], namespace: str) -> AsyncIterator[Ring]:
    ring = Ring(namespace, load_file(e2e_clusters[0].kubeconfig).document)
    sampler = asyncio.create_task(ring.sample())
    try:
        yield ring
        assert not sampler.done(), "the sampler stopped"
        assert not ring.shared, f"shards owned twice at once (shard, owners): {ring.shared[:5]}"
    finally:
        sampler.cancel()
        for replica in ring.replicas.values():
            await replica.stop()
            await replica.client.close()
        # TLS connections finish closing on the loop's next turns (aiohttp's advice for a
        # graceful close); a loop closed before then warns of their sockets, an error here.
        await asyncio.sleep(CLOSE_GRACE)


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    """Poll `condition` until it holds; fail once `within` seconds have passed without."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, f"not within {within:g}s: {what}"
        await asyncio.sleep(SAMPLE)


async def test_three_replicas_own_every_shard_once_and_evenly(ring: Ring) -> None:
    for name in ("a", "b", "c"):
        await ring.add(name)

    await until(lambda: ring.balanced("a", "b", "c"), SETTLE, "32 shards split 11/11/10")

    owner = {s: r.name for r in ring.replicas.values() for s in r.shards.owned()}
    for shard in (0, SHARDS // 2, SHARDS - 1):
        lease = await ring.lease(shard)
        assert lease["spec"]["holderIdentity"] == owner[shard]
    for replica in ring.replicas.values():
        assert not replica.shards.partitioned
        assert set(replica.acquired) - set(replica.lost) >= replica.shards.owned()


async def test_the_shards_of_a_replica_that_dies_go_to_the_others(ring: Ring) -> None:
    for name in ("a", "b", "c"):
        await ring.add(name)
    await until(lambda: ring.balanced("a", "b", "c"), SETTLE, "32 shards split 11/11/10")
    orphans = ring["c"].shards.owned()

    await ring["c"].stop()

    await until(lambda: ring.balanced("a", "b"), TAKEOVER, "c's shards taken over, 16/16")
    assert orphans <= set(ring["a"].acquired) | set(ring["b"].acquired)


async def test_scaling_in_by_release_hands_every_shard_over_at_once(ring: Ring) -> None:
    for name in ("a", "b", "c"):
        await ring.add(name)
    await until(lambda: ring.balanced("a", "b", "c"), SETTLE, "32 shards split 11/11/10")
    leaving = ring["b"].shards.owned() | ring["c"].shards.owned()

    await asyncio.gather(ring["b"].shards.release(), ring["c"].shards.release())

    assert not ring["b"].shards.owned() and not ring["c"].shards.owned()
    assert set(ring["b"].lost) | set(ring["c"].lost) >= leaving
    # Within the lease duration: no Lease had to run out, they were handed back.
    await until(lambda: ring.balanced("a"), LEASE, "a owns all 32 shards")
    for name in ("b", "c"):
        task = ring[name].task
        assert task is not None
        await asyncio.wait_for(task, SETTLE)  # run() returns once released


async def test_a_cut_off_replica_stops_before_others_take_over_and_rejoins(
    ring: Ring, e2e_clusters: list[ClusterInfo], tmp_path: Path
) -> None:
    management = e2e_clusters[0]
    with running_proxy(int(management.server.rpartition(":")[2])) as proxy:
        through = derive(management.kubeconfig, tmp_path / "through.yaml", server=proxy.url)
        await ring.add("a")
        await ring.add("b")
        cut = await ring.add("c", load_file(through).document)
        await until(lambda: ring.balanced("a", "b", "c"), SETTLE, "32 shards split 11/11/10")
        stranded = cut.shards.owned()

        await asyncio.to_thread(proxy.die)

        await until(lambda: cut.shards.partitioned, LEASE, "c reports the partition")
        await until(lambda: not cut.shards.owned(), LEASE, "c stops acting on its shards")
        await until(lambda: set(cut.lost) >= stranded, LEASE, "c told to stop their work")
        await until(lambda: ring.balanced("a", "b"), TAKEOVER, "c's shards taken over, 16/16")

        await asyncio.to_thread(proxy.revive)

        await until(lambda: not cut.shards.partitioned, SETTLE, "c reaches the store again")
        await until(lambda: ring.balanced("a", "b", "c"), SETTLE, "c back with its share")


@pytest.mark.parametrize("lease", ["absent", "handed back"])
async def test_two_replicas_racing_for_one_free_shard_leave_one_holder(
    ring: Ring, lease: str
) -> None:
    """Both saw the shard free and both write at once: the store takes one write, refuses
    the other (409), and the loser does not believe it won."""
    if lease == "handed back":
        earlier = await ring.add("earlier", run=False)
        await earlier.shards._take(0, None)
        await earlier.shards.release()
    first = await ring.add("first", run=False)
    second = await ring.add("second", run=False)
    listed = [(await r.shards._list())[1].get(0) for r in (first, second)]

    await asyncio.gather(first.shards._take(0, listed[0]), second.shards._take(0, listed[1]))

    holders = [r for r in (first, second) if r.shards.owned() == {0}]
    assert len(holders) == 1
    (winner,) = holders
    loser = second if winner is first else first
    assert not loser.shards.owned() and not loser.shards.owns(APPS[0])
    stored = (await ring.lease(0))["spec"]
    assert stored["holderIdentity"] == winner.name
    assert stored["leaseTransitions"] == (1 if lease == "handed back" else 0)
    assert any(code == "409" for _, code in loser.client.stats.errors)


async def test_the_membership_of_a_replica_long_gone_is_deleted(ring: Ring) -> None:
    """Killed, it leaves its membership Lease behind: counted dead after one lease
    duration, deleted by the others after DEAD_MEMBER of them."""
    await ring.add("a")
    await ring.add("b")
    await until(lambda: ring.balanced("a", "b"), SETTLE, "32 shards split 16/16")
    assert await ring.members() == {"a", "b"}

    await ring["b"].stop()

    await until(lambda: ring.balanced("a"), TAKEOVER, "b's shards taken over")
    assert await ring.members() == {"a", "b"}, "deleted as soon as it counted as dead"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEAD_MEMBER * LEASE + SETTLE
    while (members := await ring.members()) != {"a"}:
        assert loop.time() < deadline, f"memberships still there: {sorted(members)}"
        await asyncio.sleep(RENEW)
