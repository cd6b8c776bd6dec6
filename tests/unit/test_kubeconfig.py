"""Kubeconfig parsing, context choice, inlining of file references, and redaction."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusters import kubeconfig as kc

PEM = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
KEY = base64.b64encode(
    b"-----BEGIN EC PRIVATE KEY-----\nSECRETKEYMATERIAL\n-----END EC PRIVATE KEY-----\n"
).decode()
TOKEN = "tok-very-secret-0123456789"


def _config(user: Mapping[str, object], **extra: object) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "dev",
        "clusters": [
            {
                "name": "c",
                "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": PEM},
            }
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "dev", "context": {"cluster": "c", "user": "u"}},
            {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "ns"}},
        ],
        **extra,
    }


def test_token_context_is_reduced_to_one_self_contained_context() -> None:
    config = kc.from_dict(_config({"token": TOKEN}), source="f")
    assert config.context == "dev"
    assert config.server == "https://127.0.0.1:6443"
    assert config.credential == "token"
    doc = config.document
    assert [c["name"] for c in doc["contexts"]] == ["dev"]
    assert doc["users"][0]["user"]["token"] == TOKEN


def test_explicit_context_wins_and_keeps_namespace() -> None:
    config = kc.from_dict(_config({"token": TOKEN}), source="f", context="other")
    assert config.document["contexts"][0]["context"]["namespace"] == "ns"


def test_unknown_context_lists_the_available_ones() -> None:
    with pytest.raises(
        kc.KubeconfigError, match=r"f: context 'nope' not found \(available: dev, other\)"
    ):
        kc.from_dict(_config({"token": TOKEN}), source="f", context="nope")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([1, 2], "not a kubeconfig"),
        ({"foo": 1}, "not a kubeconfig"),
        (_config({"token": TOKEN}, **{"current-context": ""}), "current-context is not set"),
    ],
)
def test_not_a_kubeconfig(raw: object, message: str) -> None:
    with pytest.raises(kc.KubeconfigError, match=message):
        kc.from_dict(raw, source="f")


def test_file_references_are_inlined(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(base64.b64decode(PEM))
    (tmp_path / "key.pem").write_bytes(base64.b64decode(KEY))
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(_config({"client-certificate": "cert.pem", "client-key": "key.pem"}))
    )
    config = kc.load_file(path)
    user = config.document["users"][0]["user"]
    assert config.credential == "client-certificate"
    assert user["client-key-data"] == KEY
    assert "client-key" not in user


def test_missing_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(kc.KubeconfigError, match="no such file"):
        kc.load_file(tmp_path / "absent")
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    with pytest.raises(kc.KubeconfigError, match=r"bad: not valid YAML \(line"):
        kc.load_file(bad)


def test_certificate_without_key_is_refused() -> None:
    with pytest.raises(kc.KubeconfigError, match="needs both certificate and key"):
        kc.from_dict(_config({"client-certificate-data": PEM}), source="f")


def test_exec_command_relative_to_the_file(tmp_path: Path) -> None:
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/cred"}}
    config = kc.from_dict(_config(user), source="f", base_dir=tmp_path)
    assert config.credential == "exec"
    assert config.document["users"][0]["user"]["exec"]["command"] == str(tmp_path / "bin" / "cred")


def test_redaction_hides_every_credential_and_errors_never_quote_them() -> None:
    user = {
        "token": TOKEN,
        "client-certificate-data": PEM,
        "client-key-data": KEY,
        "exec": {
            "apiVersion": "v1",
            "command": "cred",
            "args": ["--token", TOKEN],
            "env": [{"name": "T", "value": TOKEN}],
        },
    }
    config = kc.from_dict(_config(user), source="f")
    shown = json.dumps(config.redacted())
    assert TOKEN not in shown and KEY not in shown
    assert kc.secrets_of(config.document) == [TOKEN, KEY]
    broken = _config({"token": TOKEN})
    broken["clusters"][0]["cluster"]["server"] = TOKEN
    with pytest.raises(kc.KubeconfigError) as error:
        kc.from_dict(broken, source="f")
    assert TOKEN not in str(error.value)
