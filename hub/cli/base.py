"""The CLI's shared parts: the Typer app, `-o`, and the one adapter from a hub call to a
command's outcome, which turns a FlotillaError into one line on stderr and its exit code.

Every `flotilla` start imports this: what it imports at the top costs every command,
`--help` included, so the rest (rich, YAML, the hub's inside) waits until a command
needs it. tests/unit/test_cli_imports.py holds the line. For the same reason the command
modules have no `from __future__ import annotations`: Typer reads every command's
signature on every start, and annotations kept as strings are compiled and evaluated
again each time (half of what building the commands cost).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

from hub.cli import output
from hub.cli.client import HubClient
from hub.cli.completion import complete_apps, complete_clusters
from hub.cli.output import Format
from hub.errors import FlotillaError, InvalidInput

if TYPE_CHECKING:
    from typer._click.formatting import HelpFormatter
else:
    # click's formatter, or the copy in a Typer that carries its own click (0.28)
    HelpFormatter = typer.Context.formatter_class

T = TypeVar("T")

NON_BREAKING_HYPHEN = "\u2011"


class _Formatter(HelpFormatter):
    """click's help formatter, except that no line breaks at a hyphen: click's wrapper
    would split `--take-ownership`, `check-metrics` or `[default: flotilla-system]` over
    two lines. Hyphens stand in as non-breaking ones while the text is wrapped."""

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", NON_BREAKING_HYPHEN))

    def write_dl(
        self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        kept = [(term, text.replace("-", NON_BREAKING_HYPHEN)) for term, text in rows]
        super().write_dl(kept, col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(NON_BREAKING_HYPHEN, "-")


class _Context(typer.Context):
    formatter_class = _Formatter


class _Flotilla(TyperGroup):
    """The `flotilla` group: it and every command under it write help and usage errors
    with `_Formatter` (Typer builds the commands under it before it)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _plain_help(self)


def _plain_help(command: TyperCommand | TyperGroup) -> None:
    command.context_class = _Context
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


app = typer.Typer(
    name="flotilla",
    cls=_Flotilla,
    help="Deliver one Helm chart to many Kubernetes clusters: placement, fan-out, canaries, "
    "one status tree.\n\nStart a hub with `flotilla serve`, register clusters with "
    "`flotilla cluster join`, then `flotilla plan -f app.yaml` and `flotilla up -f app.yaml`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's own help and usage errors, plain text as kubectl's: Typer's rich panels load
    # rich's Markdown, traceback and layout modules, which cost a `--help` more than all
    # the rest of it. Help texts are written for click's formatter, which rewraps every
    # paragraph to the terminal; a paragraph after a `\b` line (a list, examples) is kept.
    rich_markup_mode=None,
)


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts.")
]


def run(work: Callable[[], T]) -> T:
    """Do one hub call (or a command's loop of them); a FlotillaError becomes one line on
    stderr and its exit code."""
    try:
        return work()
    except FlotillaError as e:
        output.errors.print(f"[red]error:[/red] {e}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


def call(method: str, path: str, body: Any = None) -> Callable[[], Any]:
    """One request to the hub, sent when `run` does it: finding the hub can fail too, and
    `run` is where failures become a line and an exit code."""
    return lambda: HubClient.from_home().request(method, path, body)


def raise_invalid(message: str) -> Any:
    output.errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(InvalidInput.exit_code)


def read_app(path: Path) -> dict[str, Any]:
    """The file is read here, where the user is; the hub validates its content."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise_invalid(f"{path}: no such file")
    except OSError as e:
        raise_invalid(f"{path}: cannot read ({type(e).__name__})")
    return {"source": str(path), "base": str(path.resolve().parent), "text": text}


FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="Application file (KubeVela core.oam.dev/v1beta1).")
]
AppArgument = Annotated[str, typer.Argument(help="Application name.", autocompletion=complete_apps)]
ClusterArgument = Annotated[
    str, typer.Argument(help="Cluster name.", autocompletion=complete_clusters)
]
WaitOption = Annotated[
    bool,
    typer.Option(
        help="Follow progress until the workflow finishes, suspends or fails: a line per "
        "cluster with its step, phase and canary (step, stage, share of traffic), redrawn "
        "on a terminal, printed as it changes elsewhere."
    ),
]
