"""Editing a test's base document at a dotted path: how the format tests make each wrong
or missing field of an otherwise valid Application."""

from __future__ import annotations

import copy
from typing import Any


def edited(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`base` with `value` at a dotted `path` (list indexes as numbers); `...` deletes, and
    an index one past a list's end appends."""
    doc = copy.deepcopy(base)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    elif isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value
    return doc
