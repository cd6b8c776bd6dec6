"""The composition root: builds every part of the hub, runs them, and takes them down.

`flotilla serve` calls `serve`; nothing else constructs the store, the registry, the
chart cache, the engine or the API. State is in the store, so stopping is cheap and a
hub killed at any moment starts again from it.

Every long-lived task runs under the one `Supervisor` made here. `serve` returns on
SIGTERM or SIGINT and raises `HubStopped` when a critical task (the prober) could not be
kept alive, so that `flotilla serve` exits 1 and whatever runs the hub (systemd, a
container) restarts it or says so, instead of a hub that answers but no longer probes.
On every way out, start-up failures included, it releases what it opened, in reverse:
signal handlers, the hub file, the API and the metrics listener, the engine's runners,
the supervised tasks, the clusters' watches and clients, the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from clusters.client import small_tls_buffers
from hub import heap
from hub.api import create_app, create_metrics_app
from hub.charts import ChartCache
from hub.errors import FlotillaError, InvalidInput
from hub.fleet.registry import Registry
from hub.home import Home
from hub.model.settings import Settings, StoreKind
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.service.health import StoredHealth
from hub.service.metrics import GC_TASK, LAG_TASK, HubMetrics
from hub.state.interface import ClusterStore
from hub.state.store import SqliteStore
from hub.tasks import HubFailed, Supervisor
from hub.workflow.engine import every_app

if TYPE_CHECKING:
    from hub.service.replicas import Replicas

log = logging.getLogger(__name__)

# The supervised task that keeps this replica's Leases (with --store kubernetes).
SHARDS_TASK = "shards"
# The supervised task that resumes a replica's applications once its store is back.
STORE_FOLLOWER_TASK = "store follower"


class HubStopped(FlotillaError):
    """The hub stopped itself: a task it cannot live without kept dying, or it could not
    start. `flotilla serve` prints this one line and exits 1."""

    exit_code = 1


async def serve(home: Home, settings: Settings, *, supervisor: Supervisor | None = None) -> None:
    """Run the hub until SIGTERM or SIGINT; raises HubStopped if it cannot go on.

    `supervisor` is for tests, to run the hub with quicker restarts."""
    home.prepare()
    small_tls_buffers()
    started = time.monotonic()
    async with contextlib.AsyncExitStack() as stack:
        stop = _on_signals(stack)
        scrubber = Scrubber()
        _scrub_logs(stack, scrubber)
        metrics = HubMetrics()
        identity = settings.replica_id or _host_identity()
        store = await asyncio.to_thread(_open_store, home, settings, metrics.transaction, identity)
        stack.callback(store.close)
        replicas = (
            await _replicas(stack, settings, identity)
            if settings.store is StoreKind.KUBERNETES
            else None
        )
        supervisor = supervisor or Supervisor()
        registry = Registry(
            store,
            scrubber,
            temp_dir=home.temp,
            settings=settings,
            supervisor=supervisor,
            watch_all=replicas is None,
        )
        stack.push_async_callback(registry.close)
        stack.push_async_callback(supervisor.close)  # runs before registry.close
        apps = Applications(
            store,
            registry,
            ChartCache(
                home.charts, timeout=settings.chart_timeout, repositories=store.repositories
            ),
            settings=settings,
            supervisor=supervisor,
            deployed=metrics.deployed,
            owns=replicas.owns if replicas is not None else every_app,
        )
        metrics.read(apps, replicas.shards if replicas is not None else None)
        stack.push_async_callback(apps.stop)
        token = home.write_token(Path(settings.token_file) if settings.token_file else None)
        scrubber.add([token])
        api = create_app(registry, apps, scrubber, token, metrics)
        url = await _listen(stack, web.AppRunner(api, access_log=None), settings.listen)
        if settings.metrics_listen:
            only_metrics = web.AppRunner(create_metrics_app(metrics, scrubber), access_log=None)
            where = await _listen(stack, only_metrics, settings.metrics_listen, "--metrics-listen")
            log.info("metrics on %s/metrics, without the token", where)
        home.write_hub_file(url)
        stack.callback(home.remove_hub_file)
        log.info("hub listening on %s (home %s)", url, home.root)
        supervisor.spawn(LAG_TASK, metrics.lag.run)
        supervisor.spawn(GC_TASK, metrics.gc.run)
        supervisor.spawn(heap.TASK, heap.keep)
        registry.start()
        health = StoredHealth(
            apps.apps,
            registry,
            supervisor=supervisor,
            owns=apps.engine.owns,
            observe=apps.keeper.drift if replicas is not None else None,
        )
        if replicas is not None:
            from hub.state.kube import KubeStore

            if not isinstance(store, KubeStore):
                raise TypeError("replicas share a Kubernetes store")
            # Leases handed back first on the way out, so that the others take over at once.
            replicas.drive(store, apps, registry, health)
            stack.push_async_callback(replicas.shards.release)
            supervisor.spawn(SHARDS_TASK, replicas.shards.run, critical=True)
            supervisor.spawn(STORE_FOLLOWER_TASK, replicas.follow_store)
        apps.engine.start()
        health.start()
        apps.keeper.start()
        try:
            await _until_stopped(stop, supervisor)
        finally:
            log.info("hub stopping after %.0fs", time.monotonic() - started)


def _open_store(
    home: Home, settings: Settings, timed: Callable[[float], None], identity: str
) -> ClusterStore:
    """The store `--store` names. The Kubernetes one is imported only when asked for, so
    that a hub on SQLite loads nothing of it; opening it installs its CRDs and lists
    everything it holds, which takes a few round trips to the management cluster (hence
    the caller's thread)."""
    if settings.store is StoreKind.KUBERNETES:
        from hub.state.kube import KubeStore

        if settings.store_kubeconfig is None:
            raise InvalidInput("--store kubernetes needs --store-kubeconfig FILE")
        return KubeStore(
            Path(settings.store_kubeconfig),
            settings.store_namespace,
            context=settings.store_context,
            timed=timed,
            identity=identity,
        )
    return SqliteStore(home.store, timed=timed)


async def _replicas(
    stack: contextlib.AsyncExitStack, settings: Settings, identity: str
) -> Replicas:
    """This hub's share of the work among the replicas on its Kubernetes store: the shards
    it holds through Leases, reached with a client of its own on the hub's loop."""
    from hub.service.replicas import Replicas
    from hub.state.kube.backend import connect

    if settings.store_kubeconfig is None:
        raise InvalidInput("--store kubernetes needs --store-kubeconfig FILE")
    client = await connect(
        Path(settings.store_kubeconfig), settings.store_context, settings.probe_timeout * 3
    )
    stack.push_async_callback(client.close)
    log.info("replica %s shares the work of store %s", identity, settings.store_namespace)
    return Replicas(
        client,
        settings.store_namespace,
        identity,
        lease_seconds=settings.lease_seconds,
        renew_seconds=settings.renew_seconds,
    )


def _host_identity() -> str:
    """This process among the replicas: the host's name (a pod's) and the process id, as
    a DNS subdomain."""
    host = re.sub(r"[^a-z0-9.-]+", "-", socket.gethostname().lower()).strip("-.") or "hub"
    return f"{host}-{os.getpid()}"


async def _until_stopped(stop: asyncio.Event, supervisor: Supervisor) -> None:
    """Return on a signal; raise HubStopped once a critical task could not be kept alive."""
    signalled = asyncio.create_task(stop.wait(), name="signals")
    failed = asyncio.create_task(supervisor.failed(), name="critical tasks")
    try:
        await asyncio.wait({signalled, failed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (signalled, failed):
            task.cancel()
        await asyncio.gather(signalled, failed, return_exceptions=True)
    if failed.done() and not failed.cancelled() and (error := failed.exception()) is not None:
        if isinstance(error, HubFailed):
            raise HubStopped(
                f"the hub stopped: {error}; the log above has each traceback. Fix the cause "
                "and start it again (`flotilla serve`)"
            ) from error
        raise error


def _on_signals(stack: contextlib.AsyncExitStack) -> asyncio.Event:
    """SIGTERM and SIGINT set the returned event from the moment the hub starts."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
        stack.callback(loop.remove_signal_handler, sig)
    return stop


def _scrub_logs(stack: contextlib.AsyncExitStack, scrubber: Scrubber) -> None:
    """Every log record passes the scrubber, whichever handler writes it, while we run."""
    targets: list[logging.Filterer] = [logging.getLogger(), *logging.getLogger().handlers]
    for target in targets:
        target.addFilter(scrubber)
        stack.callback(target.removeFilter, scrubber)


async def _listen(
    stack: contextlib.AsyncExitStack, runner: web.AppRunner, listen: str, option: str = "--listen"
) -> str:
    """Start `runner` on HOST:PORT, given as `option`; returns its URL. A port in use is one
    line, not a trace."""
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    host, _, port = listen.rpartition(":")
    if not port.isdigit():
        raise InvalidInput(f"{option} {listen}: expected HOST:PORT, e.g. 127.0.0.1:7350")
    site = web.TCPSite(runner, host or "127.0.0.1", int(port))
    try:
        await site.start()
    except OSError as e:
        raise HubStopped(
            f"cannot listen on {listen}: {e.strerror or e}; stop what uses it or pass "
            f"another {option}"
        ) from None
    bound = runner.addresses[0]
    return f"http://{bound[0]}:{bound[1]}"
