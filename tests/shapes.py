"""Holding an answer of the hub against the shape the README documents for it.

The README's "JSON shapes" block lists each shape's fields; hub/model/views.py types them.
`assert_shape` walks a real answer and fails on any field missing or extra, at any depth.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

from hub.model.views import SHAPES

README = Path(__file__).resolve().parent.parent / "README.md"


def documented_shapes() -> dict[str, list[str]]:
    """Shape name -> field names, from the README's block under "JSON shapes"."""
    text = README.read_text()
    block = re.search(r"### JSON shapes.*?```text\n(.*?)```", text, re.S)
    assert block is not None, "README.md has no JSON shapes block"
    shapes: dict[str, list[str]] = {}
    for line in block[1].splitlines():
        if not line.strip():
            continue
        name, _, fields = line.partition(" ")
        depth = 0
        parts, current = [], ""
        for char in fields:  # split on the commas outside parentheses
            depth += char == "("
            depth -= char == ")"
            if char == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
        shapes[name] = [re.match(r"\s*(\w+)", part)[1] for part in parts]  # type: ignore[index]
    return shapes


def assert_shape(value: Any, shape: str | type[Any], where: str = "$") -> None:
    """`value` has exactly the fields of `shape` (a SHAPES name or a TypedDict), deeply."""
    typed = SHAPES[shape] if isinstance(shape, str) else shape
    assert isinstance(value, dict), f"{where}: expected an object, got {type(value).__name__}"
    hints = get_type_hints(typed)
    assert set(value) == set(hints), (
        f"{where}: fields {sorted(set(value) ^ set(hints))} differ from {typed.__name__}"
    )
    for key, hint in hints.items():
        _check(value[key], hint, f"{where}.{key}")


def _check(value: Any, hint: Any, where: str) -> None:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(hint):
            return
        hint = next(a for a in get_args(hint) if a is not type(None))
        origin = get_origin(hint)
    if is_typeddict(hint):
        assert_shape(value, hint, where)
    elif origin is list:
        assert isinstance(value, list), f"{where}: expected a list"
        for index, item in enumerate(value):
            _check(item, get_args(hint)[0], f"{where}[{index}]")
