"""Scalar types of the format: names, durations, weights, replica counts.

Durations use Go's `time.ParseDuration` syntax because KubeVela and kruise read them so.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    PlainValidator,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from placement.names import (
    DNS_LABEL_MAX,
    QUALIFIED_NAME,
)

# --- scalar types ----------------------------------------------------------------------------

# Go's time.ParseDuration units (KubeVela and kruise read durations with it); two spellings
# of micro, as in Go.
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(
    r"(\d+(?:\.\d*)?|\.\d+)(" + "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True)) + ")"
)
_DURATION = re.compile(f"(?:{_DURATION_PART.pattern})+")
_PERCENT = re.compile(r"(\d{1,3})%")


def _name(name: str) -> str:
    if len(name) > DNS_LABEL_MAX or not QUALIFIED_NAME.fullmatch(name):
        raise PydanticCustomError(
            "name",
            "{name} is not a valid name (letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit, at most 63 characters)",
            {"name": repr(name)},
        )
    return name


def _non_empty(text: str) -> str:
    if not text:
        raise PydanticCustomError("empty", "must not be empty")
    return text


def _duration(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (value == "0" or _DURATION.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "duration", "expected a duration such as 30s, 5m or 1h30m, or a number of seconds"
    )


def duration_seconds(duration: int | str) -> float:
    """Seconds in a validated `Duration`: Go's `time.ParseDuration` syntax, or plain seconds."""
    if isinstance(duration, int):
        return float(duration)
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def _weight(weight: int) -> int:
    if not 1 <= weight <= 100:
        raise PydanticCustomError("weight", "must be 1..100")
    return weight


def _replicas(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and (m := _PERCENT.fullmatch(value)) and 1 <= int(m[1]) <= 100:
        return value
    raise PydanticCustomError(
        "replicas", 'expected a number of pods (at least 1) or a percentage such as "20%"'
    )


Name = Annotated[str, AfterValidator(_name)]
NonEmpty = Annotated[str, AfterValidator(_non_empty)]
Duration = Annotated[
    int | str,
    PlainValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "description": "seconds"},
                {"type": "string", "pattern": f"^(0|{_DURATION.pattern})$"},
            ]
        }
    ),
]
Weight = Annotated[
    int, AfterValidator(_weight), WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 100})
]
Replicas = Annotated[
    int | str,
    PlainValidator(_replicas),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d{1,3}%$"},
            ]
        }
    ),
]


def type_of(value: Any) -> str | None:
    """The tag of a union chosen by `type`, so that an unknown type is refused by name."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None
