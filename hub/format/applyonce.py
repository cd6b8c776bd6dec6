"""KubeVela's `apply-once` policy: the objects, or the fields of objects, that are applied
once and then left alone.

The hub keeps what it applied as it applied it; this policy is how a user turns that off
where something else is meant to change an object. It is read as KubeVela reads it
(`ApplyOncePolicySpec` and `ResourcePolicyRuleSelector` in `apis/core.oam.dev/v1alpha1`,
`ApplyStrategies` in `pkg/resourcekeeper`), so a KubeVela user's file means what it meant:

- several apply-once policies act as one: their rules in the order written, enabled if
  any of them is;
- `enable: false` (the default) turns the policy off, rules and all;
- `enable: true` without `rules` leaves every object alone once applied, while a new
  revision is still applied in full;
- otherwise the first rule whose selector matches an object decides for it (a selector
  matches when every field it gives matches), and the rule's `strategy.affect` says when
  its paths are left alone: `onStateKeep` between revisions (a drift is shown but not
  healed), `onUpdate` when a new revision is applied (the live value is kept instead of
  the chart's), `always` (the default) both.

Refused by name, because Flotilla could not honour them: the selector fields `oamTypes`
and `traitTypes` (the hub does not tell a component's objects from a trait's), and a rule
or selector that selects nothing (KubeVela would ignore it silently).

Pure: no I/O.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from hub.format.analysis import Described
from hub.format.components import COMPONENT_PROPERTIES
from hub.format.types import NonEmpty

WHOLE = "*"
"""The path that stands for the whole object."""

Part = str | int
"""A field name, or a list index."""

Phase = Literal["onUpdate", "onStateKeep"]


# --- field paths -------------------------------------------------------------------------------

_FIELD = re.compile(r"[^.\[\]]+")
_DOTTED = re.compile(r"\.([^.\[\]]+)")
_BRACKETED = re.compile(r"\[([^\[\]]+)\]")
_INDEX = re.compile(r"[0-9]+")
_INDEX_LIMIT = 2**32  # crossplane's fieldpath reads a larger number as a field name
_PATH_RULE = (
    "fields joined by '.', list items by index as [0], names holding dots in brackets as "
    "[app.kubernetes.io/name]; or * alone for the whole object"
)


@functools.lru_cache(maxsize=4096)
def path_parts(path: str) -> tuple[Part, ...]:
    """The parts of a field path, read as KubeVela reads a strategy's path (crossplane's
    `fieldpath`): `spec.template.spec.containers[0].image`, `metadata.labels[a.b/c]`, and
    the JSON-quoted names (`metadata.labels["a.b/c"]`) that drift paths are written with.
    `()` for `*`; `ValueError` for anything else.

    Cached: drift asks about the same few paths again and again."""
    if path == WHOLE:
        return ()
    parts: list[Part] = []
    position = 0
    if first := _FIELD.match(path):
        parts.append(first[0])
        position = first.end()
    while position < len(path):
        if bracketed := _BRACKETED.match(path, position):
            parts.append(_bracketed(bracketed[1]))
            position = bracketed.end()
        elif parts and (dotted := _DOTTED.match(path, position)):
            parts.append(dotted[1])
            position = dotted.end()
        else:
            raise ValueError(f"{path!r} is not a field path ({_PATH_RULE})")
    if not parts:
        raise ValueError(f"{path!r} is not a field path ({_PATH_RULE})")
    if WHOLE in parts:
        raise ValueError(f"{path!r}: * stands alone, for the whole object")
    return tuple(parts)


def _bracketed(text: str) -> Part:
    if _INDEX.fullmatch(text) and int(text) < _INDEX_LIMIT:
        return int(text)
    if len(text) > 1 and text[0] == text[-1] == '"':
        try:
            name = json.loads(text)
        except ValueError:
            pass
        else:
            if isinstance(name, str):
                return name
    return text.strip("'\"")


def _field_path(path: str) -> str:
    try:
        path_parts(path)
    except ValueError as e:
        raise PydanticCustomError("field_path", "{reason}", {"reason": str(e)}) from e
    return path


def _covers(rule: Sequence[Part], path: Sequence[Part]) -> bool:
    """A rule's path covers itself and every path below it."""
    return tuple(path[: len(rule)]) == tuple(rule)


# --- the policy as written -----------------------------------------------------------------------

_KIND = re.compile(r"[A-Z][A-Za-z0-9]*")


