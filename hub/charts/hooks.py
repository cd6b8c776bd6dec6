"""Which rendered objects are Helm hooks, and in which order Helm runs them.

A chart's hook objects (annotation `helm.sh/hook`) are not part of its release: Helm
creates them around an install, upgrade, rollback or delete, waits for them, and deletes
them by their `helm.sh/hook-delete-policy`. Applying them as release objects is what
breaks an upgrade (a Job's template is immutable), so every render is split here, and
only the release part ever reaches an apply, a prune, the drift keeper or health.

Pure: this reads annotations and sorts, and never talks to a cluster. Parsing follows
Helm's `releaseutil`: unknown hook events are ignored (such an object is a hook that
never runs), a weight that is not an integer counts as 0, and a hook without a delete
policy gets `before-hook-creation`. Test hooks never get here: `hub.charts.render`
drops them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from clusters.apply import phase

HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"
HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"


class HookEvent(enum.StrEnum):
    PRE_INSTALL = "pre-install"
    POST_INSTALL = "post-install"
    PRE_UPGRADE = "pre-upgrade"
    POST_UPGRADE = "post-upgrade"
    PRE_ROLLBACK = "pre-rollback"
    POST_ROLLBACK = "post-rollback"
    PRE_DELETE = "pre-delete"
    POST_DELETE = "post-delete"


class Operation(enum.StrEnum):
    """What a deploy does to a release on one cluster: its hooks are `pre-`/`post-` it."""

    INSTALL = "install"
    UPGRADE = "upgrade"
    ROLLBACK = "rollback"
    DELETE = "delete"

    @property
    def before(self) -> HookEvent:
        return HookEvent(f"pre-{self.value}")

    @property
    def after(self) -> HookEvent:
        return HookEvent(f"post-{self.value}")


class DeletePolicy(enum.StrEnum):
    BEFORE_HOOK_CREATION = "before-hook-creation"
    HOOK_SUCCEEDED = "hook-succeeded"
    HOOK_FAILED = "hook-failed"


@dataclass(frozen=True)
class Hook:
    """One hook object of a render, with what its annotations say."""

    manifest: Mapping[str, Any]
    events: frozenset[HookEvent]
    weight: int
    delete_policies: frozenset[DeletePolicy]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def name(self) -> str:
        return str((self.manifest.get("metadata") or {}).get("name", ""))

    def deletes(self, policy: DeletePolicy) -> bool:
        """Whether the hook's object goes at `policy`'s moment. Like Helm, never a
        CustomResourceDefinition: deleting one deletes every object of its kind."""
        return policy in self.delete_policies and self.kind != "CustomResourceDefinition"


@dataclass(frozen=True)
class Classified:
    """A render split in two: the release's objects, and its hooks."""

    release: list[dict[str, Any]]
    hooks: list[Hook]

    def hooks_for(self, event: HookEvent) -> list[Hook]:
        """The hooks of `event` in the order Helm runs them: by weight, then by name, and
        for equal names by kind in the order objects are applied."""
        return sorted(
            (h for h in self.hooks if event in h.events),
            key=lambda h: (h.weight, h.name, phase(h.kind)),
        )


def classify(objects: Iterable[dict[str, Any]]) -> Classified:
    """Split rendered objects into release objects and hooks, each in render order."""
    release: list[dict[str, Any]] = []
    hooks: list[Hook] = []
    for obj in objects:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if HOOK not in annotations:
            release.append(obj)
            continue
        events = frozenset(
            HookEvent(value) for value in _values(annotations[HOOK]) if value in _EVENTS
        )
        policies = frozenset(
            DeletePolicy(value)
            for value in _values(annotations.get(HOOK_DELETE_POLICY, ""))
            if value in _POLICIES
        )
        hooks.append(
            Hook(
                manifest=obj,
                events=events,
                weight=_weight(annotations.get(HOOK_WEIGHT)),
                delete_policies=policies or frozenset({DeletePolicy.BEFORE_HOOK_CREATION}),
            )
        )
    return Classified(release, hooks)


_EVENTS = frozenset(e.value for e in HookEvent)
_POLICIES = frozenset(p.value for p in DeletePolicy)


def _values(annotation: Any) -> list[str]:
    """A comma-separated annotation, as Helm reads it: trimmed and lower-cased."""
    return [v.strip().lower() for v in str(annotation).split(",") if v.strip()]


def _weight(annotation: Any) -> int:
    try:
        return int(str(annotation).strip())
    except ValueError:
        return 0
