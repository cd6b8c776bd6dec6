"""Kubeconfig files for the clients of one local cluster.

Users of the clusters (kubectl, the hub, tests) get self-contained files with
every credential embedded, since that is what a user joins to a hub. The
harness's own components (controller manager, simulated kubelet) get files that
point at the PEM files next to them. Every file is 0600: they hold keys or tokens.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write(
    path: Path,
    name: str,
    server: str,
    ca: Path,
    user: dict[str, Any],
    namespace: str | None = None,
    embed: bool = True,
) -> Path:
    """One cluster, one user and one context, all called `name`. `user` holds
    client-certificate/client-key paths or a token; with `embed` the certificate
    files become *-data fields, otherwise paths are made relative to `path`."""
    credentials = dict(user)
    for field in ("client-certificate", "client-key"):
        if field in credentials:
            file = Path(credentials.pop(field))
            if embed:
                credentials[f"{field}-data"] = _b64(file)
            else:
                credentials[field] = os.path.relpath(file, path.parent)
    cluster: dict[str, Any] = {"server": server}
    if embed:
        cluster["certificate-authority-data"] = _b64(ca)
    else:
        cluster["certificate-authority"] = os.path.relpath(ca, path.parent)
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": credentials}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }
    return _save(path, config)


def derive(
    source: Path, path: Path, *, server: str | None = None, user: dict[str, Any] | None = None
) -> Path:
    """A copy of the one-cluster kubeconfig `source` at `path` (0600), pointing at another
    `server` (a proxy in front of the cluster: the CA stays, the server's certificate is
    valid for 127.0.0.1) and/or with `user`'s credentials instead of the original ones."""
    config = yaml.safe_load(source.read_text())
    if server is not None:
        config["clusters"][0]["cluster"]["server"] = server
    if user is not None:
        config["users"][0]["user"] = dict(user)
    return _save(path, config)


def _save(path: Path, config: dict[str, Any]) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out, sort_keys=False)
    return path
