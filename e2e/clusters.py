"""Real local Kubernetes clusters, no Docker: start, reuse, inspect, stop.

One etcd serves every cluster (each API server has its own --etcd-prefix); each
cluster has its own CA, API server, controller manager and simulated node
(e2e.kubelet), which also serves its pods' app metrics on a port of its own
(`ClusterInfo.metrics_url`). Everything the clusters are lives in one git-ignored state
directory (`.e2e/`, or $FLOTILLA_E2E_DIR): `state.json` records ports and
processes so that any later command (another test session, `down`) finds them.
Cluster i is always called `e2e-i` and lives in `<state>/e2e-i/`.

    python -m e2e.clusters up [--count N]   # prints one admin kubeconfig per line
    python -m e2e.clusters status | down | stop NAME | start NAME

Tokens and keys are in files (0600) and in state.json (0600), never in output.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import json
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from e2e import controlplane, kubeconfigs, processes
from e2e.binaries import ensure_built
from e2e.controlplane import CLIENTS, ClusterFiles
from e2e.kubeapi import KubeAPI, KubeAPIError
from e2e.processes import ProcessRecord

REPO = Path(__file__).resolve().parents[1]
DEFAULT_COUNT = 3
RESTRICTED_NAMESPACE = "restricted"
RESTRICTED_USER = "flotilla-restricted"
ADMIN_USER = "flotilla-admin"
ETCD, APISERVER, CONTROLLER_MANAGER, KUBELET = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kubelet",
)
# Order of shutdown: clients of the API server first, etcd last, so that
# nothing logs a storm of connection errors on its way out.
COMPONENTS = (KUBELET, CONTROLLER_MANAGER, APISERVER)
# kube-apiserver's graceful shutdown waits (up to a minute) for clients' open
# watches; its state is all in etcd, so a short wait before SIGKILL loses nothing.
APISERVER_GRACE = 3.0
# Generous on purpose: a cold start of several API servers on two cores is
# CPU-bound; a healthy warm start takes a fraction of this.
APISERVER_TIMEOUT = 180.0
CLUSTER_TIMEOUT = 120.0


def state_dir() -> Path:
    return Path(os.environ.get("FLOTILLA_E2E_DIR") or REPO / ".e2e").resolve()


def cluster_name(index: int) -> str:
    return f"e2e-{index}"


def _metrics_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/metrics"


@dataclass(frozen=True)
class ClusterInfo:
    """What a test needs to talk to one running cluster. The context in every
    kubeconfig is named after the cluster."""

    name: str
    server: str
    kubeconfig: Path  # admin, client certificate (CN flotilla-admin, O system:masters)
    token_kubeconfig: Path  # admin, bearer token
    restricted_kubeconfig: Path  # bearer token, may do anything in restricted_namespace only
    restricted_namespace: str
    admin_token: str = field(repr=False)
    restricted_token: str = field(repr=False)
    metrics_url: str  # the simulated node's app metrics (e2e.appmetrics), for Prometheus

    @property
    def context(self) -> str:
        return self.name


@dataclass(frozen=True)
class ProcessStatus:
    """One line of `status`: a component, its PID (None when not running) and RSS."""

    cluster: str | None
    component: str
    pid: int | None
    rss: int


@dataclass
class ClusterRecord:
    name: str
    port: int
    admin_token: str
    restricted_token: str
    # None in a state file written before kubelets served app metrics: `up` then gives the
    # cluster a port and restarts its kubelet, and until then it does not count as running.
    metrics_port: int | None
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    @property
    def files(self) -> ClusterFiles:
        return ClusterFiles(state_dir() / self.name, self.name)

    def kubelet_metrics_port(self) -> int:
        if self.metrics_port is None:
            raise RuntimeError(f"{self.name} predates app metrics: run `up` to give it a port")
        return self.metrics_port

    def info(self) -> ClusterInfo:
        files = self.files
        return ClusterInfo(
            name=self.name,
            server=f"https://127.0.0.1:{self.port}",
            kubeconfig=files.admin_kubeconfig,
            token_kubeconfig=files.token_kubeconfig,
            restricted_kubeconfig=files.restricted_kubeconfig,
            restricted_namespace=RESTRICTED_NAMESPACE,
            admin_token=self.admin_token,
            restricted_token=self.restricted_token,
            metrics_url=_metrics_url(self.kubelet_metrics_port()),
        )

    def api(self) -> KubeAPI:
        pair = self.files.pki.client("admin")
        return KubeAPI(self.port, self.files.pki.ca.cert, pair.cert, pair.key)

    def running(self, component: str) -> bool:
        record = self.processes.get(component)
        return record is not None and processes.alive(record)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "port": self.port,
            "admin_token": self.admin_token,
            "restricted_token": self.restricted_token,
            "metrics_port": self.metrics_port,
            "processes": {k: v.to_json() for k, v in self.processes.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterRecord:
        return cls(
            name=data["name"],
            port=int(data["port"]),
            admin_token=data["admin_token"],
            restricted_token=data["restricted_token"],
            metrics_port=data.get("metrics_port"),
            processes={k: ProcessRecord.from_json(v) for k, v in data["processes"].items()},
        )


@dataclass
class State:
    etcd_port: int
    etcd_peer_port: int
    etcd: ProcessRecord | None = None
    clusters: list[ClusterRecord] = field(default_factory=list)

    def cluster(self, name: str) -> ClusterRecord:
        for record in self.clusters:
            if record.name == name:
                return record
        raise LookupError(f"no cluster named {name!r}; known: {[c.name for c in self.clusters]}")

    def ports(self) -> set[int]:
        metrics = {c.metrics_port for c in self.clusters if c.metrics_port is not None}
        return {self.etcd_port, self.etcd_peer_port, *(c.port for c in self.clusters), *metrics}

    def to_json(self) -> dict[str, Any]:
        return {
            "etcd_port": self.etcd_port,
            "etcd_peer_port": self.etcd_peer_port,
            "etcd": self.etcd.to_json() if self.etcd else None,
            "clusters": [c.to_json() for c in self.clusters],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        return cls(
            etcd_port=int(data["etcd_port"]),
            etcd_peer_port=int(data["etcd_peer_port"]),
            etcd=ProcessRecord.from_json(data["etcd"]) if data.get("etcd") else None,
            clusters=[ClusterRecord.from_json(c) for c in data["clusters"]],
        )


def _log(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


def _state_file() -> Path:
    return state_dir() / "state.json"


def _load() -> State | None:
    try:
        return State.from_json(json.loads(_state_file().read_text()))
    except FileNotFoundError:
        return None


def _save(state: State) -> None:
    partial = _state_file().with_suffix(".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state.to_json(), out, indent=2)
    partial.replace(_state_file())


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One harness command at a time per state directory, across processes."""
    state_dir().mkdir(parents=True, exist_ok=True)
    with (state_dir() / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _free_ports(count: int, taken: set[int]) -> list[int]:
    """Ports the kernel calls free now, none of them already in our state (a
    stopped API server's port stays reserved for its return)."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port not in taken:
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _wait(
    record: ClusterRecord,
    what: str,
    probe: Callable[[KubeAPI], bool],
    timeout: float,
    components: tuple[str, ...] = COMPONENTS,
) -> None:
    """Poll until `probe` holds, failing fast with the log's tail if one of the
    `components` it depends on died."""

    def check(api: KubeAPI) -> bool:
        for component in components:
            if component in record.processes and not record.running(component):
                log = record.files.log(component)
                raise RuntimeError(f"{record.name}: {component} exited; {log}:\n{_tail(log)}")
        return probe(api)

    record.api().wait_for(f"{record.name} {what}", check, timeout)


def _create_cluster(name: str, port: int, metrics_port: int) -> ClusterRecord:
    """Fresh certificates, tokens and kubeconfigs for cluster `name`."""
    record = ClusterRecord(
        name=name,
        port=port,
        admin_token=secrets.token_urlsafe(32),
        restricted_token=secrets.token_urlsafe(32),
        metrics_port=metrics_port,
    )
    files = record.files
    shutil.rmtree(files.root, ignore_errors=True)
    files.root.mkdir(parents=True)
    pki = files.pki
    pki.create(CLIENTS)
    fd = os.open(files.tokens, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f'{record.admin_token},{ADMIN_USER}-token,uid-admin,"system:masters"\n')
        out.write(f"{record.restricted_token},{RESTRICTED_USER},uid-restricted\n")
    server = f"https://127.0.0.1:{port}"
    ca = pki.ca.cert

    def cert_user(stem: str) -> dict[str, Any]:
        pair = pki.client(stem)
        return {"client-certificate": str(pair.cert), "client-key": str(pair.key)}

    kubeconfigs.write(files.admin_kubeconfig, name, server, ca, cert_user("admin"))
    kubeconfigs.write(files.token_kubeconfig, name, server, ca, {"token": record.admin_token})
    kubeconfigs.write(
        files.restricted_kubeconfig,
        name,
        server,
        ca,
        {"token": record.restricted_token},
        namespace=RESTRICTED_NAMESPACE,
    )
    for component, path in (
        ("controller-manager", files.controller_manager_kubeconfig),
        ("kubelet", files.kubelet_kubeconfig),
    ):
        kubeconfigs.write(path, name, server, ca, cert_user(component), embed=False)
    return record


def _command(state: State, record: ClusterRecord, component: str) -> list[str]:
    files = record.files
    if component == APISERVER:
        return controlplane.apiserver_command(files, record.port, state.etcd_port)
    if component == CONTROLLER_MANAGER:
        return controlplane.controller_manager_command(files)
    return controlplane.kubelet_command(files, record.kubelet_metrics_port())


def _ensure_running(state: State, record: ClusterRecord, component: str) -> None:
    if record.running(component):
        return
    command = _command(state, record, component)
    record.processes[component] = processes.spawn(command, record.files.log(component), cwd=REPO)
    _save(state)


def _restart(state: State, record: ClusterRecord, component: str) -> None:
    if component in record.processes:
        processes.stop([record.processes.pop(component)])
    _ensure_running(state, record, component)


def _wait_apiserver(record: ClusterRecord) -> None:
    def probe(api: KubeAPI) -> bool:
        return bool(api.get("/readyz") == "ok")

    _wait(record, "/readyz", probe, APISERVER_TIMEOUT, (APISERVER,))


def _bootstrap(record: ClusterRecord) -> None:
    """The restricted user's namespace and its namespace-wide RBAC."""
    api = record.api()
    ns = RESTRICTED_NAMESPACE
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    api.create("/api/v1/namespaces", {"metadata": {"name": ns}})
    api.create(
        f"{rbac}/namespaces/{ns}/roles",
        {
            "metadata": {"name": "restricted-all"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
    )
    api.create(
        f"{rbac}/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "restricted-all"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "restricted-all",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": RESTRICTED_USER}
            ],
        },
    )


