"""Kubeconfig files: parse, pick a context, make self-contained, redact.

A kubeconfig is read once, where the file is (the CLI's machine), and turned into a
single-context document whose file references are inlined. The hub stores only that
document, so a member cluster keeps working after the original file moves or changes.

Credentials are secrets: `redact` is the only view of a kubeconfig that may reach a
log, an error or an API response, and no error message here quotes a value.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REDACTED = "REDACTED"

# Fields of a kubeconfig `user` that carry a secret, and of `cluster` that are files.
_SECRET_USER_FIELDS = ("token", "password", "client-key-data", "client-certificate-data")
_FILE_FIELDS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
}


class KubeconfigError(ValueError):
    """A kubeconfig that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Kubeconfig:
    """One context of a kubeconfig, self-contained (no file references)."""

    context: str
    server: str
    credential: str  # token | client-certificate | exec | basic | none
    document: dict[str, Any]

    @property
    def namespace(self) -> str | None:
        """The context's namespace, if it names one."""
        namespace = self.document["contexts"][0]["context"].get("namespace")
        return str(namespace) if namespace else None

    def redacted(self) -> dict[str, Any]:
        return redact(self.document)


def load_file(path: Path, context: str | None = None) -> Kubeconfig:
    """Read a kubeconfig file the way kubectl does and keep one context of it."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise KubeconfigError(f"{path}: no such file") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as e:
        raise KubeconfigError(f"{path}: cannot read: {type(e).__name__}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise KubeconfigError(f"{path}: not valid YAML{where}") from None
    return from_dict(raw, source=str(path), context=context, base_dir=path.parent)


def from_dict(
    raw: object,
    *,
    source: str,
    context: str | None = None,
    base_dir: Path | None = None,
) -> Kubeconfig:
    """Validate a parsed kubeconfig and reduce it to one self-contained context."""
    if not isinstance(raw, Mapping) or not any(k in raw for k in ("clusters", "contexts", "users")):
        raise KubeconfigError(f"{source}: not a kubeconfig (expected clusters, contexts, users)")
    contexts = _named(raw, "contexts", source)
    name = context or raw.get("current-context")
    if not name:
        raise KubeconfigError(f"{source}: current-context is not set; pass --context")
    if name not in contexts:
        available = ", ".join(sorted(contexts)) or "none"
        raise KubeconfigError(f"{source}: context {name!r} not found (available: {available})")
    ctx = contexts[name]
    if not isinstance(ctx, Mapping):
        raise KubeconfigError(f"{source}: contexts[{name}].context: expected a map")
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    clusters, users = _named(raw, "clusters", source), _named(raw, "users", source)
    if cluster_name not in clusters:
        raise KubeconfigError(f"{source}: contexts[{name}].cluster: {cluster_name!r} not found")
    if user_name is not None and user_name not in users:
        raise KubeconfigError(f"{source}: contexts[{name}].user: {user_name!r} not found")
    cluster = dict(clusters[cluster_name] or {})
    user = dict(users.get(user_name) or {}) if user_name is not None else {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        raise KubeconfigError(f"{source}: clusters[{cluster_name}].server: expected an https URL")
    base = base_dir or Path.cwd()
    _inline_files(cluster, base, f"{source}: clusters[{cluster_name}]")
    _inline_files(user, base, f"{source}: users[{user_name}]")
    _inline_token_file(user, base, f"{source}: users[{user_name}]")
    _check_pem_data(cluster, user, source)
    if isinstance(user.get("exec"), Mapping):
        user["exec"] = _resolved_exec(user["exec"], base, f"{source}: users[{user_name}].exec")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": name,
                    "user": name,
                    **({"namespace": ctx["namespace"]} if ctx.get("namespace") else {}),
                },
            }
        ],
    }
    return Kubeconfig(
        context=name, server=server.rstrip("/"), credential=_credential(user), document=document
    )


def redact(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy safe to show: every credential replaced, exec env values hidden."""
    safe = copy.deepcopy(dict(document))
    for entry in safe.get("users") or []:
        user = entry.get("user") or {}
        for field in _SECRET_USER_FIELDS:
            if field in user:
                user[field] = REDACTED
        exec_ = user.get("exec")
        if isinstance(exec_, dict):
            for env in exec_.get("env") or []:
                if isinstance(env, dict) and "value" in env:
                    env["value"] = REDACTED
            if exec_.get("args"):
                exec_["args"] = [REDACTED for _ in exec_["args"]]
        if isinstance(user.get("auth-provider"), dict):
            user["auth-provider"] = {"name": user["auth-provider"].get("name"), "config": REDACTED}
    return safe


