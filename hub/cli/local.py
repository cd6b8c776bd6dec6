"""The commands that run in this process instead of calling a hub: `serve` (which is the
hub), `schema` (which prints the format's JSON Schema) and `completion` (which prints a
shell's completion script). The imports of the hub's inside, by the first two, are lazy
and the only ones the CLI has (see ARCHITECTURE.md).
"""

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from hub.cli.base import (
    app,
    raise_invalid,
    run,
)
from hub.cli.completion import Shell, script
from hub.cli.output import Format, emit
from hub.home import Home
from hub.logs import LogFormat
from hub.logs import configure as configure_logs
from hub.model.settings import DEFAULTS, StoreKind

DEFAULT_LOG_FORMAT = LogFormat(DEFAULTS.log_format)

# The management cluster's options, the same for `serve --store kubernetes` and `install`.
StoreKubeconfig = Annotated[
    Path | None,
    typer.Option(
        help="Kubeconfig of the management cluster that holds the state with `--store "
        "kubernetes` (custom resources in the flotilla.dev group, credentials in Secrets).",
        dir_okay=False,
    ),
]
StoreContext = Annotated[
    str | None, typer.Option(help="Context of `--store-kubeconfig` (default: its current one).")
]
StoreNamespace = Annotated[
    str, typer.Option(help="Namespace of the management cluster the state is kept in.")
]


@app.command()
def serve(
    listen: Annotated[
        str, typer.Option(help="HOST:PORT to listen on; port 0 picks a free port.")
    ] = DEFAULTS.listen,
    probe_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between health probes of a member cluster whose watches have not "
            "just answered (one whose watches keep answering is probed every 30 s)."
        ),
    ] = DEFAULTS.probe_interval,
    log_level: Annotated[
        str, typer.Option(help="debug, info, warning or error.")
    ] = DEFAULTS.log_level,
    step_timeout: Annotated[
        float, typer.Option(help="Seconds a deploy step waits for its objects to be healthy.")
    ] = DEFAULTS.step_timeout,
    fanout: Annotated[
        int, typer.Option(help="Clusters deployed at once when a step sets no parallelism.")
    ] = DEFAULTS.fanout,
    prometheus_timeout: Annotated[
        float,
        typer.Option(
            help="Seconds one Prometheus query of a metric analysis may take before it "
            "counts as a measurement error."
        ),
    ] = DEFAULTS.prometheus_timeout,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            help="text for people, or json for collectors: one object per line with time, "
            "level, logger, message, and app and cluster where a line concerns one."
        ),
    ] = DEFAULT_LOG_FORMAT,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of a second listener serving only /metrics, without the token "
            "(default: /metrics on the API, with the token)."
        ),
    ] = DEFAULTS.metrics_listen,
    events_per_app: Annotated[
        int, typer.Option(help="Events kept per application; older ones go.", min=1)
    ] = DEFAULTS.events_per_app,
    events_max_age: Annotated[
        float, typer.Option(help="Seconds an event is kept at most.", min=1)
    ] = DEFAULTS.events_max_age,
    heal: Annotated[
        bool,
        typer.Option(
            help="Re-apply what drifts from the applied revision (a `kubectl edit`, a deleted "
            "object) within seconds. `--no-heal`: drift is shown in status and the events, "
            "and left as it is."
        ),
    ] = DEFAULTS.heal,
    store: Annotated[
        StoreKind,
        typer.Option(
            help="sqlite: one file in $FLOTILLA_HOME, for one hub. kubernetes: custom "
            "resources in a management cluster (`--store-kubeconfig`), so that the state "
            "outlives this machine; the CRDs are installed on start."
        ),
    ] = DEFAULTS.store,
    store_kubeconfig: StoreKubeconfig = None,
    store_context: StoreContext = DEFAULTS.store_context,
    store_namespace: StoreNamespace = DEFAULTS.store_namespace,
    token_file: Annotated[
        Path | None,
        typer.Option(
            help="Read the API's bearer token from this file (a mounted Secret) instead of "
            "making a new one, so that replicas behind one Service take the same token.",
            dir_okay=False,
        ),
    ] = None,
    replica_id: Annotated[
        str | None,
        typer.Option(
            help="This hub's name among the replicas sharing a Kubernetes store, unique to "
            "the process (default: host name and process id; give a pod its pod name)."
        ),
    ] = DEFAULTS.replica_id,
    lease_seconds: Annotated[
        float,
        typer.Option(
            help="With `--store kubernetes`: how long a replica's shard Leases last unrenewed; "
            "a replica that dies hands its applications on this long after.",
            min=1,
        ),
    ] = DEFAULTS.lease_seconds,
    renew_seconds: Annotated[
        float,
        typer.Option(
            help="How often a replica renews its Leases (less than half of `--lease-seconds`).",
            min=0.1,
        ),
    ] = DEFAULTS.renew_seconds,
) -> None:
    """Run the hub: its store, prober and HTTP API, until SIGTERM.

    With `--store kubernetes`, any number of replicas may share one store: each drives the
    applications of the shards it holds through Leases, and takes over those of a replica
    that stops, within `--lease-seconds`."""
    from hub.root import serve as serve_hub

    if store is StoreKind.KUBERNETES and store_kubeconfig is None:
        raise_invalid("--store kubernetes needs --store-kubeconfig FILE: the management cluster")
    configure_logs(log_level, log_format)
    settings = dataclasses.replace(
        DEFAULTS,
        listen=listen,
        probe_interval=probe_interval,
        step_timeout=step_timeout,
        fanout=fanout,
        prometheus_timeout=prometheus_timeout,
        log_format=log_format,
        metrics_listen=metrics_listen,
        events_per_app=events_per_app,
        events_max_age=events_max_age,
        heal=heal,
        log_level=log_level,
        store=store,
        store_kubeconfig=str(store_kubeconfig) if store_kubeconfig else None,
        store_context=store_context,
        store_namespace=store_namespace,
        token_file=str(token_file) if token_file else None,
        replica_id=replica_id,
        lease_seconds=lease_seconds,
        renew_seconds=renew_seconds,
    )
    import asyncio

    run(lambda: asyncio.run(serve_hub(Home.default(), settings)))


