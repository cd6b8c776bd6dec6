"""How read commands print: a table for people, JSON or YAML for scripts (`-o`)."""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


# Piped output is read by scripts and grep: never truncate a column to fit 80 characters.
console = Console()
if not console.is_terminal:
    console = Console(width=250)
# One message, one line: scripts grep stderr, so never wrap it.
errors = Console(stderr=True, soft_wrap=True)


def emit(data: Any, fmt: Format, table: Callable[[Any], Any] | None = None) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    elif fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
    elif table is not None:
        console.print(table(data))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


def grid(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> Table:
    """A kubectl-like table: upper-case headers, no borders."""
    out = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for column in columns:
        out.add_column(column.upper())
    for row in rows:
        out.add_row(*row)
    return out


def ago(timestamp: str | None) -> str:
    """'12s', '5m', '3h', '2d' since an RFC 3339 UTC timestamp, like kubectl's AGE."""
    if not timestamp:
        return "never"
    then = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


HEALTH_STYLE = {
    "Healthy": "green",
    "Progressing": "yellow",
    "Suspended": "blue",
    "Degraded": "red",
    "Missing": "red",
    "Unreachable": "red",
    "Unauthorized": "red",
    "NotReady": "yellow",
    "Unknown": "dim",
}


def health(value: str) -> str:
    style = HEALTH_STYLE.get(value, "")
    return f"[{style}]{value}[/{style}]" if style else value
