"""The prober asks only clusters whose watch streams are quiet: a stream that answered
within the last probe interval has proven its cluster alive. Virtual time; readiness and
the watches' last answer are replaced, what they answer from a real API server is held by
the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from clusters.discovery import Capabilities, Discovery
from hub.fleet import registry as registry_module
from hub.fleet.registry import BOOKMARK_GAP, WATCH_QUIET, Registry
from hub.model.records import ClusterRecord
from hub.redaction import Scrubber
from hub.state.store import SqliteStore
from hub.tasks import Supervisor


@dataclass
class Prober:
    """A registry of one cluster, `edge`, whose readiness probes are counted (in seconds
    of virtual time since the start) and whose watches' last answer and cache are the
    test's."""

    registry: Registry
    probes: list[float]
    last_seen: Callable[[], float | None] = lambda: None
    synced: bool = False


@contextlib.asynccontextmanager
async def prober(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Prober]:
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(ClusterRecord(name="edge", server="https://x", kubeconfig={}, credential="t"))
    registry = Registry(store, Scrubber(), temp_dir=tmp_path, supervisor=Supervisor())
    loop = asyncio.get_running_loop()
    start = loop.time()
    state = Prober(registry, [])

    async def client(name: str) -> object:
        return object()

    async def ready(client: object, timeout: float) -> bool:
        state.probes.append(loop.time() - start)
        return True

    async def discover(client: object, previous: Discovery | None = None) -> Discovery:
        return Discovery(Capabilities.of("v1.34.4", ["v1"]), {})

    monkeypatch.setattr(registry, "client", client)
    monkeypatch.setattr(registry_module, "readiness", ready)
    monkeypatch.setattr(registry_module, "discover", discover)
    monkeypatch.setattr(registry.observer, "last_seen", lambda name: state.last_seen())
    monkeypatch.setattr(
        registry.observer, "cache", lambda name: SimpleNamespace(synced=state.synced)
    )
    task = asyncio.create_task(registry.probe_forever())
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await registry.close()


@pytest.mark.looptime
async def test_a_cluster_whose_watches_answer_is_not_probed_until_they_go_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watches that answer prove a cluster alive for one probe interval, and it is probed
    only every WATCH_QUIET meanwhile (what an open watch cannot show: a revoked token)."""
    async with prober(tmp_path, monkeypatch) as state:
        interval = state.registry.settings.probe_interval
        state.last_seen = time.time  # its watches speak all the time
        spoken = WATCH_QUIET + 2 * interval
        await asyncio.sleep(spoken)
        assert state.probes == [0.0, WATCH_QUIET]  # the first finds it healthy
        state.last_seen = lambda: None
        await asyncio.sleep(3 * interval + 1)
        # Quiet: probed at once (its next probe was due) and every interval again.
        assert state.probes[2:] == [spoken + i * interval for i in range(4)]


@pytest.mark.looptime
async def test_a_cluster_whose_watches_are_all_connected_is_probed_once_they_miss_a_bookmark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connected cache hears a bookmark about once a minute, so a minute's silence says
    nothing: its cluster is probed every WATCH_QUIET all the same. Silent for BOOKMARK_GAP,
    it is probed every interval while it stays silent."""
    async with prober(tmp_path, monkeypatch) as state:
        interval = state.registry.settings.probe_interval
        loop = asyncio.get_running_loop()
        spoke, start = time.time(), loop.time()
        state.synced = True
        # The watches last spoke at the start: as long ago as the virtual time since.
        state.last_seen = lambda: spoke - (loop.time() - start)
        await asyncio.sleep(BOOKMARK_GAP + 3 * interval)
        quiet = [t for t in state.probes if t < BOOKMARK_GAP]
        assert quiet == [i * WATCH_QUIET for i in range(len(quiet))], state.probes
        assert len(quiet) >= 2  # not asked for many intervals, though silent meanwhile
        after = [t for t in state.probes if t >= BOOKMARK_GAP]
        assert after and after[0] - BOOKMARK_GAP <= interval, state.probes
        assert [b - a for a, b in itertools.pairwise(after)] == [interval] * (len(after) - 1)