def _node_ready(node: str) -> Callable[[KubeAPI], bool]:
    def probe(api: KubeAPI) -> bool:
        conditions = api.get(f"/api/v1/nodes/{node}").get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    return probe


def _wait_cluster(record: ClusterRecord) -> None:
    _wait(record, "node", _node_ready(record.files.node), CLUSTER_TIMEOUT)
    _wait(
        record,
        "default service account",
        lambda api: bool(api.get("/api/v1/namespaces/default/serviceaccounts/default")),
        CLUSTER_TIMEOUT,
    )


def _etcd_healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and json.loads(response.read()).get("health") == "true"
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        connection.close()


def _start_etcd(state: State) -> None:
    data = state_dir() / "etcd"
    shutil.rmtree(data, ignore_errors=True)
    command = controlplane.etcd_command(data, state.etcd_port, state.etcd_peer_port)
    state.etcd = processes.spawn(command, state_dir() / "etcd.log")
    _save(state)
    deadline = time.monotonic() + 30
    while not _etcd_healthy(state.etcd_port):
        if not processes.alive(state.etcd) or time.monotonic() > deadline:
            log = state_dir() / "etcd.log"
            raise RuntimeError(f"etcd did not start; {log}:\n{_tail(log)}")
        time.sleep(0.05)