def _kind(kind: str) -> str:
    if not _KIND.fullmatch(kind):
        raise PydanticCustomError(
            "kind",
            "{kind} is not a kind: resourceTypes match an object's kind as it is written, "
            "such as Deployment or ConfigMap",
            {"kind": repr(kind)},
        )
    return kind


def _component_type(component_type: str) -> str:
    if component_type not in COMPONENT_PROPERTIES:
        raise PydanticCustomError(
            "component_type",
            "{type} is not supported (supported: {supported})",
            {"type": json.dumps(component_type), "supported": ", ".join(COMPONENT_PROPERTIES)},
        )
    return component_type


FieldPath = Annotated[str, AfterValidator(_field_path)]
Kind = Annotated[
    str, AfterValidator(_kind), WithJsonSchema({"type": "string", "pattern": f"^{_KIND.pattern}$"})
]
ComponentType = Annotated[
    str,
    AfterValidator(_component_type),
    WithJsonSchema({"type": "string", "enum": list(COMPONENT_PROPERTIES)}),
]
_SELECTOR_FIELDS = "componentNames, componentTypes, resourceTypes, resourceNames"


class ApplyOnceSelector(Described):
    """Which objects a rule is about (KubeVela's `ResourcePolicyRuleSelector`): those that
    match every field given."""

    component_names: Annotated[list[NonEmpty], Field(min_length=1)] | None = None
    """Objects of these components."""
    component_types: Annotated[list[ComponentType], Field(min_length=1)] | None = None
    """Objects of components of these types."""
    resource_types: Annotated[list[Kind], Field(min_length=1)] | None = None
    """Objects of these kinds, such as Deployment."""
    resource_names: Annotated[list[NonEmpty], Field(min_length=1)] | None = None
    """Objects of these names (`metadata.name`)."""

    @model_validator(mode="after")
    def _selects(self) -> Self:
        if not any(
            (self.component_names, self.component_types, self.resource_types, self.resource_names)
        ):
            raise PydanticCustomError(
                "selector", f"selects nothing: give at least one of {_SELECTOR_FIELDS}"
            )
        return self

    def matches(self, component: str, component_type: str | None, kind: str, name: str) -> bool:
        return all(
            wanted is None or value in wanted
            for wanted, value in (
                (self.component_names, component),
                (self.component_types, component_type),
                (self.resource_types, kind),
                (self.resource_names, name),
            )
        )


class ApplyOnceStrategy(Described):
    """What of the selected objects is left alone, and when."""

    path: list[FieldPath] = Field(min_length=1)
    """Fields left alone once applied, as KubeVela writes them: `spec.replicas`,
    `spec.template.spec.containers[0].resources`, `metadata.labels[app.kubernetes.io/name]`.
    A path covers every field below it; `*` is the whole object."""
    affect: Literal["onUpdate", "onStateKeep", "always"] = "always"
    """`onStateKeep`: a change on the cluster is shown as drift but not healed, and a new
    revision applies the chart's value again. `onUpdate`: a change is healed, but a new
    revision keeps the live value. `always`: both."""


class ApplyOnceRule(Described):
    """Some objects, and what of them is left alone."""

    selector: ApplyOnceSelector
    """The objects this rule is about; of several rules, the first that matches decides."""
    strategy: ApplyOnceStrategy
    """What of them is left alone, and when."""


def _rules(rules: list[ApplyOnceRule]) -> list[ApplyOnceRule]:
    if not rules:
        raise PydanticCustomError(
            "rules",
            "must not be empty: leave rules out to leave every object alone, or add a rule",
        )
    return rules


class ApplyOnceProperties(Described):
    """KubeVela's `apply-once` policy: objects, or fields of objects, applied once and then
    left alone (shown as drift, never healed)."""

    enable: bool = False
    """`false`: the policy is off, and every object is kept as applied."""
    rules: Annotated[list[ApplyOnceRule], AfterValidator(_rules)] | None = None
    """Absent: every object is left alone once applied (a new revision is still applied in
    full). Present: only what the rules select."""


