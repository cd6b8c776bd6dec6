"""Whether a new revision changes a workload's pod template, i.e. whether a canary is due."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from hub.canary.objects import FIELD_MANAGER, WORKLOAD_KINDS

# --- does the pod template change? --------------------------------------------------------------


def template_changed(
    live: Mapping[str, Any] | None, new: Mapping[str, Any], *, manager: str = FIELD_MANAGER
) -> bool:
    """Whether applying `new` changes the pod template of the `live` workload, i.e. whether
    its pods would be replaced and a canary is due. False when there is no live workload
    (a first deploy is a plain apply) and for kinds other than Deployment and StatefulSet.

    Two checks, because the API server adds defaults to what we applied and keeps fields
    that others own: every field `new` sets must have that value live (extra live fields,
    such as defaults or `pod-template-hash`, do not count; resource quantities compare by
    value, so "0.5" equals "500m"; false, 0 and empty values equal absent ones, as
    `omitempty` drops them), and every field our field manager applied before
    (`metadata.managedFields`) must still be in `new`, because server-side apply removes
    the ones that are not. List items are matched by their merge keys (containers and env
    by name, ports by number and protocol, ...), so a reordering alone is no change.
    """
    if live is None or new.get("kind") not in WORKLOAD_KINDS:
        return False
    before = (live.get("spec") or {}).get("template") or {}
    after = (new.get("spec") or {}).get("template") or {}
    if not _covers(before, after):
        return True
    owned = _owned_template(live, manager)
    return owned is not None and _drops(owned, after)


# Merge keys of the pod template's associative lists (Kubernetes' `patchMergeKey`s).
_LIST_KEYS = {
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
_QUANTITY = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))(?:[eE]([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?"
)
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{
        suffix: Decimal(1024) ** (i + 1)
        for i, suffix in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))
    },
}


def _covers(live: Any, new: Any, key: str = "", parent: str = "") -> bool:
    """Whether `live` has every value `new` sets (see `template_changed`)."""
    if isinstance(new, Mapping):
        if live is not None and not isinstance(live, Mapping):
            return False
        return all(_covers((live or {}).get(k), v, k, key) for k, v in new.items())
    if isinstance(new, list):
        if live is not None and not isinstance(live, list):
            return False
        items = live or []
        if key in _LIST_KEYS:
            return all(_covers(_keyed(items, _key_of(item, key)), item, "", key) for item in new)
        return len(items) == len(new) and all(map(_covers, items, new))
    if new is None:
        return True
    if live is None:
        return not new
    if parent in _QUANTITY_MAPS or key in _QUANTITY_FIELDS:
        return _quantity(live) == _quantity(new)
    return bool(live == new)


def _key_of(item: Mapping[str, Any], list_name: str) -> dict[str, Any]:
    return {f: item.get(f, _KEY_DEFAULTS.get(f)) for f in _LIST_KEYS[list_name]}


def _keyed(items: Sequence[Any], key: Mapping[str, Any]) -> Any:
    """The item of an associative list with merge key `key` (defaulted key fields match)."""
    for item in items:
        if isinstance(item, Mapping) and all(
            item.get(field, _KEY_DEFAULTS.get(field)) == value for field, value in key.items()
        ):
            return item
    return None


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    match = _QUANTITY.fullmatch(str(value))
    if match is None:
        return None
    number, exponent, suffix = match.groups()
    scale = Decimal(10) ** int(exponent) if exponent else _SUFFIX.get(suffix, Decimal(1))
    return Decimal(number) * scale


def _owned_template(live: Mapping[str, Any], manager: str) -> Mapping[str, Any] | None:
    """The pod-template fields `manager` last applied, from `metadata.managedFields`."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            template = entry.get("fieldsV1", {}).get("f:spec", {}).get("f:template")
            return template if isinstance(template, Mapping) else None
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
