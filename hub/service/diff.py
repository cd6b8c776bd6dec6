"""`flotilla diff`: what `up` would change on each cluster, asked of the clusters themselves.

Every target's objects go through server-side apply in dry-run mode with exactly what a
deploy sends (the `flotilla` field manager, `force`, the same labels), and the server's
answer is compared with the live object. Both carry the server's defaults and every field
other managers own, so only what the apply itself would change differs: no guess at
defaulting, no false alarm for an HPA's replicas.

What changes on every write (resourceVersion, managedFields, generation, status) and the
revision label are left out before comparing: they would make every object look changed.
Secret values never leave this module; a changed key shows as changed, not its value.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import yaml

from clusters.apply import DryRun, dry_run, get, stale
from clusters.client import ClusterClient
from clusters.errors import ClusterError
from clusters.resources import ObjectRef
from hub.errors import InvalidInput, NotFound
from hub.fleet.keep import deletable
from hub.fleet.objects import REDACTED, REVISION_LABEL, SECRET_FIELDS, labelled, ref_of
from hub.fleet.registry import Registry
from hub.format import Application
from hub.format.applyonce import WHOLE, Part, path_parts
from hub.model.records import TargetRecord
from hub.model.views import DiffClusterView, DiffObjectView, DiffReleaseView, DiffView
from hub.service.planner import Inventory, PlannedTarget, failures
from hub.tasks import first_line

# Metadata the server rewrites on every write, or sets once: never a change `up` makes.
_VOLATILE = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")
# The annotation client-side `kubectl apply` copies a Secret's values into.
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED_OLD, REDACTED_NEW = "(redacted: old value)", "(redacted: new value)"


class Action(StrEnum):
    CREATED = "created"
    CHANGED = "changed"
    PRUNED = "pruned"
    UNCHANGED = "unchanged"
    APPLY_ONCE = "apply-once"
    """An existing object the application's apply-once policy leaves alone entirely."""


CHANGES = frozenset({Action.CREATED, Action.CHANGED, Action.PRUNED})
Kept = Callable[[str, str, str], tuple[str, ...]]
"""(component, kind, name) -> the paths of the object an apply leaves as they are live."""


@dataclass
class Release:
    """One target's objects, rendered and labelled as its deploy would apply them."""

    cluster: str
    component: str
    release: str
    namespace: str
    objects: list[dict[str, Any]]


class Differ:
    """Diffs of a plan (`flotilla diff -f`) or of a stored revision (`--revision`)."""

    def __init__(self, inventory: Inventory, registry: Registry, *, cluster: str | None) -> None:
        """`inventory`: what the application has applied (`AppStore.inventory`); `cluster`:
        diff only there (a registered cluster, or the answer would be silently empty)."""
        if cluster is not None and cluster not in {c.name for c in registry.clusters()}:
            raise NotFound(f"cluster {cluster!r} is not registered (flotilla cluster list)")
        self.inventory = inventory
        self.registry = registry
        self.cluster = cluster

    async def of_plan(
        self, app: Application, planned: Sequence[PlannedTarget], *, source: str, revision: int
    ) -> DiffView:
        """What `up` of the planned file would change; `revision` is the number it would get."""
        problems = failures(planned)
        if problems:
            raise InvalidInput(f"{source}: cannot diff:\n{problems}")
        name = app.metadata.name
        releases = [
            Release(
                p.target.cluster,
                p.target.component,
                p.target.release_name,
                p.target.namespace,
                labelled(copy.deepcopy(p.objects), name, p.target.component, revision),
            )
            for p in planned
            if p.refused is None  # it renders nothing: `up` would change nothing there
        ]
        return await self._view(name, None, app.apply_once.on_update, releases)

    async def of_revision(
        self,
        app: Application,
        revision: int,
        targets: Iterable[TargetRecord],
        render: Callable[[TargetRecord], Awaitable[list[dict[str, Any]]]],
    ) -> DiffView:
        """How the clusters drifted from stored `targets` of `revision`, each rendered from
        the chart its revision pinned (`Deployer.render`)."""
        targets = list(targets)
        rendered = await asyncio.gather(*(render(t) for t in targets))
        releases = [
            Release(t.cluster, t.component, t.release, t.namespace, objects)
            for t, objects in zip(targets, rendered, strict=True)
        ]
        return await self._view(app.metadata.name, revision, app.apply_once.paths, releases)

    async def _view(
        self, name: str, revision: int | None, kept: Kept, releases: list[Release]
    ) -> DiffView:
        """`kept`: the paths of an object that the apply leaves as they are live, by the
        application's apply-once policy (`ApplyOnce.on_update` for a new revision,
        `ApplyOnce.paths` for the revision a cluster runs)."""
        by_cluster: dict[str, list[Release]] = {}
        for release in releases:
            if self.cluster in (None, release.cluster):
                by_cluster.setdefault(release.cluster, []).append(release)
        clusters = await asyncio.gather(
            *(self._cluster(c, by_cluster[c], kept) for c in sorted(by_cluster))
        )
        changes = sum(
            o["action"] in CHANGES for c in clusters for r in c["releases"] for o in r["objects"]
        )
        return DiffView(application=name, revision=revision, changes=changes, clusters=clusters)

    async def _cluster(self, cluster: str, releases: list[Release], kept: Kept) -> DiffClusterView:
        """One cluster's releases; a cluster that fails is named with why, and the others
        are still diffed."""
        try:
            client = await self.registry.client(cluster)
            views = [await self._release(client, r, kept) for r in releases]
        except ClusterError as e:
            return DiffClusterView(name=cluster, error=first_line(e), releases=[])
        return DiffClusterView(name=cluster, error=None, releases=views)

    async def _release(
        self, client: ClusterClient, release: Release, kept: Kept
    ) -> DiffReleaseView:
        component = release.component
        try:
            runs = await dry_run(client, release.objects, default_namespace=release.namespace)
        except ValueError as e:  # a manifest the apply would refuse before any request
            raise InvalidInput(f"cluster {release.cluster}, {component}: {e}") from e
        lives = await asyncio.gather(*(_live(client, run) for run in runs))
        objects = [
            _compare(
                run.ref, live, run.result or manifest, kept(component, run.ref.kind, run.ref.name)
            )
            for run, live, manifest in zip(runs, lives, release.objects, strict=True)
        ]
        entries = self.inventory.get((release.cluster, component), (0, []))[1]
        gone = stale([ref_of(e) for e in deletable(entries)], [run.ref for run in runs])
        pruned = await asyncio.gather(*(get(client, ref) for ref in gone))
        for ref, live in zip(gone, pruned, strict=True):
            if live is not None:  # already gone: nothing for `up` to delete
                objects.append(_compare(ref, live, None, kept(component, ref.kind, ref.name)))
        return DiffReleaseView(
            component=component,
            release=release.release,
            namespace=release.namespace,
            objects=objects,
        )


