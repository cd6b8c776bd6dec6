"""Whether server-side applying a manifest would change a live object's pod template.

Re-applying what a cluster already has is a no-op, but knowing that *before* applying
(is a rollout, a canary, due?) cannot be a plain comparison of JSON: the API server
adds defaults to what we applied, rewrites quantities ("0.5" becomes "500m"), leaves
out false, 0 and empty values (`omitempty`), keeps fields that other managers own, and
removes fields our manager applied before and no longer sets. So two questions are
asked: does the live object already have every value the manifest sets (`covers`), and
does the manifest still set every field our manager owns (`owned_fields`, from
`metadata.managedFields`)?

Items of associative lists are matched by their merge keys (containers and env by
name, ports by number and protocol ...), so a reordering alone is no change. Those keys
are the pod template's (PodTemplateSpec), the one part of an object whose change
replaces pods: compare at a path that holds one (`POD_TEMPLATE` for Deployments,
StatefulSets, DaemonSets, ReplicaSets and Jobs). Other parts of objects have lists of
the same names with other keys (a Service's ports are keyed by port, not containerPort).

Pure: no I/O, and no import of anything that does, so pure planning code can use it.
What a change means for a release is the caller's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from clusters.quantity import parse_quantity

# The field manager of every apply of ours (clusters.apply uses it): the owner of the
# fields we set. Defined here rather than there so that pure callers can ask about our
# fields without importing a cluster client.
FIELD_MANAGER = "flotilla"

# Where the pod template of the workload kinds lives.
POD_TEMPLATE: tuple[str, ...] = ("spec", "template")

# Merge keys of the pod template's associative lists (Kubernetes' `patchMergeKey`s).
_MERGE_KEYS = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "protocol"),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
    "schedulingGates": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
# Key fields the API server defaults when a manifest leaves them out.
_KEY_DEFAULTS = {"protocol": "TCP"}
# Maps whose values, and fields which, are resource quantities.
_QUANTITY_MAPS = frozenset({"limits", "requests", "overhead"})
_QUANTITY_FIELDS = frozenset({"sizeLimit", "divisor"})


def changes(
    live: Mapping[str, Any],
    new: Mapping[str, Any],
    *,
    at: Sequence[str],
    manager: str = FIELD_MANAGER,
) -> bool:
    """Whether server-side applying `new` as `manager` changes what `live` has at the
    field path `at`. `live` is the object as a GET returns it: a `ClusterCache` copy has
    no managedFields, and without them a field that `new` no longer sets goes unnoticed."""
    before, after = _below(live, at), _below(new, at)
    if not covers(before, after):
        return True
    owned: Any = owned_fields(live, manager)
    for name in at:
        owned = owned.get(f"f:{name}") if isinstance(owned, Mapping) else None
    return isinstance(owned, Mapping) and _drops(owned, after)


def covers(live: Any, new: Any) -> bool:
    """Whether `live` already has every value `new` sets. Fields only `live` has (defaults,
    others' fields) do not count; quantities compare by value; a false, 0 or empty value
    in `new` equals an absent one in `live`. Lists with merge keys match items by key,
    other lists item by item."""
    return _covers(live, new)


def owned_fields(live: Mapping[str, Any], manager: str = FIELD_MANAGER) -> Mapping[str, Any] | None:
    """The fields `manager` last applied to `live` (the `fieldsV1` set of its Apply entry in
    `metadata.managedFields`; not those of a subresource such as status), if it has."""
    for entry in (live.get("metadata") or {}).get("managedFields") or ():
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            fields = entry.get("fieldsV1")
            return fields if isinstance(fields, Mapping) else None
    return None


# ---------------------------------------------------------------------------- helpers


def _below(obj: Mapping[str, Any], path: Sequence[str]) -> Any:
    found: Any = obj
    for name in path:
        found = (found.get(name) if isinstance(found, Mapping) else None) or {}
    return found


def _covers(live: Any, new: Any, key: str = "", parent: str = "") -> bool:
    """`covers`, knowing the field name (`key`) and its parent's, which say how to compare."""
    if isinstance(new, Mapping):
        if live is not None and not isinstance(live, Mapping):
            return False
        return all(_covers((live or {}).get(k), v, k, key) for k, v in new.items())
    if isinstance(new, list):
        if live is not None and not isinstance(live, list):
            return False
        items = live or []
        if key in _MERGE_KEYS:
            return all(
                isinstance(item, Mapping)
                and _covers(_keyed(items, _key_of(item, key)), item, "", key)
                for item in new
            )
        return len(items) == len(new) and all(map(_covers, items, new))
    if new is None:
        return True
    if live is None:
        return not new
    if parent in _QUANTITY_MAPS or key in _QUANTITY_FIELDS:
        return _same_quantity(live, new)
    return bool(live == new)


def _same_quantity(live: Any, new: Any) -> bool:
    """Equal values; what is no quantity at all must be equal as written."""
    before, after = parse_quantity(live), parse_quantity(new)
    if before is None or after is None:
        return bool(live == new)
    return before == after


def _key_of(item: Mapping[str, Any], list_name: str) -> dict[str, Any]:
    return {f: item.get(f, _KEY_DEFAULTS.get(f)) for f in _MERGE_KEYS[list_name]}


def _keyed(items: Sequence[Any], key: Mapping[str, Any]) -> Any:
    """The item of an associative list with merge key `key` (defaulted key fields match)."""
    for item in items:
        if isinstance(item, Mapping) and all(
            item.get(field, _KEY_DEFAULTS.get(field)) == value for field, value in key.items()
        ):
            return item
    return None


def _drops(owned: Mapping[str, Any], new: Any) -> bool:
    """Whether `new` lacks a field of `owned`, a managedFields `fieldsV1` set: `f:<field>`,
    `k:<merge key as JSON>` for an item of an associative list, `v:<value>` for a set."""
    for entry, below in owned.items():
        kind, _, name = entry.partition(":")
        if kind == "f":
            child = new.get(name) if isinstance(new, Mapping) else None
        elif kind == "k":
            child = _keyed(new, json.loads(name)) if isinstance(new, list) else None
        elif kind == "v":
            value = json.loads(name)
            child = value if isinstance(new, list) and value in new else None
        else:  # "." is the node itself; "i:" items belong to atomic lists, owned whole.
            continue
        if child is None or (below and _drops(below, child)):
            return True
    return False
