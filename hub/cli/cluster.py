"""`flotilla cluster ...`: join, list, show, labels, rename, detach."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from clusters import kubeconfig as kc
from hub.cli import output
from hub.cli.base import (
    OutputOption,
    app,
    call,
    raise_invalid,
    run,
)
from hub.cli.output import Format, ago, emit, grid
from placement.selectors import parse_labels

cluster_app = typer.Typer(help="Register, label and detach member clusters.", no_args_is_help=True)
labels_app = typer.Typer(help="Add or remove labels on a member cluster.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
cluster_app.add_typer(labels_app, name="labels")


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
    record = run(call("POST", "/api/v1/clusters", body))
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
    emit(run(call("GET", "/api/v1/clusters")), output_format, _cluster_table)


@cluster_app.command("show")
def cluster_show(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    output_format: Annotated[
        Format, typer.Option("--output", "-o", help="yaml (default) or json.")
    ] = Format.yaml,
) -> None:
    """One cluster in full, its kubeconfig with every credential redacted."""
    emit(run(call("GET", f"/api/v1/clusters/{name}")), output_format)


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
    record = run(call("PATCH", f"/api/v1/clusters/{name}/labels", {"add": add}))
    _print_labels(record, output_format)


@labels_app.command("del")
def labels_del(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    keys: Annotated[list[str], typer.Argument(help="Label keys to remove.")],
    output_format: OutputOption = Format.table,
) -> None:
    """Remove labels by key."""
    record = run(call("PATCH", f"/api/v1/clusters/{name}/labels", {"remove": keys}))
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
    run(call("POST", f"/api/v1/clusters/{old}/rename", {"name": new}))
    output.console.print(f"cluster {old} renamed to {new}")


@cluster_app.command("detach")
def cluster_detach(name: Annotated[str, typer.Argument(help="Cluster name.")]) -> None:
    """Forget a member cluster. Nothing is deleted on the cluster itself."""
    run(call("DELETE", f"/api/v1/clusters/{name}"))
    output.console.print(f"cluster {name} detached")
