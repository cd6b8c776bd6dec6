"""The hub and its cluster registry, driven through the real CLI against real clusters."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import clusters as e2e
from e2e.binaries import K8S_VERSION, binary
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess
from hub.model.views import MemberDetail
from tests.fleet import STORES
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

LABELS = ["env=dev", "env=prod,region=eu", "env=prod,region=us"]


def _until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.25)


def _clusters(hub: HubProcess) -> dict[str, dict[str, Any]]:
    listing = hub.ok("cluster", "list", "-o", "json").json()
    assert_shape(listing, "clusters")
    return {c["name"]: c for c in listing["clusters"]}


def _join_all(hub: HubProcess, infos: list[ClusterInfo]) -> None:
    for info, labels in zip(infos, LABELS, strict=False):
        hub.ok("cluster", "join", str(info.kubeconfig), "--labels", labels)


@STORES
def test_join_list_label_rename_detach(hub: HubProcess, e2e_clusters: list[ClusterInfo]) -> None:
    _join_all(hub, e2e_clusters)
    listed = _clusters(hub)
    assert set(listed) == {i.name for i in e2e_clusters}
    first, second = e2e_clusters[0].name, e2e_clusters[1].name
    assert listed[first]["labels"] == {"env": "dev"}
    assert listed[second]["labels"] == {"env": "prod", "region": "eu"}
    for info in e2e_clusters:
        entry = listed[info.name]
        assert (entry["health"], entry["version"], entry["server"]) == (
            "Healthy",
            K8S_VERSION,
            info.server,
        )
        assert entry["lastSeen"]
    as_yaml = hub.ok("cluster", "list", "-o", "yaml").yaml()
    assert [c["name"] for c in as_yaml["clusters"]] == sorted(listed)
    table = hub.ok("cluster", "list").stdout
    assert "region=eu" in table and "Healthy" in table
    # A replica on the Kubernetes store watches only what its shards deploy to: nothing yet.
    watch = "not watched" if "kubernetes" in hub.serve_args else "synced"
    _until(lambda: all(c["watch"]["state"] == watch for c in _clusters(hub).values()))
    assert "WATCH" in hub.ok("cluster", "list").stdout.splitlines()[0]

    hub.ok("cluster", "labels", "add", first, "tier=gold", "env=staging")
    hub.ok("cluster", "labels", "del", first, "tier")
    assert _clusters(hub)[first]["labels"] == {"env": "staging"}

    hub.ok("cluster", "rename", first, "staging-1")
    renamed = _clusters(hub)
    assert "staging-1" in renamed and first not in renamed
    assert renamed["staging-1"]["uid"] == listed[first]["uid"]  # the same cluster
    shown = hub.ok("cluster", "show", "staging-1", "-o", "json").json()
    assert_shape(shown, MemberDetail)
    assert shown["uid"] == listed[first]["uid"]
    assert shown["kubeconfig"]["users"][0]["user"]["client-key-data"] == "REDACTED"

    hub.ok("cluster", "detach", "staging-1")
    assert "staging-1" not in _clusters(hub)
    missing = hub.cli("cluster", "detach", "staging-1")
    assert missing.code == 3 and "not registered" in missing.stderr


def test_restricted_token_and_exec_credentials(
    hub: HubProcess, e2e_clusters: list[ClusterInfo], tmp_path: Path
) -> None:
    info = e2e_clusters[0]
    restricted = hub.ok("cluster", "join", str(info.restricted_kubeconfig), "--name", "limited")
    assert "warning:" in restricted.stderr
    assert "cannot create namespaces" in restricted.stderr
    assert "namespace restricted" in restricted.stderr

    hub.ok("cluster", "join", str(info.token_kubeconfig), "--name", "by-token")

    plugin = tmp_path / "credential-plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": info.admin_token},
    }
    plugin.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(credential)}\nEOF\n")
    plugin.chmod(0o755)
    config = yaml.safe_load(info.token_kubeconfig.read_text())
    config["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "./credential-plugin",
            "interactiveMode": "Never",
        }
    }
    exec_config = tmp_path / "exec.kubeconfig"
    exec_config.write_text(yaml.safe_dump(config))
    hub.ok("cluster", "join", str(exec_config), "--name", "by-exec")

    # A plugin whose first token has expired: the client runs it again on the 401.
    rotating = tmp_path / "rotating-plugin"
    expired = {**credential, "status": {"token": "expired-token-000000"}}
    rotating.write_text(
        "#!/bin/sh\n"
        f"if [ -e \"{tmp_path}/ran\" ]; then cat <<'EOF'\n{json.dumps(credential)}\nEOF\n"
        f"else touch \"{tmp_path}/ran\"; cat <<'EOF'\n{json.dumps(expired)}\nEOF\nfi\n"
    )
    rotating.chmod(0o755)
    config["users"][0]["user"]["exec"]["command"] = str(rotating)
    rotating_config = tmp_path / "rotating.kubeconfig"
    rotating_config.write_text(yaml.safe_dump(config))
    hub.ok("cluster", "join", str(rotating_config), "--name", "by-rotating-exec")

    listed = _clusters(hub)
    assert listed["by-rotating-exec"]["health"] == "Healthy"
    assert {listed[n]["credential"] for n in ("limited", "by-token", "by-exec")} == {
        "token",
        "exec",
    }
    assert all(listed[n]["health"] == "Healthy" for n in ("limited", "by-token", "by-exec"))
    assert listed["by-exec"]["version"] == K8S_VERSION


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (a black hole on loopback)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _kubeconfig_variant(
    info: ClusterInfo, path: Path, change: Callable[[dict[str, Any]], None]
) -> Path:
    config = yaml.safe_load(info.token_kubeconfig.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))
    return path


def _powerless_token(info: ClusterInfo) -> str:
    """A real ServiceAccount token with no RBAC at all."""
    kubectl = [str(binary("kubectl")), "--kubeconfig", str(info.kubeconfig)]
    subprocess.run(
        [*kubectl, "create", "serviceaccount", "nobody", "-n", "default"],
        capture_output=True,
        check=False,
    )
    return subprocess.run(
        [*kubectl, "create", "token", "nobody", "-n", "default"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_bad_input_is_one_line_and_stores_nothing(
    hub: HubProcess, e2e_clusters: list[ClusterInfo], tmp_path: Path, silent_server: int
) -> None:
    one, two = e2e_clusters[0], e2e_clusters[1]
    hub.ok("cluster", "join", str(one.kubeconfig), "--name", "taken")
    not_yaml = tmp_path / "not-yaml"
    not_yaml.write_text("clusters: [\n  - {")
    not_kubeconfig = tmp_path / "not-kubeconfig"
    not_kubeconfig.write_text("hello: world\n")

    def server(url: str) -> Callable[[dict[str, Any]], None]:
        return lambda c: c["clusters"][0]["cluster"].__setitem__("server", url)

    def token(value: str) -> Callable[[dict[str, Any]], None]:
        return lambda c: c["users"][0]["user"].__setitem__("token", value)

    def foreign_certificate(config: dict[str, Any]) -> None:
        admin = yaml.safe_load(one.kubeconfig.read_text())["users"][0]["user"]
        config["users"][0]["user"] = admin

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    variant = tmp_path / "variant"
    cases: list[tuple[list[str], str]] = [
        ([str(tmp_path / "absent")], "no such file"),
        ([str(tmp_path)], "cannot read"),
        ([str(not_yaml)], "not valid YAML"),
        ([str(not_kubeconfig)], "not a kubeconfig"),
        ([str(one.kubeconfig), "--context", "nope"], "context 'nope' not found"),
        ([str(one.kubeconfig), "--name", "taken"], "already registered"),
        ([str(one.kubeconfig), "--name", "Bad_Name"], "must be a DNS label"),
        ([str(one.kubeconfig), "--name", "x", "--labels", "env=prod,bad label=1"], "bad label"),
        ([str(one.kubeconfig), "--name", "x", "--labels", "noequals"], "noequals"),
    ]
    for args, message in cases:
        result = hub.cli("cluster", "join", *args)
        assert result.code != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr

    remote_cases: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (server(f"https://127.0.0.1:{closed_port}"), "cannot connect"),
        (server(f"https://127.0.0.1:{silent_server}"), "no answer"),
        (server(two.server), "TLS failed"),
        (token("not-a-real-token-123456"), "credentials rejected"),
        (token(_powerless_token(one)), "may not create deployments"),
        (foreign_certificate, "credentials rejected"),
    ]
    for change, message in remote_cases:
        # one's client certificate is foreign to two; everything else is tried against one
        base = two if change is foreign_certificate else one
        path = _kubeconfig_variant(base, variant, change)
        result = hub.cli("cluster", "join", str(path), "--name", "bad", timeout=60)
        assert result.code != 0, message
        assert message in result.stderr, (message, result.stderr)
        assert "nothing was stored" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert set(_clusters(hub)) == {"taken"}


def test_no_secret_is_ever_printed_or_logged(
    hub: HubProcess, e2e_clusters: list[ClusterInfo], tmp_path: Path
) -> None:
    info = e2e_clusters[0]
    key = yaml.safe_load(info.kubeconfig.read_text())["users"][0]["user"]["client-key-data"]
    secrets = [info.admin_token, info.restricted_token, key, base64.b64decode(key).decode()]
    hub.ok("cluster", "join", str(info.token_kubeconfig), "--name", "tok", "--labels", "a=b")
    hub.ok("cluster", "join", str(info.kubeconfig), "--name", "cert")
    hub.ok("cluster", "join", str(info.restricted_kubeconfig), "--name", "limited")
    bad = _kubeconfig_variant(
        info,
        tmp_path / "bad",
        lambda c: c["clusters"][0]["cluster"].__setitem__("server", "https://127.0.0.1:1"),
    )
    hub.cli("cluster", "join", str(bad), "--name", "bad")
    for fmt in ("table", "json", "yaml"):
        hub.ok("cluster", "list", "-o", fmt)
        hub.ok("cluster", "labels", "add", "tok", "c=d", "-o", fmt)
        hub.ok("cluster", "labels", "del", "tok", "c", "-o", fmt)
    for fmt in ("json", "yaml"):
        for name in ("tok", "cert", "limited"):
            hub.ok("cluster", "show", name, "-o", fmt)
    hub.ok("cluster", "rename", "tok", "tok2")
    hub.ok("cluster", "detach", "tok2")
    hub.stop()
    printed = hub.everything_printed()
    assert "hub listening" in printed  # the log was captured at all
    for secret in secrets:
        assert secret not in printed
    store = b"".join(p.read_bytes() for p in hub.home.glob("flotilla.db*"))
    assert info.restricted_token.encode() in store  # kept, but only in the private store
    assert stat.S_IMODE((hub.home / "flotilla.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((hub.home / "token").stat().st_mode) == 0o600


def test_api_needs_the_token(hub: HubProcess) -> None:
    url = json.loads((hub.home / "hub.json").read_text())["url"]
    for header in ({}, {"Authorization": "Bearer wrong"}):
        request = urllib.request.Request(f"{url}/api/v1/clusters", headers=header)
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=10)
        assert error.value.code == 401
        error.value.close()


def test_replicas_behind_one_service_take_the_token_they_are_given(tmp_path: Path) -> None:
    shared = tmp_path / "token"
    shared.write_text(secrets.token_urlsafe(24) + "\n")
    hubs = [
        HubProcess(tmp_path / f"home-{i}", serve_args=("--token-file", str(shared))) for i in (0, 1)
    ]
    for hub in hubs:
        hub.start()
    try:
        for hub in hubs:
            url = json.loads((hub.home / "hub.json").read_text())["url"]
            request = urllib.request.Request(
                f"{url}/api/v1/clusters",
                headers={"Authorization": f"Bearer {shared.read_text().strip()}"},
            )
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200
    finally:
        for hub in hubs:
            hub.stop()
    shared.write_text("short\n")
    refused = HubProcess(tmp_path / "home-2", serve_args=("--token-file", str(shared)))
    with pytest.raises(RuntimeError, match="exited at start") as failed:
        refused.start()
    assert f"--token-file {shared}: expected one token" in str(failed.value)
    assert "short" not in str(failed.value), "a refused token is never echoed"
    assert "Traceback" not in str(failed.value)


def test_no_hub_running_says_how_to_start_one(tmp_path: Path) -> None:
    lonely = HubProcess(tmp_path / "nohub")
    result = lonely.cli("cluster", "list")
    assert result.code == 6
    assert "flotilla serve" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_cluster_is_reported_and_recovers(
    hub: HubProcess, e2e_clusters: list[ClusterInfo]
) -> None:
    _join_all(hub, e2e_clusters)
    victim = e2e_clusters[-1].name
    e2e.stop_apiserver(victim)
    try:
        _until(lambda: _clusters(hub)[victim]["health"] == "Unreachable")
        listed = _clusters(hub)
        assert all(listed[i.name]["health"] == "Healthy" for i in e2e_clusters[:-1])
        assert listed[victim]["lastSeen"]
    finally:
        e2e.start_apiserver(victim)
    _until(lambda: _clusters(hub)[victim]["health"] == "Healthy")


@STORES
def test_registry_survives_restart_and_sigkill_during_join(
    hub: HubProcess, e2e_clusters: list[ClusterInfo]
) -> None:
    _join_all(hub, e2e_clusters[:2])
    before = _clusters(hub)
    assert hub.stop() == 0
    hub.start()
    after = _clusters(hub)
    assert {n: c["labels"] for n, c in after.items()} == {n: c["labels"] for n, c in before.items()}

    joining = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub",
            "cluster",
            "join",
            str(e2e_clusters[2].kubeconfig),
            "--name",
            "late",
        ],
        env=hub.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    hub.kill()
    joining.wait(timeout=60)
    hub.start()
    after_kill = _clusters(hub)
    assert set(before) <= set(after_kill)
    if "late" in after_kill:  # fully registered, or not at all
        assert after_kill["late"]["version"] == K8S_VERSION
        assert after_kill["late"]["server"] == e2e_clusters[2].server


def _as_version_1(store: Path) -> None:
    """Turn a store back into what Flotilla wrote before clusters had a uid (schema 1):
    every later migration undone, its data kept."""
    db = sqlite3.connect(store)
    db.execute("DROP INDEX clusters_uid")
    db.execute("ALTER TABLE clusters DROP COLUMN uid")
    if "resume_step" in {row[1] for row in db.execute("PRAGMA table_info(rollouts)")}:
        db.execute("ALTER TABLE rollouts DROP COLUMN resume_step")
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()


def test_a_hub_started_on_an_old_store_keeps_working(
    hub: HubProcess, e2e_clusters: list[ClusterInfo]
) -> None:
    _join_all(hub, e2e_clusters[:2])
    first, second = e2e_clusters[0].name, e2e_clusters[1].name
    assert hub.stop() == 0
    _as_version_1(hub.home / "flotilla.db")
    hub.start()
    listed = _clusters(hub)
    assert set(listed) == {first, second}
    uids = {name: entry["uid"] for name, entry in listed.items()}
    assert len(set(uids.values())) == 2 and all(uids.values())
    _until(lambda: all(c["watch"]["state"] == "synced" for c in _clusters(hub).values()))
    hub.ok("cluster", "rename", first, "renamed")
    assert _clusters(hub)["renamed"]["uid"] == uids[first]
    hub.ok("cluster", "join", str(e2e_clusters[2].kubeconfig), "--name", "third")
    assert hub.stop() == 0
    hub.start()  # migrated once: the uids stay
    again = _clusters(hub)
    assert (again["renamed"]["uid"], again[second]["uid"]) == (uids[first], uids[second])
    assert hub.ok("cluster", "show", "third", "-o", "json").json()["uid"] == again["third"]["uid"]
