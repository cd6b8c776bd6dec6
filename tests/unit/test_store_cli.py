"""`flotilla install` and `serve --store kubernetes` on bad input: one line each, the
right exit code, and no credential in it; `install --print` gives what GitOps users
commit (the store namespace and every CRD the store uses)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml

from hub.state.kube.resources import KINDS

# What `flotilla` exits with on input it refuses (hub.errors.InvalidInput), and when the
# store cannot be reached (hub.errors.FlotillaError's default).
INVALID, UNREACHABLE = 2, 1
TOKEN = "s3cr3t-t0ken-of-the-store"


def _flotilla(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=60
    )


def _one_line(done: subprocess.CompletedProcess[str], code: int, *saying: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for words in saying:
        assert words in lines[0]
    assert "Traceback" not in done.stderr and TOKEN not in done.stderr + done.stdout


def test_install_prints_the_namespace_and_every_crd_for_gitops() -> None:
    done = _flotilla("install", "--print", "--store-namespace", "fleet-state")
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    assert documents[0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "fleet-state", "labels": {"app.kubernetes.io/managed-by": "flotilla"}},
    }
    crds = {d["metadata"]["name"] for d in documents if d["kind"] == "CustomResourceDefinition"}
    assert crds == {kind.crd_name for kind in KINDS}


def test_the_management_cluster_must_be_named() -> None:
    _one_line(_flotilla("install"), INVALID, "--store-kubeconfig")
    _one_line(_flotilla("serve", "--store", "kubernetes"), INVALID, "--store-kubeconfig")


def test_a_kubeconfig_that_cannot_be_used_or_reached_is_one_line(tmp_path: Path) -> None:
    _one_line(
        _flotilla("install", "--store-kubeconfig", str(tmp_path / "none")),
        UNREACHABLE,
        "cannot use its kubeconfig",
        "no such file",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"https://127.0.0.1:{probe.getsockname()[1]}"
    kubeconfig = tmp_path / "closed.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "m", "cluster": {"server": closed}}],
                "users": [{"name": "m", "user": {"token": TOKEN}}],
                "contexts": [{"name": "m", "context": {"cluster": "m", "user": "m"}}],
                "current-context": "m",
            }
        )
    )
    _one_line(
        _flotilla("install", "--store-kubeconfig", str(kubeconfig)),
        UNREACHABLE,
        f"Kubernetes API at {closed}",
        "cannot be reached",
    )
