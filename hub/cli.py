"""`flotilla`: the command line. A thin edge: every command but `serve` is one hub call.

Verbs follow `vela` so KubeVela users feel at home. Every read command takes
`-o table|json|yaml`; every failure prints one line to stderr and exits non-zero with the
code of its FlotillaError (2 invalid input, 3 not found, 4 conflict, 5 cluster
unavailable, 6 no hub).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from clusters import kubeconfig as kc
from hub import output, views
from hub.client import HubClient
from hub.errors import FlotillaError, InvalidInput
from hub.home import DEFAULT_LISTEN, Home
from hub.output import Format, ago, emit, grid
from placement.selectors import parse_labels

T = TypeVar("T")

app = typer.Typer(
    name="flotilla",
    help="Deliver one Helm chart to many Kubernetes clusters: placement, fan-out, canaries, "
    "one status tree.\n\nStart a hub with `flotilla serve`, register clusters with "
    "`flotilla cluster join`, then `flotilla plan -f app.yaml` and `flotilla up -f app.yaml`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)
cluster_app = typer.Typer(help="Register, label and detach member clusters.", no_args_is_help=True)
labels_app = typer.Typer(help="Add or remove labels on a member cluster.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
cluster_app.add_typer(labels_app, name="labels")

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


async def _call(method: str, path: str, body: Any = None) -> Any:
    return await HubClient.from_home().call(method, path, body)


@app.command()
def serve(
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on; port 0 picks a free port.")
    ] = DEFAULT_LISTEN,
    probe_interval: Annotated[
        float, typer.Option(help="Seconds between health probes of each member cluster.")
    ] = 5.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    step_timeout: Annotated[
        float, typer.Option(help="Seconds a deploy step waits for its objects to be healthy.")
    ] = 300.0,
    fanout: Annotated[
        int, typer.Option(help="Clusters deployed at once when a step sets no parallelism.")
    ] = 32,
) -> None:
    """Run the hub: the store, the cluster prober and the HTTP API (until SIGTERM)."""
    from hub.server import serve as serve_hub

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(
        serve_hub(
            Home.default(),
            listen,
            probe_interval=probe_interval,
            step_timeout=step_timeout,
            fanout=fanout,
        )
    )


@cluster_app.command("join")
def cluster_join(
    kubeconfig: Annotated[Path, typer.Argument(help="Kubeconfig file of the cluster.")],
    context: Annotated[
        str | None, typer.Option(help="Context to use (default: its current-context).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name in Flotilla (default: the context name).")
    ] = None,
    labels: Annotated[str, typer.Option(help="Labels, k=v,k2=v2 (Kubernetes label syntax).")] = "",
    output_format: OutputOption = Format.table,
) -> None:
    """Register a member cluster. The hub contacts it first and stores nothing on failure.

    Token, client-certificate and exec-plugin credentials all work; file references in
    the kubeconfig are read now and stored with it, so the file may move afterwards.
    """
    try:
        config = kc.load_file(kubeconfig, context)
        parsed_labels = parse_labels(labels) if labels else {}
    except (kc.KubeconfigError, ValueError) as e:
        raise_invalid(str(e))
    body = {
        "kubeconfig": config.document,
        "source": str(kubeconfig),
        "name": name,
        "labels": parsed_labels,
    }
    record = run(_call("POST", "/api/v1/clusters", body))
    for warning in record.get("warnings", []):
        output.errors.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    if output_format is Format.table:
        output.console.print(
            f"cluster [bold]{record['name']}[/bold] joined: {record['server']} "
            f"{record['version']} {output.health(record['health'])}"
        )
    else:
        emit(record, output_format)


def _cluster_table(data: dict[str, Any]) -> Any:
    rows = [
        [
            c["name"],
            ",".join(f"{k}={v}" for k, v in sorted(c["labels"].items())) or "<none>",
            c["server"],
            c["version"],
            output.health(c["health"]),
            ago(c["lastSeen"]),
        ]
        for c in data["clusters"]
    ]
    return grid(["name", "labels", "server", "version", "health", "last seen"], rows)


@cluster_app.command("list")
def cluster_list(output_format: OutputOption = Format.table) -> None:
    """Member clusters with labels, API server, version, health and when last seen.

    Health comes from the hub's background probes, so this answers at once even when a
    cluster is down.
    """
    emit(run(_call("GET", "/api/v1/clusters")), output_format, _cluster_table)


@cluster_app.command("show")
def cluster_show(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    output_format: Annotated[
        Format, typer.Option("--output", "-o", help="yaml (default) or json.")
    ] = Format.yaml,
) -> None:
    """One cluster in full, its kubeconfig with every credential redacted."""
    emit(run(_call("GET", f"/api/v1/clusters/{name}")), output_format)


@labels_app.command("add")
def labels_add(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    labels: Annotated[list[str], typer.Argument(help="k=v pairs; an existing key is replaced.")],
    output_format: OutputOption = Format.table,
) -> None:
    """Add or replace labels, e.g. `flotilla cluster labels add prod-eu env=prod region=eu`."""
    try:
        add = parse_labels(",".join(labels))
    except ValueError as e:
        raise_invalid(str(e))
    record = run(_call("PATCH", f"/api/v1/clusters/{name}/labels", {"add": add}))
    _print_labels(record, output_format)


@labels_app.command("del")
def labels_del(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    keys: Annotated[list[str], typer.Argument(help="Label keys to remove.")],
    output_format: OutputOption = Format.table,
) -> None:
    """Remove labels by key."""
    record = run(_call("PATCH", f"/api/v1/clusters/{name}/labels", {"remove": keys}))
    _print_labels(record, output_format)


def _print_labels(record: dict[str, Any], output_format: Format) -> None:
    if output_format is Format.table:
        labels = ",".join(f"{k}={v}" for k, v in sorted(record["labels"].items()))
        output.console.print(f"cluster {record['name']} labels: {labels or '<none>'}")
    else:
        emit(record, output_format)


@cluster_app.command("rename")
def cluster_rename(
    old: Annotated[str, typer.Argument(help="Current name.")],
    new: Annotated[str, typer.Argument(help="New name.")],
) -> None:
    """Rename a member cluster (its labels, credentials and history stay)."""
    run(_call("POST", f"/api/v1/clusters/{old}/rename", {"name": new}))
    output.console.print(f"cluster {old} renamed to {new}")


@cluster_app.command("detach")
def cluster_detach(name: Annotated[str, typer.Argument(help="Cluster name.")]) -> None:
    """Forget a member cluster. Nothing is deleted on the cluster itself."""
    run(_call("DELETE", f"/api/v1/clusters/{name}"))
    output.console.print(f"cluster {name} detached")


def raise_invalid(message: str) -> Any:
    output.errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(InvalidInput.exit_code)


def main() -> None:
    app()


def _read_app(path: Path) -> dict[str, Any]:
    """The file is read here, where the user is; the hub validates its content."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise_invalid(f"{path}: no such file")
    except OSError as e:
        raise_invalid(f"{path}: cannot read ({type(e).__name__})")
    return {"source": str(path), "base": str(path.resolve().parent), "text": text}


