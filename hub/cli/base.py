"""The CLI's shared parts: the Typer app, `-o`, and the one adapter from a hub call to a
command's outcome, which turns a FlotillaError into one line on stderr and its exit code.

Every `flotilla` start imports this: what it imports at the top costs every command,
`--help` included, so the rest (rich, YAML, the hub's inside) waits until a command
needs it. tests/unit/test_cli_imports.py holds the line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hub.cli import output
from hub.cli.client import HubClient
from hub.cli.completion import complete_apps, complete_clusters
from hub.cli.output import Format
from hub.errors import FlotillaError, InvalidInput

T = TypeVar("T")

app = typer.Typer(
    name="flotilla",
    help="Deliver one Helm chart to many Kubernetes clusters: placement, fan-out, canaries, "
    "one status tree.\n\nStart a hub with `flotilla serve`, register clusters with "
    "`flotilla cluster join`, then `flotilla plan -f app.yaml` and `flotilla up -f app.yaml`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
if output.NO_COLOR:
    # Typer's help and usage errors honour NO_COLOR for colours but keep bold and dim. Its
    # switch for plain text (rich_utils.COLOR_SYSTEM) is in the module that loads all of
    # rich, a Markdown parser too, which costs every start ~0.2 s; this variable, read
    # when Typer loads that module for a help or a usage error, gives the same plain text.
    os.environ.setdefault("_TYPER_FORCE_DISABLE_TERMINAL", "1")


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