def _usable_state() -> State:
    """The recorded state if its etcd still runs; otherwise whatever is left of
    it is stopped and a fresh state with a running etcd is returned."""
    state = _load()
    if state is not None and state.etcd is not None and processes.alive(state.etcd):
        return state
    # Also sweeps up components that a lost state file no longer names.
    _stop_everything(state)
    etcd_port, peer_port = _free_ports(2, set())
    state = State(etcd_port=etcd_port, etcd_peer_port=peer_port)
    _log("starting etcd")
    _start_etcd(state)
    return state


def up(count: int = DEFAULT_COUNT) -> list[ClusterInfo]:
    """Make clusters e2e-1..e2e-`count` run and be ready; reuse what already runs.
    Clusters beyond `count` that run are left alone."""
    if count < 1:
        raise ValueError("count must be at least 1")
    ensure_built()
    with _locked():
        started = time.monotonic()
        state = _usable_state()
        wanted: list[ClusterRecord] = []
        for index in range(1, count + 1):
            name = cluster_name(index)
            try:
                record = state.cluster(name)
            except LookupError:
                record = _create_cluster(name, *_free_ports(2, state.ports()))
                state.clusters.append(record)
                _save(state)
            wanted.append(record)
        # Recorded before kubelets served app metrics: a port now, a new kubelet below.
        outdated = {r.name for r in wanted if r.metrics_port is None}
        for record in wanted:
            if record.name in outdated:
                [record.metrics_port] = _free_ports(1, state.ports())
                _save(state)
        fresh = [r.name for r in wanted if not r.running(APISERVER)]
        for record in wanted:
            _ensure_running(state, record, APISERVER)
        for record in wanted:
            _wait_apiserver(record)
            if record.name in fresh:
                # A controller manager that lost its API server backs off for up
                # to 30 s before it looks again; a fresh one starts at once.
                _restart(state, record, CONTROLLER_MANAGER)
            _ensure_running(state, record, CONTROLLER_MANAGER)
            if record.name in outdated:
                _restart(state, record, KUBELET)
            _ensure_running(state, record, KUBELET)
            _bootstrap(record)
        for record in wanted:
            _wait_cluster(record)
        if fresh:
            _log(f"started {', '.join(fresh)} in {time.monotonic() - started:.1f}s")
        return [r.info() for r in wanted]


