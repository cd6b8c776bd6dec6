"""`flotilla cluster ...`: join, list, show, labels, rename, detach.

`join` reads the kubeconfig where the user is (the files it names are theirs) and checks
the labels' syntax before the hub is asked; those parsers (YAML, pydantic's validators)
are imported by the commands that parse, never by `cluster list` or any other start.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.cli import output
from hub.cli.base import (
    ClusterArgument,
    OutputOption,
    app,
    call,
    raise_invalid,
    run,
)
from hub.cli.completion import complete_clusters
from hub.cli.output import Format, ago, emit, grid

if TYPE_CHECKING:
    from hub.model.views import MemberList, WatchView

cluster_app = typer.Typer(help="Register, label and detach member clusters.", no_args_is_help=True)
labels_app = typer.Typer(help="Add or remove labels on a member cluster.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
cluster_app.add_typer(labels_app, name="labels")


PrometheusOption = Annotated[
    str | None,
    typer.Option(
        "--prometheus",
        help="URL of the cluster's own Prometheus (or Thanos), e.g. http://prom.eu:9090.",
    ),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--prometheus-token-file", help="File holding a bearer token for that Prometheus."
    ),
]
UsernameOption = Annotated[
    str | None, typer.Option("--prometheus-username", help="Basic-auth user for that Prometheus.")
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option("--prometheus-password-file", help="File holding that user's password."),
]


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
    prometheus: PrometheusOption = None,
    prometheus_token_file: TokenFileOption = None,
    prometheus_username: UsernameOption = None,
    prometheus_password_file: PasswordFileOption = None,
    output_format: OutputOption = Format.table,
) -> None:
    """Register a member cluster. The hub contacts it first and stores nothing on failure.

    Token, client-certificate and exec-plugin credentials all work; file references in
    the kubeconfig are read now and stored with it, so the file may move afterwards.

    `--prometheus URL` names the cluster's own Prometheus, which canary analysis and
    `check-metrics` steps query when the Application names no `metricEndpoint`; change
    it later with `flotilla cluster prometheus`.
    """
    from clusters import kubeconfig as kc
    from placement.selectors import parse_labels

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
        "prometheus": _prometheus_body(
            prometheus, prometheus_token_file, prometheus_username, prometheus_password_file
        ),
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


def _prometheus_body(
    url: str | None, token_file: Path | None, username: str | None, password_file: Path | None
) -> dict[str, str]:
    """What the hub keeps of a cluster's Prometheus; secrets are read from files, never
    given on a command line where `ps` and shell history would show them."""
    if url is None:
        if token_file or username or password_file:
            raise_invalid(
                "--prometheus-token-file, --prometheus-username and "
                "--prometheus-password-file need --prometheus URL"
            )
        return {}
    body = {"url": url}
    if token_file is not None:
        body["token"] = _secret(token_file)
    if username is not None:
        body["username"] = username
    if password_file is not None:
        body["password"] = _secret(password_file)
    return body


def _secret(path: Path) -> str:
    try:
        text = path.read_text()
    except OSError as e:
        raise_invalid(f"{path}: cannot read ({type(e).__name__})")
    if not text.strip():  # else the hub would keep the Prometheus without the credential
        raise_invalid(f"{path} is empty")
    return text.strip()


@cluster_app.command("prometheus")
def cluster_prometheus(
    name: ClusterArgument,
    url: Annotated[
        str | None, typer.Argument(help="URL of the cluster's own Prometheus (or Thanos).")
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Forget the cluster's Prometheus.")
    ] = False,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="File holding a bearer token.")
    ] = None,
    username: Annotated[str | None, typer.Option(help="Basic-auth user.")] = None,
    password_file: Annotated[
        Path | None, typer.Option("--password-file", help="File holding that user's password.")
    ] = None,
    output_format: OutputOption = Format.table,
) -> None:
    """Register, replace or forget a cluster's Prometheus.

    The Prometheus that holds the cluster's metrics: canary analysis and `check-metrics`
    steps query it for this cluster whenever the Application names no `metricEndpoint`.
    Credentials are kept like kubeconfig credentials (in the hub's 0600 store) and never
    shown again; `cluster list` shows the URL only.

    \b
    Examples:
      flotilla cluster prometheus prod-eu http://prom.eu:9090 --token-file prom.token
      flotilla cluster prometheus prod-eu --clear
    """
    if clear == (url is not None):
        raise_invalid("give the Prometheus URL, or --clear to forget it")
    if clear and (token_file or username or password_file):
        raise_invalid("--clear takes no --token-file, --username or --password-file")
    body = _prometheus_body(url, token_file, username, password_file)
    record = run(call("PUT", f"/api/v1/clusters/{name}/prometheus", body))
    if output_format is not Format.table:
        emit(record, output_format)
    elif record["prometheus"]:
        output.console.print(f"cluster {name}: Prometheus {record['prometheus']}")
    else:
        output.console.print(f"cluster {name}: no Prometheus")


def _watch_cell(watch: "WatchView") -> str:
    """`synced`, `reconnecting`..., with `, 3 restarts` when its task had to be restarted."""
    restarts = watch["restarts"]
    more = f", {restarts} restart{'s' if restarts > 1 else ''}" if restarts else ""
    return str(watch["state"]) + more


def _task_problems(data: "MemberList") -> list[str]:
    """One line per background task that died: what, how often, when and why."""
    lines = []
    prober = data.get("prober") or {}
    if prober.get("lastError"):
        lines.append(
            f"prober: {prober['restarts']} restart(s), last died {ago(prober['lastErrorAt'])}: "
            f"{prober['lastError']}"
        )
    for c in data["clusters"]:
        watch = c["watch"]
        if watch["lastError"]:
            lines.append(
                f"watch of {c['name']}: {watch['restarts']} restart(s), last died "
                f"{ago(watch['lastErrorAt'])}: {watch['lastError']}"
            )
    return lines


def _cluster_table(data: "MemberList") -> Any:
    from rich.console import Group
    from rich.text import Text

    rows = [
        [
            c["name"],
            ",".join(f"{k}={v}" for k, v in sorted(c["labels"].items())) or "<none>",
            c["server"],
            c["version"],
            output.health(c["health"]),
            ago(c["lastSeen"]),
            _watch_cell(c["watch"]),
        ]
        for c in data["clusters"]
    ]
    table = grid(["name", "labels", "server", "version", "health", "last seen", "watch"], rows)
    problems = [Text(line, style="yellow") for line in _task_problems(data)]
    return Group(table, *problems) if problems else table


@cluster_app.command("list")
def cluster_list(output_format: OutputOption = Format.table) -> None:
    """Member clusters, their health and the hub's watch of each.

    Each with its labels, API server, version, health, when last seen, and how the hub's
    watch of it fares. Health comes from the hub's background probes, so this answers at
    once even when a cluster is down. WATCH is the hub's watch cache of the cluster (what
    `status` reads): `synced`, `starting`, `listing`, `reconnecting` (the cluster went away)
    or `restarting` (its task died), and how often its task was restarted after dying; a
    line under the table says why the prober or a watch last died. `-o json` has the same
    per cluster as `watch` {state, error, restarts, lastError, lastErrorAt}, and the
    prober's as `prober` {running, restarts, lastError, lastErrorAt}.
    """
    emit(run(call("GET", "/api/v1/clusters")), output_format, _cluster_table)


@cluster_app.command("show")
def cluster_show(
    name: ClusterArgument,
    output_format: Annotated[
        Format, typer.Option("--output", "-o", help="yaml (default) or json.")
    ] = Format.yaml,
) -> None:
    """One cluster in full, its credentials redacted.

    Its uid (which a rename keeps), its watch, and its kubeconfig with every credential
    redacted."""
    emit(run(call("GET", f"/api/v1/clusters/{name}")), output_format)


@labels_app.command("add")
def labels_add(
    name: ClusterArgument,
    labels: Annotated[list[str], typer.Argument(help="k=v pairs; an existing key is replaced.")],
    output_format: OutputOption = Format.table,
) -> None:
    """Add or replace labels.

    \b
    Example:
      flotilla cluster labels add prod-eu env=prod region=eu
    """
    from placement.selectors import parse_labels

    try:
        add = parse_labels(",".join(labels))
    except ValueError as e:
        raise_invalid(str(e))
    record = run(call("PATCH", f"/api/v1/clusters/{name}/labels", {"add": add}))
    _print_labels(record, output_format)


@labels_app.command("del")
def labels_del(
    name: ClusterArgument,
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
    old: Annotated[str, typer.Argument(help="Current name.", autocompletion=complete_clusters)],
    new: Annotated[str, typer.Argument(help="New name (a DNS label).")],
    output_format: OutputOption = Format.table,
) -> None:
    """Rename a member cluster; it stays the same cluster (same uid).

    Its labels, credentials, watch cache and everything applications have on it follow
    the new name, even in the middle of a canary: `status`, `workflow resume`,
    `workflow rollback` and `delete` go on working. A topology policy that lists the
    cluster by name (`clusters: [old]`) does not follow: a later `up` or rollback of that
    file no longer finds it, so select clusters by label where you can.
    """
    record = run(call("POST", f"/api/v1/clusters/{old}/rename", {"name": new}))
    if output_format is Format.table:
        output.console.print(f"cluster {old} renamed to {new} (uid {record['uid']})")
    else:
        emit(record, output_format)


@cluster_app.command("detach")
def cluster_detach(
    name: ClusterArgument,
    delete_releases: Annotated[
        bool,
        typer.Option(
            "--delete-releases",
            help="First delete from the cluster every object of every application on it "
            "(their whole inventory there), then detach.",
        ),
    ] = False,
    forget_releases: Annotated[
        bool,
        typer.Option(
            "--forget-releases",
            help="Detach and drop the hub's records of the applications' releases there; "
            "their objects stay running on the cluster, no longer managed by Flotilla.",
        ),
    ] = False,
    output_format: OutputOption = Format.table,
) -> None:
    """Detach a member cluster from the hub.

    A cluster that still holds applications (objects the hub applied there, or targets
    of their current revision) is refused with their names, and nothing changes. Say
    what becomes of those releases with one of:

    \b
    * `--delete-releases`: delete them from the cluster, then detach;
    * `--forget-releases`: leave them running and forget them. The hub no longer
      prunes, upgrades or deletes them; joined again, the cluster takes them over
      with the application's next revision (`up` of a changed file).

    A cluster that holds nothing is detached as is; nothing on it is deleted.
    """
    if delete_releases and forget_releases:
        raise_invalid("--delete-releases and --forget-releases exclude each other; pick one")
    query = "?releases=delete" if delete_releases else "?releases=forget" if forget_releases else ""
    result = run(call("DELETE", f"/api/v1/clusters/{name}{query}"))
    if output_format is not Format.table:
        emit(result, output_format)
        return
    for held in result["applications"]:
        objects = f"{held['objects']} object{'s' if held['objects'] != 1 else ''}"
        if result["releases"] == "delete":
            output.console.print(f"deleted {held['name']} from {name}: {objects}")
        else:
            output.console.print(f"forgot {held['name']} on {name}: {objects} left running")
    output.console.print(f"cluster {name} detached")