async def _live(client: ClusterClient, run: DryRun) -> dict[str, Any] | None:
    """The live object; none where the dry run could not be asked (nothing to read)."""
    return None if run.result is None else await get(client, run.ref)


def _compare(
    ref: ObjectRef,
    live: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    kept: tuple[str, ...],
) -> DiffObjectView:
    """One object's entry: `after` is what the apply would leave, None for a prune;
    `kept` the paths apply-once leaves as they are live."""
    view = DiffObjectView(
        kind=ref.kind, namespace=ref.namespace, name=ref.name, action=Action.UNCHANGED, diff=""
    )
    if live is not None and after is not None and WHOLE in kept:
        view["action"] = Action.APPLY_ONCE
        return view
    rules = {path_parts(path) for path in kept}
    old, new = _comparable(live, rules), _comparable(after, rules)
    if ref.kind == "Secret":
        _redact(old, new)
    before, later = _yaml(old), _yaml(new)
    if before == later:
        return view
    view["action"] = (
        Action.CREATED if live is None else Action.PRUNED if after is None else Action.CHANGED
    )
    view["diff"] = "\n".join(
        difflib.unified_diff(
            before.splitlines(),
            later.splitlines(),
            fromfile=f"{ref} (live)",
            tofile=f"{ref} (after up)",
            lineterm="",
        )
    )
    return view


def _comparable(obj: Mapping[str, Any] | None, kept: set[tuple[Part, ...]]) -> dict[str, Any]:
    """A copy of `obj` without what changes on every write, nor the `kept` paths (as
    `path_parts` reads them); empty for no object."""
    if obj is None:
        return {}
    out: dict[str, Any] = _without(copy.deepcopy(dict(obj)), (), kept)
    out.pop("status", None)
    metadata = out.get("metadata") or {}
    for key in _VOLATILE:
        metadata.pop(key, None)
    (metadata.get("labels") or {}).pop(REVISION_LABEL, None)
    return out


def _without(node: Any, at: tuple[Part, ...], kept: set[tuple[Part, ...]]) -> Any:
    """`node` without the subtrees at the `kept` paths (a path covers all below it)."""
    if isinstance(node, dict):
        items: Iterable[tuple[Part, Any]] = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return node
    children = {
        key: _without(value, (*at, key), kept) for key, value in items if (*at, key) not in kept
    }
    return children if isinstance(node, dict) else list(children.values())


def _redact(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Replace a Secret's values on both sides, in place, so that a changed key still
    differs and an unchanged one does not, and no value is left to show."""
    sides = [(old, new, field) for field in SECRET_FIELDS]
    sides += [((old.get("metadata") or {}), (new.get("metadata") or {}), "annotations")]
    for left, right, field in sides:
        a, b = left.get(field) or {}, right.get(field) or {}
        keys = set(a) | set(b) if field in SECRET_FIELDS else {_LAST_APPLIED}
        for key in keys:
            same = a.get(key) == b.get(key)
            if key in a:
                a[key] = REDACTED if same else REDACTED_OLD
            if key in b:
                b[key] = REDACTED if same else REDACTED_NEW


def _yaml(obj: Mapping[str, Any]) -> str:
    """Keys sorted, as `kubectl diff` prints objects: the order of a render is no change."""
    return yaml.safe_dump(dict(obj), sort_keys=True) if obj else ""
