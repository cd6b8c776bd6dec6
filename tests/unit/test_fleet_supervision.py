"""The hub's long-lived tasks under its one supervisor: the prober and the watch caches
die of injected failures, come back, and say so in `cluster list`; a prober that keeps
dying stops `serve` (and `flotilla serve` exits 1) with everything it opened released."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
import os
import signal
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.cli.cluster import _cluster_table
from hub.fleet import registry as registry_module
from hub.fleet.registry import PROBE_TASK, Registry
from hub.home import Home
from hub.model.records import ClusterRecord
from hub.model.settings import Settings
from hub.redaction import Scrubber
from hub.root import HubStopped, serve
from hub.service.clusters import Clusters
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from tests.shapes import assert_shape
from tests.unit.fakeapi import CONFIG_MAPS, WAIT, FakeApi, address, config_map, event, started
from tests.unit.hubparts import QUICK, applications_of, observing, store_on, until


def quick(port: int) -> Settings:
    return dataclasses.replace(QUICK, listen=f"127.0.0.1:{port}")


def _clusters(registry: Registry, home: Path) -> Clusters:
    return Clusters(registry, applications_of(registry, home))


# the prober


@pytest.mark.looptime
async def test_a_prober_that_dies_is_restarted_with_backoff_and_its_failure_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "db")
    store.add_cluster(ClusterRecord(name="edge", server="https://x", kubeconfig={}, credential="t"))
    supervisor = Supervisor(first_restart=1.0, max_restart=8.0)
    registry = Registry(store, Scrubber(), temp_dir=tmp_path, supervisor=supervisor)
    loop = asyncio.get_running_loop()
    start = loop.time()
    writes: list[float] = []
    record_probe = store.record_probe

    def failing_twice(name: str, **fields: Any) -> None:
        writes.append(round(loop.time() - start, 3))
        if len(writes) <= 2:
            raise sqlite3.OperationalError("disk I/O error")
        record_probe(name, **fields)

    async def ready(client: object, timeout: float) -> bool:
        return True

    async def client(name: str) -> object:
        return object()

    monkeypatch.setattr(store, "record_probe", failing_twice)
    monkeypatch.setattr(registry_module, "readiness", ready)
    monkeypatch.setattr(registry, "client", client)
    supervisor.spawn(PROBE_TASK, registry.probe_forever, critical=True)  # as `start` does

    assert await until(lambda: store.cluster("edge").health == "Healthy")
    assert writes == [0.0, 1.0, 3.0]  # died, 1 s, died, 2 s, recorded
    prober = registry.prober_state()
    assert prober is not None and prober.running and prober.restarts == 2
    assert prober.last_error == "OperationalError: disk I/O error"
    listed = _clusters(registry, tmp_path).ls()
    assert listed["prober"]["restarts"] == 2 and listed["prober"]["running"] is True
    assert listed["prober"]["lastError"] == "OperationalError: disk I/O error"
    deaths = [r for r in caplog.records if r.getMessage() == "task probe died"]
    assert len(deaths) == 2 and all(r.levelno == logging.ERROR for r in deaths)
    await supervisor.close()
    store.close()


@pytest.mark.looptime
async def test_an_unforeseen_probe_failure_is_that_clusters_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "db")
    for name in ("good", "bad"):
        store.add_cluster(
            ClusterRecord(name=name, server="https://x", kubeconfig={}, credential="t")
        )
    supervisor = Supervisor()
    registry = Registry(store, Scrubber(), temp_dir=tmp_path, supervisor=supervisor)

    async def client(name: str) -> str:
        return name

    async def ready(client: str, timeout: float) -> bool:
        if client == "bad":
            raise TypeError("a bug in the client")
        return True

    monkeypatch.setattr(registry_module, "readiness", ready)
    monkeypatch.setattr(registry, "client", client)
    supervisor.spawn(PROBE_TASK, registry.probe_forever, critical=True)

    assert await until(lambda: store.cluster("bad").health == "Unknown")
    assert await until(lambda: store.cluster("good").health == "Healthy")
    assert store.cluster("bad").reason.startswith("probe failed unexpectedly (TypeError)")
    prober = registry.prober_state()
    assert prober is not None and prober.running and prober.last_error is None
    await supervisor.close()
    store.close()


# the watch caches


def _poison() -> dict[str, Any]:
    """A watch event no API server sends: an object that is not an object. The cache's
    retries do not cover it (it is no outage), so the watch task dies of it."""
    return event("ADDED", ["not", "an", "object"])  # type: ignore[arg-type]


@asynccontextmanager
async def _watched_edge(tmp_path: Path, fake: FakeApi) -> AsyncIterator[Registry]:
    """The registry of cluster `edge`, the fake, watching its ConfigMaps."""
    async with started(fake) as server:
        store = store_on(tmp_path / "db", address(server), "edge")
        supervisor = Supervisor(first_restart=0.05)
        async with observing(store, tmp_path, supervisor, kinds=CONFIG_MAPS) as registry:
            yield registry


async def test_a_watch_that_dies_is_restarted_and_its_failure_shows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeApi(
        lists=[[config_map("settings", "1")], [config_map("settings", "2")]],
        watches=[[_poison()]],
    )
    async with _watched_edge(tmp_path, fake) as registry:
        observer, supervisor = registry.observer, registry.supervisor

        def recovered() -> bool:
            cache = observer.cache("edge")
            state = supervisor.state("observe:edge")
            return (
                cache is not None
                and cache.synced
                and state is not None
                and state.restarts == 1
                and (cache.get("ConfigMap", "ns", "settings") or {}).get("data") == {"v": "2"}
            )

        assert await until(recovered), registry.watch_health("edge")
        health = registry.watch_health("edge")
        assert (health.state, health.error, health.restarts) == ("synced", None, 1)
        assert health.last_error is not None
        assert health.last_error.startswith("WatchBroken: watch ConfigMap: AttributeError")
        assert fake.count("list") == 2  # the restart listed afresh
        assert any(r.getMessage() == "task observe:edge died" for r in caplog.records)

        listed = _clusters(registry, tmp_path).ls()
        assert_shape(listed, "clusters")
        [edge] = listed["clusters"]
        assert edge["watch"]["state"] == "synced" and edge["watch"]["restarts"] == 1
        assert edge["watch"]["lastError"] == health.last_error
        assert edge["watch"]["lastErrorAt"] is not None and edge["uid"]
        text = _render(_cluster_table(listed))
        assert "synced, 1 restart" in text
        assert "watch of edge: 1 restart(s), last died" in text
        assert "AttributeError" in text


async def test_a_watch_of_a_cluster_that_is_down_is_no_failure(tmp_path: Path) -> None:
    """An outage is the cache's to retry: it shows as the watch's error, never as a death."""
    fake = FakeApi(lists=[[config_map("settings", "1")]], failures=[503] * 3)
    async with _watched_edge(tmp_path, fake) as registry:
        assert await until(lambda: registry.watch_health("edge").state == "synced")
        state = registry.supervisor.state("observe:edge")
        assert state is not None and state.restarts == 0 and state.last_error is None


def _render(renderable: Any) -> str:
    console = Console(width=250, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _no_scrubber_left() -> bool:
    root = logging.getLogger()
    return not any(
        isinstance(f, Scrubber) for target in (root, *root.handlers) for f in target.filters
    )


@pytest.fixture
def broken_prober(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Registry) -> None:
        raise RuntimeError("the probes cannot be scheduled")

    monkeypatch.setattr(Registry, "probe_forever", broken)


@pytest.fixture
def closed_stores(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of the stores closed since the test began."""
    closed: list[Path] = []
    close = SqliteStore.close

    def spy(self: SqliteStore) -> None:
        closed.append(self.path)
        close(self)

    monkeypatch.setattr(SqliteStore, "close", spy)
    return closed


