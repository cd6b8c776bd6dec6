"""Application commands: plan, up, status, ls, history, delete."""

import contextlib
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from hub.cli import output, views
from hub.cli.base import (
    AppArgument,
    FileOption,
    OutputOption,
    WaitOption,
    app,
    call,
    read_app,
    run,
)
from hub.cli.client import HubClient
from hub.cli.output import Format, emit
from hub.errors import InvalidInput
from hub.model.phases import AppPhase


@app.command()
def plan(
    file: FileOption,
    output_format: OutputOption = Format.table,
    explain: Annotated[
        str | None,
        typer.Option(
            help="A values key (e.g. replicaCount): every layer that set it, per cluster."
        ),
    ] = None,
) -> None:
    """Show what `up` would do, changing nothing.

    Per step and cluster: the namespace, the values that differ from the chart's defaults
    and which policy set them, the objects Helm renders, the objects of a release that
    `up` would delete (`prune`), and, for a first deploy, the fields of objects on the
    cluster that another field manager (helm, kubectl) owns, which only
    `up --take-ownership` takes over (the clusters are asked)."""
    body = read_app(file) | {"explain": explain}
    view = run(call("POST", "/api/v1/plan", body))
    emit(view, output_format, lambda v: _plan_printed(v, explain))
    if any(t["error"] for s in view["steps"] for t in s["targets"]):
        raise typer.Exit(InvalidInput.exit_code)


def _plan_printed(view: dict[str, Any], explain: str | None) -> Any:
    """The plan's tree, then what `up` would delete, per target, in red: a deletion is the
    one change a plan must not bury in a tree."""
    from rich.console import Group
    from rich.text import Text

    from hub.model.views import TAKE_OVER

    lines = Text()
    for step in view["steps"]:
        for target in step["targets"]:
            if target["prune"]:
                lines.append(
                    f"{target['cluster']}/{target['component']}: up would delete "
                    f"{', '.join(target['prune'])}\n",
                    style="red",
                )
            for owned in target["takeOver"]:
                lines.append(f"{target['cluster']}: {owned}; {TAKE_OVER}\n", style="yellow")
    return Group(views.plan_tree(view, explain), lines)


@app.command()
def up(
    file: FileOption,
    wait: WaitOption = False,
    allow_prune: Annotated[
        bool,
        typer.Option(
            help="Deploy even if the revision deletes every object of a release on a "
            "cluster, or more than half of them (`plan` lists what it deletes)."
        ),
    ] = False,
    take_ownership: Annotated[
        bool,
        typer.Option(
            help="Deploy even if objects of a first deploy on a cluster have fields that "
            "another field manager owns (helm, kubectl): Flotilla becomes their owner."
        ),
    ] = False,
    output_format: OutputOption = Format.table,
) -> None:
    """Deploy an application: a new revision if the file changed. The hub runs it.

    The file is checked completely first (spec, placement, charts, values schema, render);
    if anything is wrong nothing is stored or deployed. A revision that would delete every
    object of a release on a cluster, or more than half of them, is refused with the
    objects named (exit 2, nothing stored) unless `--allow-prune` is given. So is a first
    deploy onto objects whose fields another field manager owns (what `helm install` or
    `kubectl apply` put there), one line per object, unless `--take-ownership` is given.

    Exit codes with `--wait`: 0 finished or suspended, 1 failed.
    """
    body = read_app(file) | {"allowPrune": allow_prune, "takeOwnership": take_ownership}
    result = run(call("POST", "/api/v1/apps", body))
    if output_format is not Format.table:
        emit(result, output_format)
    else:
        output.console.print(result["message"])
    if wait:
        follow(result["name"], result["revision"])


POLL_INTERVAL = 0.5


def follow(name: str, revision: int) -> None:
    """Progress until the revision reaches a phase where a human or nothing acts: redrawn
    in place on a terminal; elsewhere (a pipe, a CI log) a line each time something
    changed, so that a log shows what happened and when without a frame per poll."""
    from rich.live import Live

    if output.console.is_terminal:
        with Live(console=output.console, refresh_per_second=4, transient=False) as live:
            status = run(
                lambda: _settled(name, revision, lambda s: live.update(views.progress_table(s)))
            )
    else:
        log = views.ProgressLog()
        status = run(lambda: _settled(name, revision, lambda s: _print_lines(log.changes(s))))
    if status["phase"] == AppPhase.FAILED:
        raise typer.Exit(1)


def _settled(name: str, revision: int, show: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Poll the status, showing each, until `revision` is finished or waits for a person."""
    client = HubClient.from_home()
    while True:
        status: dict[str, Any] = client.request("GET", f"/api/v1/apps/{name}")
        show(status)
        if status["revision"] == revision and AppPhase(status["phase"]).settled:
            return status
        time.sleep(POLL_INTERVAL)


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        output.console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def status(
    name: AppArgument,
    tree: Annotated[
        bool, typer.Option("--tree", help="Show every object, healthy ones too.")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep refreshing (Ctrl-C to stop).")
    ] = False,
    output_format: OutputOption = Format.table,
) -> None:
    """An application as one tree, its health rolled up.

    Step -> cluster -> release -> objects; healthy objects are counted, not listed,
    unless `--tree`.

    `-o json` has a stable shape for scripts (see the README); an unreachable cluster
    shows as such with when it was last seen.
    """
    path = f"/api/v1/apps/{name}"
    if not watch:
        emit(
            run(call("GET", path)),
            output_format,
            lambda s: views.status_tree(s, every_object=tree),
        )
        return
    from rich.live import Live

    def refresh(live: Live) -> None:
        client = HubClient.from_home()
        while True:
            live.update(views.status_tree(client.request("GET", path), every_object=tree))
            time.sleep(1.0)

    with (
        Live(console=output.console, refresh_per_second=4) as live,
        contextlib.suppress(KeyboardInterrupt),
    ):
        run(lambda: refresh(live))


@app.command("ls")
def list_apps(output_format: OutputOption = Format.table) -> None:
    """Applications with their revision, workflow phase and health."""
    emit(run(call("GET", "/api/v1/apps")), output_format, views.apps_table)


@app.command()
def history(name: AppArgument, output_format: OutputOption = Format.table) -> None:
    """Revisions of an application: publishVersion, when, outcome."""
    emit(run(call("GET", f"/api/v1/apps/{name}/history")), output_format, views.history_table)


@app.command()
def delete(
    name: AppArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete an application from every cluster.

    Everything it applied there is removed, then the hub's records of it."""
    if not yes and not typer.confirm(f"delete {name} from every cluster?"):
        raise typer.Exit(1)
    run(call("DELETE", f"/api/v1/apps/{name}"))
    output.console.print(f"application {name} deleted")