def running() -> list[ClusterInfo]:
    """The recorded clusters whose every process runs, with a kubelet that serves metrics."""
    state = _load()
    if state is None or state.etcd is None or not processes.alive(state.etcd):
        return []
    return [
        r.info()
        for r in state.clusters
        if r.metrics_port is not None and all(r.running(c) for c in COMPONENTS)
    ]


def admin_api(info: ClusterInfo) -> KubeAPI:
    """The harness's own client for one cluster, as its administrator."""
    files = ClusterFiles(state_dir() / info.name, info.name)
    pair = files.pki.client("admin")
    port = int(info.server.rsplit(":", 1)[1])
    return KubeAPI(port, files.pki.ca.cert, pair.cert, pair.key)


def create_namespace(name: str, targets: list[ClusterInfo]) -> None:
    """Create namespace `name` on every target and wait for its `default`
    service account, without which the API server refuses pods."""
    for info in targets:
        admin_api(info).create("/api/v1/namespaces", {"metadata": {"name": name}})
    for info in targets:
        admin_api(info).wait_for(
            f"{info.name} namespace {name}",
            lambda api: bool(api.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")),
            CLUSTER_TIMEOUT,
        )


def delete_namespace(name: str, targets: list[ClusterInfo]) -> None:
    """Start deleting namespace `name` everywhere; the namespace controller and
    the simulated kubelet finish it in the background."""
    for info in targets:
        try:
            admin_api(info).request("DELETE", f"/api/v1/namespaces/{name}")
        except KubeAPIError as e:
            if e.status != 404:
                raise


def _strays() -> list[ProcessRecord]:
    """Our components that run from this state directory but that no state file
    records (a state file deleted by hand, a crash between spawn and save)."""
    root = str(state_dir()) + os.sep
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        ours = cmdline and (
            Path(cmdline[0]).name in (ETCD, APISERVER, CONTROLLER_MANAGER)
            or "e2e.kubelet" in cmdline
        )
        if ours and any(root in arg for arg in cmdline):
            with contextlib.suppress(ProcessLookupError):
                found.append(ProcessRecord.of(process.pid))
    return found


def _stop_everything(state: State | None) -> None:
    if state is not None:
        for component in COMPONENTS:
            processes.stop(
                (r.processes[component] for r in state.clusters if component in r.processes),
                grace=APISERVER_GRACE if component == APISERVER else processes.TERM_GRACE,
            )
        if state.etcd is not None:
            processes.stop([state.etcd])
    processes.stop(_strays())
    _state_file().unlink(missing_ok=True)
    shutil.rmtree(state_dir() / "etcd", ignore_errors=True)


def down() -> None:
    """Stop every process the harness started; certificates and logs stay for a
    post-mortem until the next `up` replaces them."""
    with _locked():
        _stop_everything(_load())


def stop_apiserver(name: str) -> None:
    """Take one cluster's API server away; its port stays reserved for start_apiserver."""
    with _locked():
        state = _load()
        if state is None:
            raise LookupError(f"no cluster named {name!r}: nothing runs")
        record = state.cluster(name)
        if APISERVER in record.processes:
            processes.stop([record.processes.pop(APISERVER)], grace=APISERVER_GRACE)
            _save(state)


def start_apiserver(name: str) -> ClusterInfo:
    """Bring one cluster's API server back, same port and certificates, and wait
    until it is ready; its controller manager restarts with it, as in `up`."""
    with _locked():
        state = _load()
        if state is None or state.etcd is None or not processes.alive(state.etcd):
            raise RuntimeError("the clusters are down: run `up` first")
        record = state.cluster(name)
        if record.running(APISERVER):
            return record.info()
        _ensure_running(state, record, APISERVER)
        _wait_apiserver(record)
        _restart(state, record, CONTROLLER_MANAGER)
        return record.info()


def status() -> list[ProcessStatus]:
    state = _load()
    if state is None:
        return []

    def line(cluster: str | None, component: str, record: ProcessRecord | None) -> ProcessStatus:
        if record is None or not processes.alive(record):
            return ProcessStatus(cluster, component, None, 0)
        return ProcessStatus(cluster, component, record.pid, processes.rss_bytes([record]))

    lines = [line(None, ETCD, state.etcd)]
    for record in state.clusters:
        lines += [line(record.name, c, record.processes.get(c)) for c in reversed(COMPONENTS)]
    return lines


def _print_status() -> None:
    state = _load()
    lines = status()
    if state is None or not lines:
        print("no clusters")
        return
    # What each component serves: the API, and the app metrics of the simulated node.
    urls = {(r.name, APISERVER): f"https://127.0.0.1:{r.port}" for r in state.clusters}
    for r in state.clusters:
        if r.metrics_port is not None:
            urls[r.name, KUBELET] = _metrics_url(r.metrics_port)
    print(f"{'CLUSTER':10} {'COMPONENT':24} {'PID':>8} {'RSS MiB':>8}  URL")
    for entry in lines:
        pid = str(entry.pid) if entry.pid else "stopped"
        url = urls.get((entry.cluster or "", entry.component), "")
        cluster = entry.cluster or "-"
        print(f"{cluster:10} {entry.component:24} {pid:>8} {entry.rss / 2**20:8.0f}  {url}")
    total = sum(e.rss for e in lines)
    print(f"{'total':10} {'':24} {'':>8} {total / 2**20:8.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.clusters", description=__doc__.splitlines()[0]
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    start_up = verbs.add_parser(
        "up", help="start (or reuse) N clusters; print their admin kubeconfigs"
    )
    start_up.add_argument("--count", type=int, default=DEFAULT_COUNT)
    verbs.add_parser("down", help="stop every process the harness started")
    verbs.add_parser("status", help="list the components and whether they run")
    verbs.add_parser("stop", help="stop one cluster's API server").add_argument("name")
    verbs.add_parser("start", help="start one cluster's API server again").add_argument("name")
    args = parser.parse_args(argv)
    try:
        if args.verb == "up":
            for info in up(args.count):
                print(info.kubeconfig)
        elif args.verb == "down":
            down()
        elif args.verb == "status":
            _print_status()
        elif args.verb == "stop":
            stop_apiserver(args.name)
        elif args.verb == "start":
            print(start_apiserver(args.name).kubeconfig)
    except (LookupError, RuntimeError, TimeoutError, ValueError) as e:
        raise SystemExit(f"e2e: {e}") from e


if __name__ == "__main__":
    main()
