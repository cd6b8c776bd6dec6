"""Which replica should own which shard (hub.state.shards.assign), and which shard an
application is in: pure functions every replica must compute alike."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from hub.state.shards import SHARDS, assign, shard_of

# Replica identities as a Deployment names its pods, short ones included.
identities = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?", fullmatch=True)
fleets = st.lists(identities, min_size=1, max_size=12, unique=True)


@given(fleets, st.integers(min_value=1, max_value=64))
def test_every_shard_has_one_owner_and_counts_differ_by_at_most_one(
    members: list[str], shards: int
) -> None:
    owners = assign(members, shards)

    assert sorted(owners) == list(range(shards))
    assert set(owners.values()) <= set(members)
    counts = Counter(owners.values())
    held = [counts[m] for m in members]
    assert max(held) - min(held) <= 1


@given(fleets, st.randoms(use_true_random=False))
def test_every_replica_computes_the_same_map_whatever_order_it_sees_members_in(
    members: list[str], order: random.Random
) -> None:
    shuffled = list(members)
    order.shuffle(shuffled)

    assert assign(shuffled, SHARDS) == assign(members, SHARDS)
    assert assign(members + members[:1], SHARDS) == assign(members, SHARDS)


@given(fleets, identities)
def test_a_replica_joining_or_leaving_moves_its_share_and_few_others(
    members: list[str], newcomer: str
) -> None:
    """Leaving is the same pair of maps read the other way. Hashing by `mod len(members)`
    would move nearly every shard; here the newcomer's share moves, and at most a quarter
    of the shards besides (the even shares shrink, and some pass on what they shed)."""
    if newcomer in members:
        return
    before, after = assign(members, SHARDS), assign([*members, newcomer], SHARDS)

    moved = [s for s in range(SHARDS) if before[s] != after[s]]
    share = [s for s in moved if after[s] == newcomer]
    assert len(moved) - len(share) <= SHARDS // 4


def test_no_members_no_owners() -> None:
    assert assign([], SHARDS) == {}


def test_the_shard_of_an_application_is_the_same_in_another_process() -> None:
    """Python salts `hash()` per process; a shard must not move when a replica restarts."""
    apps = [f"app-{n}" for n in range(50)]
    script = f"from hub.state.shards import shard_of; print([shard_of(a) for a in {apps!r}])"
    other = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert other.stdout.strip() == str([shard_of(a) for a in apps])
    assert len({shard_of(a) for a in apps}) > SHARDS // 2
    assert all(0 <= shard_of(a, 7) < 7 for a in apps)
