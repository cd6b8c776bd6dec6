"""Fixtures for every test that needs real clusters: the local clusters of e2e/
and a fresh namespace on each of them.

Starting clusters takes seconds, so one set serves the whole session, and a set
that was already running (`python -m e2e.clusters up`) is reused and left running.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import pytest

from e2e import clusters
from e2e.clusters import ClusterInfo

# How many clusters a session gets; multi-cluster behaviour needs more than two
# so that "all but one" differs from "one".
CLUSTER_COUNT = int(os.environ.get("FLOTILLA_E2E_CLUSTERS", "3"))


def pytest_configure(config: pytest.Config) -> None:
    """Declare that no event loop is current outside pytest-asyncio's own.

    looptime asks the event loop policy for the current loop around every test,
    sync ones too; with none set, Python 3.11's policy creates one that nobody
    closes, and its ResourceWarning fails the run (filterwarnings = error). With
    the loop declared absent the policy raises instead, which looptime expects.
    """
    asyncio.set_event_loop(None)


@pytest.fixture(scope="session")
def e2e_clusters() -> Iterator[list[ClusterInfo]]:
    """The running local clusters e2e-1..e2e-N, started if needed; stopped at the
    end of the session only if this session started them."""
    was_running = bool(clusters.running())
    infos = clusters.up(CLUSTER_COUNT)
    yield infos
    if not was_running:
        clusters.down()


@pytest.fixture
def namespace(e2e_clusters: list[ClusterInfo]) -> Iterator[str]:
    """A namespace of the test's own, created on every cluster (ready for pods)
    and deleted afterwards."""
    name = f"t-{secrets.token_hex(4)}"
    clusters.create_namespace(name, e2e_clusters)
    yield name
    clusters.delete_namespace(name, e2e_clusters)
