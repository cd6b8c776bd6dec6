"""An application's health in the store (issue 15, for `kubectl get`): the column an older
SQLite store gets, and the task that keeps it what the watch caches show (a pass, its
refusals, what wakes it and how often), and the observations it keeps beside it for hubs
that do not drive the application. Both stores' `set_health` and `set_observed`:
tests/integration/test_store_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hub.fleet.registry import Registry
from hub.model.phases import AppPhase, TargetPhase
from hub.model.records import ObservedObject
from hub.redaction import Scrubber
from hub.service.health import INTERVAL, SHARE, StoredHealth
from hub.state.interface import AppStore, StoreUnavailable
from hub.state.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from tests.unit.hubparts import Drifts, deploy, store_on, until
from tests.unit.test_metrics import DEAD, hub
from tests.unit.test_store import _tables

HEALTH = {"shop": "Healthy", "gone": "Missing", "blog": "Degraded", "web": "Suspended"}
"""What the watch caches show of the applications of test_metrics' `hub`."""


def _version_9_store(path: Path) -> None:
    """A store as Flotilla wrote it before applications kept their health, with `shop`."""
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    for version in range(2, 10):
        MIGRATIONS[version](db)
    db.execute("PRAGMA user_version=9")
    db.execute(
        "INSERT INTO applications (name, revision, phase, created_at, updated_at)"
        " VALUES ('shop', 1, 'succeeded', 0, 0)"
    )
    db.close()


def test_a_version_9_store_gets_the_health_column_its_applications_unknown(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _version_9_store(path)
    store = SqliteStore(path)
    assert store.version == SCHEMA_VERSION >= 10
    apps = store.apps()
    assert apps.app("shop").health == "Unknown"
    apps.set_health("shop", "Healthy")
    assert apps.app("shop").health == "Healthy"
    store.close()
    fresh = tmp_path / "fresh.db"
    SqliteStore(fresh).close()
    assert _tables(path) == _tables(fresh), "a migrated store differs from a new one"


async def test_a_pass_stores_what_the_caches_show_of_the_applications_driven_here(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        apps = h.applications.apps
        subscription = apps.changes.subscribe()
        stored = StoredHealth(
            apps, h.applications.registry, supervisor=h.supervisor, owns=lambda a: a != "blog"
        )
        assert stored.keep() == ["gone", "shop", "web"]
        assert {a.name: a.health for a in apps.apps()} == HEALTH | {"blog": "Unknown"}
        assert stored.keep() == [], "nothing moved, so nothing is written"
        assert subscription.drain() == [], "a publish would wake the pass again"
        subscription.close()


async def test_a_refused_write_is_said_once_and_the_others_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path) as h:
        apps = h.applications.apps
        set_health = apps.set_health

        def refusing(name: str, health: str) -> None:
            if name == "gone":
                raise StoreUnavailable("the hub's store at https://store.example: no answer")
            set_health(name, health)

        monkeypatch.setattr(apps, "set_health", refusing)
        stored = StoredHealth(apps, h.applications.registry, supervisor=h.supervisor)
        with caplog.at_level(logging.INFO, logger="hub.service.health"):
            assert stored.keep() == ["blog", "shop", "web"]
            assert stored.keep() == []
            monkeypatch.setattr(apps, "set_health", set_health)
            assert stored.keep() == ["gone"]
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            (
                "WARNING",
                "cannot keep the applications' health in the store (the hub's store at "
                "https://store.example: no answer); trying again",
            ),
            ("INFO", "the applications' health is kept in the store again"),
        ]
        assert {a.name: a.health for a in apps.apps()} == HEALTH


