"""The prober asks only clusters whose watch streams are quiet: a stream that answered
within the last probe interval has proven its cluster alive. Virtual time; readiness and
the watches' last answer are replaced, what they answer from a real API server is held by
the integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from clusters.discovery import Capabilities, Discovery
from hub.fleet import registry as registry_module
from hub.fleet.registry import Registry
from hub.model.records import ClusterRecord
from hub.redaction import Scrubber
from hub.state.store import SqliteStore
from hub.tasks import Supervisor


@pytest.mark.looptime
async def test_a_cluster_whose_watches_answer_is_not_probed_until_they_go_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(ClusterRecord(name="edge", server="https://x", kubeconfig={}, credential="t"))
    registry = Registry(store, Scrubber(), temp_dir=tmp_path, supervisor=Supervisor())
    probes: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    streaming = True

    async def client(name: str) -> object:
        return object()

    async def ready(client: object, timeout: float) -> bool:
        probes.append(loop.time() - start)
        return True

    async def discover(client: object, previous: Discovery | None = None) -> Discovery:
        return Discovery(Capabilities.of("v1.34.4", ["v1"]), {})

    def last_seen(name: str) -> float | None:
        return time.time() if streaming else None

    monkeypatch.setattr(registry, "client", client)
    monkeypatch.setattr(registry_module, "readiness", ready)
    monkeypatch.setattr(registry_module, "discover", discover)
    monkeypatch.setattr(registry.observer, "last_seen", last_seen)
    interval = registry.settings.probe_interval
    prober = asyncio.create_task(registry.probe_forever())
    try:
        await asyncio.sleep(10 * interval)
        assert probes == [0.0]  # the first probe finds it healthy; its watches speak since
        streaming = False
        await asyncio.sleep(3 * interval + 1)
        # Quiet: probed at once (its next probe was due) and every interval again.
        assert probes[1:] == [(10 + i) * interval for i in range(4)]
    finally:
        prober.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await prober
        await registry.close()
