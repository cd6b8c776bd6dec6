"""The parts of a hub that unit tests put together: a store whose clusters are the fake API
server (tests/unit/fakeapi.py), applications deployed to them, and the registry, watches
and services over that store."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from clusters.drift import FieldDrift
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
from hub.workflow.engine import every_app
from hub.workflow.keeper import Drift, ObjectKey, object_key
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


# What a target deploys unless told: a `k8s-objects` component of no objects.
OBJECTS = TargetSpec("k8s-objects")


def deploy(
    apps: AppStore,
    app: str,
    cluster: str,
    *,
    objects: Sequence[str] = ("x", "y"),
    phase: TargetPhase = TargetPhase.PAUSED,
    spec: TargetSpec = OBJECTS,
    document: dict[str, Any] | None = None,
) -> int:
    """A new revision of `app` (the application `document`), whose one step deploys
    release `web` (chart web-1.0.0, `spec`) to namespace `ns` of `cluster`, with the
    ConfigMaps `objects` in its inventory there (none: targeted, nothing applied yet).
    Returns the revision's number."""
    target = TargetRecord(
        app=app,
        revision=0,
        step="deploy",
        cluster=cluster,
        component="web",
        namespace="ns",
        release="web",
        chart="web-1.0.0",
        spec=spec,
        phase=phase,
    )
    revision = apps.create_revision(
        app,
        spec=document or {},
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


def applications_of(
    registry: Registry, home: Path, *, owns: Callable[[str], bool] = every_app
) -> Applications:
    """The applications service over the registry's store, with its chart cache in `home`;
    `owns`: the applications this hub drives (another hub sharing the store the others)."""
    return Applications(
        registry.store,
        registry,
        ChartCache(home / "charts"),
        settings=QUICK,
        supervisor=registry.supervisor,
        owns=owns,
    )


@dataclasses.dataclass
class Drifts:
    """A drift keeper's `drift(app, cluster, component)` whose answers a test sets."""

    shown: dict[tuple[str, str, str], dict[ObjectKey, Drift]] = dataclasses.field(
        default_factory=dict
    )

    def __call__(self, app: str, cluster: str, component: str) -> Mapping[ObjectKey, Drift]:
        return self.shown.get((app, cluster, component), {})

    def edit(self, app: str, cluster: str, name: str, *, live: str = "2") -> None:
        """ConfigMap ns/`name` of `app`'s release `web` (`deploy`'s) on `cluster` was
        edited by kubectl (its `data.k` from "1" to `live`), and is being healed."""
        field = FieldDrift("data.k", want="1", have=live, manager="kubectl")
        drift = Drift("ConfigMap", "ns", name, [field], gone=False, action="healing", since=1.0)
        key = object_key("v1", "ConfigMap", "ns", name)
        self.shown.setdefault((app, cluster, "web"), {})[key] = drift

    def heal(self) -> None:
        """Everything is in sync again."""
        self.shown.clear()


async def until(condition: Callable[[], bool]) -> bool:
    """Poll with a bound on waiting: the hub's background tasks (the supervised ones, the
    watch caches starting) announce nothing that only a test would wait for."""
    deadline = asyncio.get_running_loop().time() + WAIT
    while not condition() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return condition()