def secrets_of(document: Mapping[str, Any]) -> list[str]:
    """Every secret string in a kubeconfig, for scrubbing text that may echo one."""
    found: list[str] = []
    for entry in document.get("users") or []:
        user = entry.get("user") or {}
        for field in ("token", "password", "client-key-data"):
            value = user.get(field)
            if isinstance(value, str) and value:
                found.append(value)
    return found


def _named(raw: Mapping[str, Any], key: str, source: str) -> dict[str, Any]:
    items = raw.get(key) or []
    if not isinstance(items, list):
        raise KubeconfigError(f"{source}: {key}: expected a list")
    out: dict[str, Any] = {}
    inner = key[:-1]  # clusters -> cluster
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise KubeconfigError(f"{source}: {key}[{i}]: expected a map with a name")
        out[item["name"]] = item.get(inner)
    return out


def _inline_files(section: dict[str, Any], base: Path, where: str) -> None:
    for file_field, data_field in _FILE_FIELDS.items():
        path = section.pop(file_field, None)
        if path is None or data_field in section:
            continue
        full = Path(path) if Path(path).is_absolute() else base / path
        try:
            section[data_field] = base64.b64encode(full.read_bytes()).decode()
        except OSError:
            raise KubeconfigError(f"{where}.{file_field}: cannot read {full}") from None


def _inline_token_file(user: dict[str, Any], base: Path, where: str) -> None:
    path = user.pop("tokenFile", None)
    if path is None or user.get("token"):
        return
    full = Path(path) if Path(path).is_absolute() else base / path
    try:
        user["token"] = full.read_text().strip()
    except OSError:
        raise KubeconfigError(f"{where}.tokenFile: cannot read {full}") from None


def _check_pem_data(cluster: Mapping[str, Any], user: Mapping[str, Any], source: str) -> None:
    for section, field in (
        (cluster, "certificate-authority-data"),
        (user, "client-certificate-data"),
        (user, "client-key-data"),
    ):
        value = section.get(field)
        if value is None:
            continue
        try:
            decoded = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise KubeconfigError(f"{source}: {field}: not base64") from None
        if b"-----BEGIN" not in decoded:
            raise KubeconfigError(f"{source}: {field}: not a PEM document")
    if bool(user.get("client-certificate-data")) != bool(user.get("client-key-data")):
        raise KubeconfigError(f"{source}: a client certificate needs both certificate and key")


def _resolved_exec(exec_: Mapping[str, Any], base: Path, where: str) -> dict[str, Any]:
    """kubectl resolves a relative exec command containing a slash against the file's dir."""
    resolved = dict(exec_)
    command = resolved.get("command")
    if not isinstance(command, str) or not command:
        raise KubeconfigError(f"{where}.command: expected a command")
    if not resolved.get("apiVersion"):
        raise KubeconfigError(f"{where}.apiVersion: required")
    if "/" in command and not Path(command).is_absolute():
        resolved["command"] = str((base / command).resolve())
    return resolved


def _credential(user: Mapping[str, Any]) -> str:
    if user.get("exec"):
        return "exec"
    if user.get("client-certificate-data"):
        return "client-certificate"
    if user.get("token"):
        return "token"
    if user.get("username"):
        return "basic"
    return "none"