@pytest.mark.looptime
@pytest.mark.usefixtures("broken_prober")
async def test_serve_stops_when_the_prober_keeps_dying_and_releases_everything(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, closed_stores: list[Path]
) -> None:
    home, port = Home(tmp_path / "home"), _free_port()
    supervisor = Supervisor()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(HubStopped) as stopped:
        await serve(
            home,
            quick(port),
            supervisor=supervisor,
        )
    assert loop.time() - start == pytest.approx(0.5 + 1 + 2 + 4)  # four restarts, backing off
    error = stopped.value
    assert error.exit_code == 1 and "\n" not in str(error)
    assert str(error).startswith(
        "the hub stopped: probe died 5 times in a row: RuntimeError: the probes cannot be"
    )
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [r.getMessage() for r in critical] == [
        "probe died 5 times in a row: RuntimeError: the probes cannot be scheduled; the hub stops"
    ]
    assert not any(s.running for s in supervisor.states())
    assert not home.hub_file.exists()
    assert _refused(port)
    assert closed_stores == [home.store]
    assert _no_scrubber_left()


async def test_serve_releases_everything_on_sigterm(
    tmp_path: Path, closed_stores: list[Path]
) -> None:
    home, port = Home(tmp_path / "home"), _free_port()
    supervisor = Supervisor()
    hub = asyncio.create_task(
        serve(
            home,
            quick(port),
            supervisor=supervisor,
        )
    )
    assert await until(lambda: home.hub_file.exists() or hub.done())
    assert supervisor.running(PROBE_TASK)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(hub, WAIT)  # returns: a clean stop
    assert not home.hub_file.exists() and _refused(port)
    assert not any(s.running for s in supervisor.states())
    assert closed_stores == [home.store] and _no_scrubber_left()


async def test_serve_releases_what_it_opened_when_start_up_fails(
    tmp_path: Path, closed_stores: list[Path]
) -> None:
    home = Home(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HubStopped, match=f"cannot listen on 127.0.0.1:{port}: "):
            await serve(home, quick(port))
    assert not home.hub_file.exists()
    assert closed_stores == [home.store] and _no_scrubber_left()


@pytest.mark.usefixtures("broken_prober")
def test_flotilla_serve_exits_1_with_one_line_when_the_prober_keeps_dying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hub.root.Supervisor", functools.partial(Supervisor, first_restart=0.01))
    result = CliRunner().invoke(
        cli,
        ["serve", "--listen", "127.0.0.1:0"],
        env={"FLOTILLA_HOME": str(tmp_path / "home"), "NO_COLOR": "1"},
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "the hub stopped: probe died 5 times in a row" in lines[0]
    assert "Traceback" not in result.output
