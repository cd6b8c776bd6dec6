"""`flotilla events`: what the engine did, as a list or as a stream."""

import json
import sys
from typing import Annotated, Any
from urllib.parse import urlencode

import typer

from hub.cli import output
from hub.cli.base import OutputOption, app, call, run
from hub.cli.client import HubClient
from hub.cli.completion import complete_apps
from hub.cli.output import Format, grid


@app.command()
def events(
    application: Annotated[
        str | None,
        typer.Argument(
            help="Application name (default: every application).", autocompletion=complete_apps
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Go on printing new events until Ctrl-C.")
    ] = False,
    after: Annotated[int, typer.Option(help="Only events after this id.")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many past events.")] = 100,
    output_format: OutputOption = Format.table,
) -> None:
    """What the engine did, as a list or a stream (`--follow`).

    Every transition it makes: steps started, targets applied, canary steps, pauses,
    resumes, analysis verdicts, rollbacks.

    Each event has an `id`, the time, and the application, revision, step, cluster and
    component it concerns where they apply. `-o json` prints one JSON object per line,
    so `flotilla events -f -o json | jq -r .message` works; `--after ID` goes on from an
    event seen before. Events are kept per application up to a count and an age (`serve
    --help`).
    """
    query = {"after": after, "limit": limit} | ({"app": application} if application else {})
    path = f"/api/v1/events?{urlencode(query)}"
    if not follow:
        found = run(call("GET", path))["events"]
        if output_format is Format.table:
            output.console.print(_table(found))
        else:
            _emit_each(found, output_format)
        return
    try:
        run(lambda: _follow(f"/api/v1/events/stream?{urlencode(query)}", output_format))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _follow(path: str, output_format: Format) -> None:
    if output_format is Format.table:
        output.console.print(_table([]))  # the header, once
    for event in HubClient.from_home().lines(path):
        if output_format is Format.table:
            output.console.print(_table([event], header=False))
        else:
            _emit_each([event], output_format)


def _emit_each(found: list[dict[str, Any]], output_format: Format) -> None:
    """One JSON object a line (for jq), or one YAML document per event."""
    for event in found:
        if output_format is Format.json:
            sys.stdout.write(json.dumps(event) + "\n")
        else:
            output.emit(event, Format.yaml)
            sys.stdout.write("---\n")
    sys.stdout.flush()


def _table(found: list[dict[str, Any]], *, header: bool = True) -> Any:
    rows = [
        [
            str(e["id"]),
            e["at"] or "",
            e["app"],
            "" if e["revision"] is None else str(e["revision"]),
            e["step"] or "",
            e["cluster"] or "",
            e["message"],
        ]
        for e in found
    ]
    table = grid(["id", "time", "application", "rev", "step", "cluster", "message"], rows)
    table.show_header = header
    return table
