"""The last status tree of each application, answered again while nothing it is made of moved.

A tree of a thousand targets reads every target, inventory entry and sighting of them:
about 100 ms on the hub's one loop. It is asked often (`up --wait` twice a second, the
web view, scripts), and between two asks nothing it is made of usually moved. What can
move it, each told apart here without reading the rows or objects again (`Inputs`):
- the application's rows in the store: the store's `writes` count (a store that cannot
  keep one, the Kubernetes store shared by several hubs, gets every tree built anew);
- each targeted cluster's record as its tree shows it (health, labels) and its watch
  cache: which one, its state (listed, synced, failing) and the objects of the namespaces
  the application's objects are in there (`ClusterCache.moved`: a rollout of another
  application in other namespaces of the cluster moves none of them), and, while it is
  not connected, when it last heard from its cluster (the "as last seen" of its objects);
- what the drift keeper shows of each release.

When each cluster was last heard from moves with every probe and is not kept: it is put
in each answer as it is then. A tree is kept only if every object's health in it came from
a cache (none was read from its cluster, whose answer would be as old as the tree), and
only for an application this hub drives; a replica's tree of another's comes from the
store alone, and is built anew.

StoredHealth asks the same question of every application it rolls up (`Inputs.of`), so a
pass after a change elsewhere skips those nothing moved under.
"""

from __future__ import annotations

from typing import NamedTuple

from hub.fleet.registry import Registry
from hub.model.views import StatusView, StepView
from hub.service.status import DriftOf, Placed, Tree, seen_at, status_tree
from hub.state.interface import AppStore
from hub.workflow.analysis import Analyses

Fingerprint = tuple[int, tuple[object, ...], tuple[object, ...]]
"""What `Inputs.of` tells apart: equal while nothing a tree is made of moved."""


class Inputs:
    """What the status trees and rolled-up healths of applications are made of."""

    def __init__(self, apps: AppStore, registry: Registry, drift: DriftOf | None) -> None:
        """`drift`: the drift keeper's, when what is made of them shows drift (None: the
        health alone, which drift does not move)."""
        self._apps = apps
        self._registry = registry
        self._drift = drift

    def of(self, app: str, placed: Placed) -> Fingerprint | None:
        """The fingerprint of `app` placed as `placed` (as a tree of it found it last);
        None when the store cannot say whether its rows moved."""
        writes = self._apps.writes()
        if writes is None:
            return None
        clusters = tuple(self._cluster(*where) for where in sorted(placed.namespaces.items()))
        drift = self._drift
        drifts = (
            () if drift is None else tuple(tuple(drift(app, *r).items()) for r in placed.releases)
        )
        return writes, clusters, drifts

    def _cluster(self, name: str, namespaces: tuple[str, ...]) -> object:
        record = self._registry.record(name)
        cache = self._registry.observer.cache(name)
        return (
            None if record is None else (record.health, record.labels),
            None
            if cache is None
            else (cache, cache.moved(namespaces), not cache.synced and cache.last_seen),
        )


class _Kept(NamedTuple):
    placed: Placed
    fingerprint: Fingerprint
    view: StatusView


class StatusMemo:
    """`status` of the applications, each tree kept until something it is made of moved."""

    def __init__(
        self, apps: AppStore, registry: Registry, analyses: Analyses, drift: DriftOf
    ) -> None:
        self._apps = apps
        self._registry = registry
        self._analyses = analyses
        self._drift = drift
        self._inputs = Inputs(apps, registry, drift)
        self._kept: dict[str, _Kept] = {}

    async def status(self, name: str, *, owned: bool) -> StatusView:
        kept = self._kept.pop(name, None)
        if owned and kept is not None and self._inputs.of(name, kept.placed) == kept.fingerprint:
            self._kept[name] = kept
            return _as_seen_now(kept.view, self._registry)
        tree = await status_tree(
            self._apps, self._registry, self._analyses, self._drift, name, owned=owned
        )
        self._keep(name, tree, owned=owned)
        return tree.view

    def _keep(self, name: str, tree: Tree, *, owned: bool) -> None:
        """Keep `tree` if it may be answered again. A tree whose objects all came from the
        caches was built without yielding to the loop, so what `of` reads now is what it
        was made of."""
        if not (owned and tree.cached):
            return
        fingerprint = self._inputs.of(name, tree.placed)
        if fingerprint is not None:
            self._kept[name] = _Kept(tree.placed, fingerprint, tree.view)


def _as_seen_now(view: StatusView, registry: Registry) -> StatusView:
    """`view` with when each of its clusters was last heard from as it is now; a copy, so
    that an answer already given never changes under whoever holds it."""
    steps: list[StepView] = [
        {
            **step,
            "clusters": [{**c, "lastSeen": seen_at(registry, c["name"])} for c in step["clusters"]],
        }
        for step in view["steps"]
    ]
    return {**view, "steps": steps}
