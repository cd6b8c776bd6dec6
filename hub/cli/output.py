"""How read commands print: a table for people, JSON or YAML for scripts (`-o`).

Imported by every command, so rich and YAML are not: `-o json` never loads them, and a
table loads rich's console and table only (not its Markdown, syntax or traceback parts).
The consoles are made on first use, from the environment the process started with.
"""

from __future__ import annotations

import enum
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.segment import Segment
    from rich.table import Table
    from rich.text import Text


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


NO_COLOR = os.environ.get("NO_COLOR", "") != ""
"""no-color.org: rich alone would drop the colours but keep bold and dim; whoever sets
NO_COLOR wants text without escape codes, so every console of ours then has no colour
system at all (Live still moves the cursor on a terminal)."""
_COLORS: Literal["auto"] | None = None if NO_COLOR else "auto"
PIPED_WIDTH = 250
"""Piped output is read by scripts and grep: unless COLUMNS says otherwise, do not fold
it to rich's 80 columns."""


@functools.cache
def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    out = Console(color_system=_COLORS)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(color_system=_COLORS, width=PIPED_WIDTH)
    # One message, one line: scripts grep stderr, so never wrap it.
    return out, Console(stderr=True, soft_wrap=True, color_system=_COLORS)


def __getattr__(name: str) -> Console:
    """`output.console` (stdout) and `output.errors` (stderr), made when first used."""
    if name == "console":
        return _consoles()[0]
    if name == "errors":
        return _consoles()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def emit(data: Any, fmt: Format, table: Callable[[Any], Any] | None = None) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    elif fmt is Format.table and table is not None:
        _consoles()[0].print(table(data))
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))


@functools.cache
def _grid_class() -> type[Table]:
    """`_Grid`, defined when the first table is drawn (it is a rich Table)."""
    from rich.segment import Segment
    from rich.table import Table

    class _Grid(Table):
        """A table whose lines end where their text ends. Rich pads every cell to its
        column's width, the last one too: one long cell would pad every other line of the
        table with as many spaces, which a terminal shows as wrapped blank lines and a CI
        log keeps."""

        def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
            rendered = cast(Iterable[Segment], super().__rich_console__(console, options))
            for line in Segment.split_lines(rendered):  # a Table yields segments only
                yield from _rstrip(line)
                yield Segment.line()

    def _rstrip(line: list[Segment]) -> list[Segment]:
        while line and not line[-1].text.rstrip():
            line.pop()
        if line:
            text, style, _ = line[-1]
            line[-1] = Segment(text.rstrip(), style)
        return line

    return _Grid


def grid(
    columns: Sequence[str], rows: Sequence[Sequence[str | Text]], *, one_line: bool = False
) -> Table:
    """A kubectl-like table: upper-case headers, no borders, never wider than the console.

    When the columns do not fit, the widest give way: their cells wrap at spaces onto
    more lines (a long message stays whole), and a word longer than its column is cut
    with `…`. `one_line` keeps each row one line (a live view): the last column gives
    way first, then every cell is cut. String cells are rich markup; text from the hub
    or the user goes in as Text.
    """
    out = _grid_class()(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for index, column in enumerate(columns, start=1):
        out.add_column(column.upper(), no_wrap=one_line and index < len(columns))
    for row in rows:
        out.add_row(*(_cell(value, one_line) for value in row))
    return out


def _cell(value: str | Text, one_line: bool) -> Text:
    """A cell cut to one line says so itself: rich narrows only the columns that may
    wrap, so the widest must stay one of those to give way first."""
    from rich.text import Text

    text = Text.from_markup(value) if isinstance(value, str) else value.copy()
    text.overflow, text.no_wrap = "ellipsis", one_line
    return text


def ago(timestamp: str | None) -> str:
    """'12s', '5m', '3h', '2d' since an RFC 3339 UTC timestamp, like kubectl's AGE."""
    if not timestamp:
        return "never"
    then = datetime.fromisoformat(timestamp)  # not strptime, which loads locale and calendar
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
