"""The parts of a hub that unit tests put together: a store whose clusters are the fake API
server (tests/unit/fakeapi.py), applications deployed to them, and the registry, watches
and services over that store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from hub.charts import ChartCache
from hub.fleet.observer import Observer
from hub.fleet.registry import Registry
from hub.model.phases import StepType, TargetPhase
from hub.model.records import ClusterRecord, TargetRecord
from hub.model.settings import DEFAULTS
from hub.model.targets import TargetSpec
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.state.interface import AppStore
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from tests.unit.fakeapi import FAST, WAIT, kubeconfig

QUICK = dataclasses.replace(DEFAULTS, probe_interval=1, step_timeout=1, fanout=1)
"""A hub with short waits, for tests that run one."""


def store_on(path: Path, server: str, *clusters: str) -> SqliteStore:
    """A store at `path` with `clusters` registered, each the API server at `server`."""
    store = SqliteStore(path)
    for name in clusters:
        record = ClusterRecord(
            name=name, server=server, kubeconfig=kubeconfig(server), credential="token"
        )
        store.add_cluster(record)
    return store


def deploy(
    apps: AppStore,
    app: str,
    cluster: str,
    *,
    objects: Sequence[str] = ("x", "y"),
    phase: TargetPhase = TargetPhase.PAUSED,
) -> int:
    """A new revision of `app`, whose one step deploys release `web` (chart web-1.0.0) to
    namespace `ns` of `cluster`, with the ConfigMaps `objects` in its inventory there (none:
    targeted, nothing applied yet). Returns the revision's number."""
    target = TargetRecord(
        app=app,
        revision=0,
        step="deploy",
        cluster=cluster,
        component="web",
        namespace="ns",
        release="web",
        chart="web-1.0.0",
        spec=TargetSpec("k8s-objects"),
        phase=phase,
    )
    revision = apps.create_revision(
        app,
        spec={},
        digest="d",
        publish_version="",
        source="test",
        base=".",
        steps=[("deploy", StepType.DEPLOY)],
        targets=[target],
    )
    if objects:
        refs = [
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "ns", "name": n} for n in objects
        ]
        apps.set_inventory(app, cluster, "web", revision.number, refs)
    return revision.number


@asynccontextmanager
async def observing(
    store: SqliteStore,
    temp_dir: Path,
    supervisor: Supervisor,
    *,
    kinds: list[tuple[str, str]] | None = None,
) -> AsyncIterator[Registry]:
    """The registry of `store`, watching its clusters (only `kinds`, when given, with
    retries as fast as the fake allows). On the way out the supervisor, the registry and
    the store are closed."""
    registry = Registry(store, Scrubber(), temp_dir=temp_dir, supervisor=supervisor)
    if kinds is not None:
        registry.observer = Observer(
            registry.client, supervisor=supervisor, kinds=kinds, backoff=FAST
        )
    registry.observe()
    try:
        yield registry
    finally:
        await supervisor.close()
        await registry.close()
        store.close()


def applications_of(registry: Registry, home: Path) -> Applications:
    """The applications service over the registry's store, with its chart cache in `home`."""
    return Applications(
        registry.store,
        registry,
        ChartCache(home / "charts"),
        settings=QUICK,
        supervisor=registry.supervisor,
    )


async def until(condition: Callable[[], bool]) -> bool:
    """Poll with a bound on waiting: the hub's background tasks (the supervised ones, the
    watch caches starting) announce nothing that only a test would wait for."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return condition()