@app.command()
def schema() -> None:
    """Print the JSON Schema of the Application format, for editors and CI linters."""
    from hub.spec import json_schema

    emit(json_schema(), Format.json)


FileOption = Annotated[
    Path, typer.Option("--file", "-f", help="Application file (KubeVela core.oam.dev/v1beta1).")
]
AppArgument = Annotated[str, typer.Argument(help="Application name.")]


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
    """Show what `up` would do, changing nothing: per step and cluster, the namespace, the
    values that differ from the chart's defaults and which policy set them, and the
    objects Helm renders."""
    body = _read_app(file) | {"explain": explain}
    view = run(_call("POST", "/api/v1/plan", body))
    emit(view, output_format, lambda v: views.plan_tree(v, explain))
    if any(t["error"] for s in view["steps"] for t in s["targets"]):
        raise typer.Exit(InvalidInput.exit_code)


@app.command()
def up(
    file: FileOption,
    wait: Annotated[
        bool, typer.Option(help="Follow progress until the workflow finishes, suspends or fails.")
    ] = False,
    output_format: OutputOption = Format.table,
) -> None:
    """Deploy an application: a new revision when the file changed, run by the hub.

    The file is checked completely first (spec, placement, charts, values schema, render);
    if anything is wrong nothing is stored or deployed. Exit codes with --wait: 0 finished
    or suspended, 1 failed.
    """
    result = run(_call("POST", "/api/v1/apps", _read_app(file)))
    if output_format is not Format.table:
        emit(result, output_format)
    else:
        output.console.print(result["message"])
    if wait:
        _follow(result["name"], result["revision"])