@app.command()
def install(
    store_kubeconfig: StoreKubeconfig = None,
    store_context: StoreContext = DEFAULTS.store_context,
    store_namespace: StoreNamespace = DEFAULTS.store_namespace,
    print_: Annotated[
        bool,
        typer.Option(
            "--print",
            help="Print the manifests (the namespace and the CRDs) as YAML instead of "
            "applying them, for a GitOps repository.",
        ),
    ] = False,
) -> None:
    """Install the Kubernetes store's CRDs and namespace.

    What `serve --store kubernetes` keeps its state in: the store namespace and the
    flotilla.dev CRDs of the management cluster. Idempotent; `serve` does it too on
    start, so this is for those who install CRDs apart (GitOps, a locked-down hub).

    \b
    Examples:
      flotilla install --store-kubeconfig mgmt.kubeconfig
      flotilla install --print > flotilla-crds.yaml
    """
    from hub.state.kube import install as install_store
    from hub.state.kube import manifests

    if print_:
        import yaml

        typer.echo(yaml.safe_dump_all(manifests(store_namespace), sort_keys=False), nl=False)
        return
    kubeconfig = store_kubeconfig or raise_invalid(
        "install needs --store-kubeconfig FILE (or --print to see the manifests)"
    )
    run(lambda: install_store(kubeconfig, store_namespace, context=store_context))
    typer.echo(f"installed the flotilla.dev CRDs and namespace {store_namespace}")


@app.command()
def schema() -> None:
    """Print the Application format's JSON Schema. For editors and CI linters."""
    from hub.format import json_schema

    emit(json_schema(), Format.json)


@app.command()
def completion(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")]) -> None:
    """Print a shell's completion script.

    TAB then completes commands, options, and the names of applications and clusters,
    asked from the running hub. Load it in the shell you are in, or for every new one:

    \b
    * bash: `source <(flotilla completion bash)`; for every shell, add that line
      to ~/.bashrc (bash 4.4 or later)
    * zsh: `source <(flotilla completion zsh)`, after `compinit`; for every shell,
      add that line to ~/.zshrc
    * fish: `flotilla completion fish | source`; for every shell,
      `flotilla completion fish > ~/.config/fish/completions/flotilla.fish`

    `flotilla --install-completion` sets up every new shell of the kind it runs in the
    same way. With no hub running, names complete to nothing.
    """
    typer.echo(script(shell))