# --- the policy in force -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyOnce:
    """An application's apply-once policies, merged as KubeVela merges them, asked about
    one object at a time by the component that rendered it, its kind and its name."""

    enabled: bool = False
    rules: tuple[ApplyOnceRule, ...] | None = None
    """`None`: no policy gave rules, so an enabled policy covers every object."""
    component_types: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The type of each component, for `componentTypes` selectors."""

    @classmethod
    def merged(
        cls, policies: Iterable[ApplyOnceProperties], component_types: Mapping[str, str]
    ) -> ApplyOnce:
        """Several policies as one: enabled if any is, their rules in the order written
        (KubeVela's `ParsePolicy`)."""
        enabled, rules = False, None
        for policy in policies:
            enabled = enabled or policy.enable
            if policy.rules is not None:
                rules = (*(rules or ()), *policy.rules)
        return cls(enabled, rules, dict(component_types))

    def paths(self, component: str, kind: str, name: str) -> tuple[str, ...]:
        """Field paths of this object that are applied once and then left alone: () for none
        (the object is kept true as usual), ("*",) for the whole object. A drift there is
        shown, never healed; a heal of the object's other fields keeps the live values
        here (`keep_live`)."""
        return self._paths(component, kind, name, "onStateKeep")

    def on_update(self, component: str, kind: str, name: str) -> tuple[str, ...]:
        """Field paths of this object whose live values a new revision keeps instead of
        applying its own (`keep_live`): () for none, ("*",) for the whole object."""
        return self._paths(component, kind, name, "onUpdate")

    def leaves_alone(self, component: str, kind: str, name: str, path: str) -> bool:
        """Whether a difference at `path` is left alone. `path` is dotted with list items by
        index, as KubeVela writes strategy paths: `spec.replicas`,
        `spec.template.spec.containers[0].image`. A rule path covers itself and every path
        below it; `*` covers everything. `ValueError` if `path` is not a field path."""
        parts = path_parts(path)
        return any(_covers(path_parts(rule), parts) for rule in self.paths(component, kind, name))

    def _paths(self, component: str, kind: str, name: str, phase: Phase) -> tuple[str, ...]:
        if not self.enabled:
            return ()
        if self.rules is None:
            # KubeVela skips the state keep of such an application and applies updates fully.
            return (WHOLE,) if phase == "onStateKeep" else ()
        component_type = self.component_types.get(component)
        rule = next(
            (r for r in self.rules if r.selector.matches(component, component_type, kind, name)),
            None,
        )
        if rule is None or rule.strategy.affect not in (phase, "always"):
            return ()
        paths = tuple(rule.strategy.path)
        return (WHOLE,) if WHOLE in paths else paths


# --- keeping live values -------------------------------------------------------------------------

_ABSENT: Any = object()


def keep_live(
    manifest: Mapping[str, Any], live: Mapping[str, Any] | None, paths: tuple[str, ...]
) -> dict[str, Any]:
    """`manifest` with the live object's values at `paths` (from `ApplyOnce.paths` for a
    heal, `ApplyOnce.on_update` for a new revision), to be applied in its place.

    At a path the manifest sets, the live value replaces it, but within maps only at the
    keys the manifest sets: a key only others set is not taken into the manifest, where a
    forced apply would take it over from them. A path only the live object has is copied
    as it is; a path absent in `live` (or `live` absent: the object is new) stays as the
    manifest has it, and so does one the manifest has no place for (a list too short). `*`
    is the whole object: every field the manifest sets, with its live value.
    Neither argument is changed."""
    kept = copy.deepcopy(dict(manifest))
    if live is None:
        return kept
    for path in paths:
        parts = path_parts(path)
        have = _value_at(live, parts)
        if have is not _ABSENT:
            kept = _with_live(kept, have, parts)
    return kept


def _value_at(node: Any, parts: Sequence[Part]) -> Any:
    for part in parts:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return _ABSENT
        elif not isinstance(node, Mapping) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _with_live(want: Any, have: Any, parts: Sequence[Part]) -> Any:
    """`want` with the live value `have` put at `parts` below it; maps the path needs are
    made, but `_ABSENT` (or `want` unchanged) where it would need a list item."""
    if not parts:
        return _overlay(want, have)
    part, rest = parts[0], parts[1:]
    if isinstance(part, int):
        if not isinstance(want, list) or part >= len(want):
            return want
        return [*want[:part], _with_live(want[part], have, rest), *want[part + 1 :]]
    if want is _ABSENT:
        if any(isinstance(p, int) for p in rest):
            return _ABSENT
        want = {}
    if not isinstance(want, dict):
        return want
    inner = _with_live(want.get(part, _ABSENT), have, rest)
    return want if inner is _ABSENT else {**want, part: inner}


def _overlay(want: Any, have: Any) -> Any:
    """`have` where `want` sets something; maps key by key, the manifest's keys only."""
    if isinstance(want, Mapping) and isinstance(have, Mapping):
        return {
            key: _overlay(value, have[key]) if key in have else value for key, value in want.items()
        }
    return copy.deepcopy(have)