def _follow(name: str, revision: int) -> None:
    """Live progress until the revision reaches a phase where a human or nothing acts."""
    from rich.live import Live

    async def follow(live: Live | None) -> dict[str, Any]:
        client = HubClient.from_home()
        while True:
            status = await client.call("GET", f"/api/v1/apps/{name}")
            if live is not None:
                live.update(views.progress_table(status))
            settled = status["phase"] in ("succeeded", "failed", "suspended")
            if status["revision"] == revision and settled:
                return dict(status)
            await asyncio.sleep(0.5)

    if output.console.is_terminal:
        with Live(console=output.console, refresh_per_second=4, transient=False) as live:
            status = run(follow(live))
    else:
        status = run(follow(None))
        output.console.print(views.progress_table(status))
    if status["phase"] == "failed":
        raise typer.Exit(1)


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
    """The application as one tree: step -> cluster -> release -> objects, health rolled up.

    `-o json` has a stable shape for scripts (see the README); an unreachable cluster
    shows as such with when it was last seen.
    """
    path = f"/api/v1/apps/{name}"
    if not watch:
        emit(
            run(_call("GET", path)),
            output_format,
            lambda s: views.status_tree(s, every_object=tree),
        )
        return
    from rich.live import Live

    async def refresh(live: Live) -> None:
        client = HubClient.from_home()
        while True:
            live.update(views.status_tree(await client.call("GET", path), every_object=tree))
            await asyncio.sleep(1.0)

    with (
        Live(console=output.console, refresh_per_second=4) as live,
        contextlib.suppress(KeyboardInterrupt),
    ):
        run(refresh(live))


@app.command("ls")
def list_apps(output_format: OutputOption = Format.table) -> None:
    """Applications with their revision, workflow phase and health."""
    emit(run(_call("GET", "/api/v1/apps")), output_format, views.apps_table)


@app.command()
def history(name: AppArgument, output_format: OutputOption = Format.table) -> None:
    """Revisions of an application: publishVersion, when, outcome."""
    emit(run(_call("GET", f"/api/v1/apps/{name}/history")), output_format, views.history_table)


@app.command()
def delete(
    name: AppArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove everything the application applied on every cluster, then its records."""
    if not yes and not typer.confirm(f"delete {name} from every cluster?"):
        raise typer.Exit(1)
    run(_call("DELETE", f"/api/v1/apps/{name}"))
    output.console.print(f"application {name} deleted")


workflow_app = typer.Typer(
    help="Drive a running workflow: resume, suspend, restart, rollback.", no_args_is_help=True
)
app.add_typer(workflow_app, name="workflow")


@workflow_app.command("resume")
def workflow_resume(
    name: AppArgument,
    wait: Annotated[
        bool, typer.Option(help="Follow progress until the workflow finishes, suspends or fails.")
    ] = False,
) -> None:
    """Continue a suspended workflow: approve a suspend step or an `auto: false` deploy
    step, advance every cluster's paused canary to its next step together (or cut a timed
    pause short), or lift an operator's suspend. On a failed workflow: retry what failed."""
    result = run(_call("POST", f"/api/v1/apps/{name}/workflow/resume", {}))
    output.console.print(f"application {name} resumed ({result['resumed']})")
    if wait:
        _follow(name, result["revision"])


@workflow_app.command("suspend")
def workflow_suspend(name: AppArgument) -> None:
    """Pause a running workflow at the next step boundary."""
    run(_call("POST", f"/api/v1/apps/{name}/workflow/suspend", {}))
    output.console.print(f"application {name} will suspend at the next step")


@workflow_app.command("restart")
def workflow_restart(name: AppArgument) -> None:
    """Retry what failed in the current revision; what succeeded is kept."""
    run(_call("POST", f"/api/v1/apps/{name}/workflow/restart", {}))
    output.console.print(f"application {name} restarted")


@workflow_app.command("rollback")
def workflow_rollback(
    name: AppArgument,
    revision: Annotated[
        int | None, typer.Option(help="Revision to return to (default: the last that succeeded).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Follow progress until done.")] = False,
) -> None:
    """Re-apply an earlier revision to every target, pruning what later ones added."""
    result = run(_call("POST", f"/api/v1/apps/{name}/workflow/rollback", {"revision": revision}))
    output.console.print(result["message"])
    if wait:
        _follow(name, result["revision"])
