"""What the registry keeps of each cluster's capabilities: one discovery at a time however
many renders ask, a bound on waiting for it, the ETags handed to the next one, and the
prober's slow refresh. Discovery itself is replaced (virtual time, no API server); what it
answers from a real one is held by tests/integration/test_capabilities.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from clusters.discovery import Capabilities, Discovery
from clusters.errors import Unauthorized, Unreachable
from hub.fleet import registry as registry_module
from hub.fleet.registry import DISCOVERY_INTERVAL, Registry
from hub.model.records import ClusterRecord
from hub.redaction import Scrubber
from hub.state.store import SqliteStore
from hub.tasks import Supervisor

CAPS = Capabilities.of("v1.34.4", ["v1", "apps/v1"])

Discover = Callable[[object, Discovery | None], Awaitable[Discovery]]


def registry_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discover: Discover) -> Registry:
    """A registry of one cluster, `edge`, that is always ready and whose discovery is the
    test's `discover`; made in the test's loop."""
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(ClusterRecord(name="edge", server="https://x", kubeconfig={}, credential="t"))
    registry = Registry(store, Scrubber(), temp_dir=tmp_path, supervisor=Supervisor())

    async def client(name: str) -> object:
        return object()

    async def ready(client: object, timeout: float) -> bool:
        return True

    monkeypatch.setattr(registry, "client", client)
    monkeypatch.setattr(registry_module, "readiness", ready)
    monkeypatch.setattr(registry_module, "discover", discover)
    return registry


@pytest.mark.looptime
async def test_renders_asking_at_once_share_one_discovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Discovery | None] = []

    async def discover(client: object, previous: Discovery | None = None) -> Discovery:
        calls.append(previous)
        await asyncio.sleep(1)
        return Discovery(CAPS, {"/apis": '"etag"'})

    registry = registry_of(tmp_path, monkeypatch, discover)

    answers = await asyncio.gather(*(registry.capabilities("edge") for _ in range(5)))

    assert answers == [CAPS] * 5 and calls == [None]
    assert registry.known_capabilities("edge") == CAPS
    assert await registry.capabilities("edge") == CAPS and len(calls) == 1  # kept


@pytest.mark.looptime
async def test_a_cluster_that_does_not_answer_is_unreachable_after_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def discover(client: object, previous: Discovery | None = None) -> Discovery:
        await asyncio.sleep(3600)
        raise AssertionError("never answers")

    registry = registry_of(tmp_path, monkeypatch, discover)
    loop = asyncio.get_running_loop()
    start = loop.time()

    with pytest.raises(Unreachable) as error:
        await registry.capabilities("edge")

    assert loop.time() - start == pytest.approx(registry.settings.join_timeout)
    assert str(error.value) == (
        "cluster edge: no answer to discovery within 9s, so nothing renders for it"
    )
    await registry.close()


@pytest.mark.looptime
async def test_a_refusal_keeps_its_class_and_names_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def discover(client: object, previous: Discovery | None = None) -> Discovery:
        raise Unauthorized("https://x: credentials rejected (401 Unauthorized)")

    registry = registry_of(tmp_path, monkeypatch, discover)

    with pytest.raises(Unauthorized) as error:
        await registry.capabilities("edge")

    assert str(error.value) == (
        "cluster edge: cannot discover what it serves: https://x: credentials rejected "
        "(401 Unauthorized)"
    )
    assert registry.known_capabilities("edge") is None


@pytest.mark.looptime
async def test_the_prober_refreshes_slowly_with_the_last_etags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    asked: list[tuple[float, Any]] = []
    newer = Capabilities.of("v1.34.5", ["v1", "apps/v1", "example.com/v1/Widget"])

    async def discover(client: object, previous: Discovery | None = None) -> Discovery:
        asked.append((loop.time() - start, previous.etags if previous else None))
        found = newer if len(asked) > 2 else CAPS
        return Discovery(found, {"/apis": f'"{len(asked)}"'})

    registry = registry_of(tmp_path, monkeypatch, discover)
    for _ in range(int(2 * DISCOVERY_INTERVAL / registry.settings.probe_interval) + 1):
        await registry.probe_one("edge")
        await asyncio.sleep(registry.settings.probe_interval)

    assert asked == [
        (0.0, None),
        (DISCOVERY_INTERVAL, {"/apis": '"1"'}),
        (2 * DISCOVERY_INTERVAL, {"/apis": '"2"'}),
    ]
    assert registry.known_capabilities("edge") == newer
    assert registry.store.cluster("edge").version == "v1.34.5"  # an upgrade shows