async def test_the_task_follows_the_store_and_the_watch_caches(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        apps, registry = h.applications.apps, h.applications.registry
        StoredHealth(apps, registry, supervisor=h.supervisor, interval=0.01).start()
        assert await until(lambda: {a.name: a.health for a in apps.apps()} == HEALTH)
        # A change the store publishes: blog's new revision is on edge, where x and y are.
        deploy(apps, "blog", "edge", objects=("x", "y"), phase=TargetPhase.HEALTHY)
        assert await until(lambda: apps.app("blog").health == "Healthy")
        # A change only the watch cache sees: edge listed again holds nothing any more.
        await registry.observer.forget("edge")
        registry.observer.watch("edge")
        assert await until(lambda: apps.app("shop").health == "Missing")


@contextlib.asynccontextmanager
async def _passes_of(
    tmp_path: Path, keep: Callable[[Callable[[], list[str]]], list[str]], **options: Any
) -> AsyncIterator[tuple[AppStore, list[float]]]:
    """The task started over a store of one application, `shop` on the dead cluster
    `edge`, each pass made by `keep(the real pass)`; yields the store and the (virtual)
    times of the passes so far."""
    store = store_on(tmp_path / "db", DEAD, "edge")
    supervisor = Supervisor()
    registry = Registry(store, Scrubber(), temp_dir=tmp_path, supervisor=supervisor)
    apps = store.apps()
    deploy(apps, "shop", "edge")
    stored = StoredHealth(apps, registry, supervisor=supervisor, **options)
    loop = asyncio.get_running_loop()
    passes: list[float] = []
    real = stored.keep

    def counted() -> list[str]:
        passes.append(loop.time())
        return keep(real)

    stored.keep = counted  # type: ignore[method-assign]
    try:
        stored.start()
        yield apps, passes
    finally:
        await supervisor.close()
        await registry.close()
        store.close()


async def _changes(apps: AppStore, count: int) -> None:
    """`count` changes of `shop`, one every 0.1 (virtual) seconds."""
    for phase in itertools.islice(itertools.cycle(AppPhase), count):
        await asyncio.sleep(0.1)
        apps.set_app("shop", phase=phase)


@pytest.mark.looptime
async def test_a_burst_of_changes_costs_at_most_one_pass_a_second(tmp_path: Path) -> None:
    async with _passes_of(tmp_path, lambda real: real()) as (apps, passes):
        assert await until(lambda: len(passes) == 1)
        await _changes(apps, 30)  # the burst: 30 changes over 3 seconds
        before = len(passes)
        assert await until(lambda: len(passes) > before), "the last change has its pass"
        assert all(b - a >= INTERVAL for a, b in itertools.pairwise(passes))
        assert len(passes) <= 5, "one at the start and one a second after"


@pytest.mark.looptime
async def test_a_pass_that_takes_long_is_followed_by_a_longer_rest(tmp_path: Path) -> None:
    """A pass of t seconds (a thousand targets) is followed by t / SHARE of rest, not by
    INTERVAL, so that keeping the health takes at most a SHARE of the hub's loop."""
    took = 0.05  # real seconds; virtual time stands still meanwhile

    def slow(real: Callable[[], list[str]]) -> list[str]:
        started = time.perf_counter()
        while time.perf_counter() - started < took:
            pass
        return real()

    async with _passes_of(tmp_path, slow, interval=0.01) as (apps, passes):
        await _changes(apps, 20)
        assert await until(lambda: len(passes) >= 3)
        assert all(b - a >= took / SHARE for a, b in itertools.pairwise(passes)), passes


# what the caches and the drift keeper show of each object, for hubs that do not drive the
# application (hub.service.status `owned=False`)


async def test_observations_are_written_when_they_change_and_never_published(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        apps = h.applications.apps
        subscription = apps.changes.subscribe()
        drifts = Drifts()
        stored = StoredHealth(
            apps,
            h.applications.registry,
            supervisor=h.supervisor,
            owns=lambda a: a != "blog",
            observe=drifts,
        )
        assert stored.keep() == ["gone", "shop", "web"]
        assert apps.observed("blog") is None, "not driven here"
        assert [o.name for o in _observed(apps, "shop")] == ["x", "y"]
        assert stored.keep() == [], "an unchanged observation is not written again"
        drifts.edit("shop", "edge", "x")
        assert stored.keep() == ["shop"]
        assert [o.drift is not None for o in _observed(apps, "shop")] == [True, False]
        assert apps.app("shop").health == HEALTH["shop"], "drift leaves the health as it is"
        assert subscription.drain() == [], "a publish would wake the pass again"
        subscription.close()


async def test_drift_the_keeper_shows_after_a_pass_reaches_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keeper looks at a change after the pass that the same change woke, and heals
    without another cache event: the passes come again by themselves meanwhile."""
    async with hub(tmp_path) as h:
        apps, registry = h.applications.apps, h.applications.registry
        drifts = Drifts()
        listeners: list[Callable[[str], None]] = []
        monkeypatch.setattr(registry.observer, "listen", listeners.append)
        stored = StoredHealth(
            apps, registry, supervisor=h.supervisor, observe=drifts, interval=0.01, recheck=0.05
        )
        keep, edited = stored.keep, asyncio.Event()

        def keeper_after_the_pass() -> list[str]:
            written = keep()
            if edited.is_set():
                drifts.edit("shop", "edge", "x")  # found once this pass has gone by
            return written

        monkeypatch.setattr(stored, "keep", keeper_after_the_pass)
        stored.start()
        assert await until(lambda: apps.observed("shop") is not None)
        edited.set()
        [cache_changed] = listeners
        cache_changed("edge")  # the `kubectl edit`, as the watch cache sees it
        assert await until(lambda: _observed(apps, "shop")[0].drift is not None)
        edited.clear()
        drifts.heal()  # the heal's own cache event is not heard here
        assert await until(lambda: _observed(apps, "shop")[0].drift is None)


def _observed(apps: AppStore, app: str) -> tuple[ObservedObject, ...]:
    """The objects of `app`'s release web on edge, as stored."""
    record = apps.observed(app)
    assert record is not None
    return record.releases["edge", "web"]
