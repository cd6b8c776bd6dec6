"""The CLI's shared parts: the Typer app, `-o`, and the one adapter from a coroutine to a
hub call, which turns a FlotillaError into one line on stderr and its exit code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer import rich_utils

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
    # Typer's help and usage errors honour NO_COLOR for colours but keep bold and dim;
    # this is Typer's switch for plain text, like our own consoles (hub.cli.output).
    rich_utils.COLOR_SYSTEM = None


OutputOption = Annotated[
    Format, typer.Option("--output", "-o", help="table for people; json or yaml for scripts.")
]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one hub call; a FlotillaError becomes one line on stderr and its exit code."""
    try:
        return asyncio.run(coroutine)
    except FlotillaError as e:
        output.errors.print(f"[red]error:[/red] {e}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(e.exit_code) from None


async def call(method: str, path: str, body: Any = None) -> Any:
    return await HubClient.from_home().call(method, path, body)


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
