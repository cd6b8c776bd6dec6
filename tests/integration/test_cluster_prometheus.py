"""A cluster's own Prometheus, registered through the real CLI: `cluster join --prometheus`
and `cluster prometheus`. The hub keeps URL and credentials in its private store, shows the
URL only, and refuses bad input with one line, storing nothing."""

from __future__ import annotations

import json
import sqlite3
import stat
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess, Result
from hub.model.views import MemberDetail, MemberView
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

PASSWORD = "pr0m-passw0rd-4f9c1d"
TOKEN = "pr0m-t0ken-8e21d0b7"
URL_PASSWORD = "in-url-passw0rd-77a3"
NOT_HTTP = "prometheus.url: expected an http:// or https:// URL"
NOT_BOTH = "give a bearer token or a username and password, not both"
BOTH_HALVES = "basic auth needs both a username and a password"
FIRST = "http://prom.eu.example:9090"
SECOND = "https://thanos.example/prometheus"


def _file(tmp_path: Path, name: str, text: str) -> Path:
    """A secret as an editor leaves it: with a newline the hub must not keep."""
    path = tmp_path / name
    path.write_text(f"{text}\n")
    return path


def _listed(hub: HubProcess) -> dict[str, dict[str, Any]]:
    listing = hub.ok("cluster", "list", "-o", "json").json()
    assert_shape(listing, "clusters")
    return {c["name"]: c for c in listing["clusters"]}


def _stored(hub: HubProcess, name: str) -> dict[str, str]:
    """What the hub's store keeps of the cluster's Prometheus, read behind its back."""
    db = sqlite3.connect(hub.home / "flotilla.db")
    try:
        row = db.execute("SELECT prometheus FROM clusters WHERE name = ?", (name,)).fetchone()
    finally:
        db.close()
    assert row is not None, f"cluster {name} is not in the store"
    stored: dict[str, str] = json.loads(row[0])
    return stored


def _shown(hub: HubProcess, name: str) -> str | None:
    """The cluster's Prometheus as `cluster show` gives it, in JSON and YAML alike."""
    as_json = hub.ok("cluster", "show", name, "-o", "json").json()
    assert_shape(as_json, MemberDetail)
    assert (
        hub.ok("cluster", "show", name, "-o", "yaml").yaml()["prometheus"] == as_json["prometheus"]
    )
    shown: str | None = as_json["prometheus"]
    return shown


def _refused(result: Result, code: int, message: str, args: tuple[str, ...]) -> None:
    assert result.code == code, (args, result.code, result.stderr)
    assert message in result.stderr, (args, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == "", args


def _put(hub: HubProcess, name: str, body: Any) -> tuple[int, dict[str, Any]]:
    """PUT the cluster's Prometheus straight to the API, as the CLI would."""
    url = json.loads((hub.home / "hub.json").read_text())["url"]
    token = (hub.home / "token").read_text().strip()
    request = urllib.request.Request(
        f"{url}/api/v1/clusters/{name}/prometheus",
        data=json.dumps(body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.load(error)


def _assert_no_secret_escaped(hub: HubProcess, secrets: list[str]) -> None:
    hub.stop()
    printed = hub.everything_printed()
    assert "hub listening" in printed  # the log was captured at all
    for secret in secrets:
        assert secret not in printed, secret
    assert stat.S_IMODE((hub.home / "flotilla.db").stat().st_mode) == 0o600


def test_join_with_a_prometheus_then_replace_and_clear_it(
    hub: HubProcess, e2e_clusters: list[ClusterInfo], tmp_path: Path
) -> None:
    password = _file(tmp_path, "password", PASSWORD)
    token = _file(tmp_path, "token", TOKEN)
    joined = hub.ok(
        "cluster",
        "join",
        str(e2e_clusters[0].kubeconfig),
        "--name",
        "eu",
        "--prometheus",
        f"{FIRST}/",
        "--prometheus-username",
        "grafana",
        "--prometheus-password-file",
        str(password),
        "-o",
        "json",
    ).json()
    assert_shape(joined, MemberView)
    assert joined["prometheus"] == FIRST  # the trailing slash dropped
    assert _listed(hub)["eu"]["prometheus"] == FIRST
    assert _shown(hub, "eu") == FIRST
    assert _stored(hub, "eu") == {"url": FIRST, "username": "grafana", "password": PASSWORD}

    replaced = hub.ok("cluster", "prometheus", "eu", SECOND, "--token-file", str(token))
    assert replaced.stdout.strip() == f"cluster eu: Prometheus {SECOND}"
    # Replaced, not merged: the basic-auth pair is gone with the old URL.
    assert _stored(hub, "eu") == {"url": SECOND, "token": TOKEN}

    assert hub.stop() == 0
    hub.start()  # kept across a restart
    assert _listed(hub)["eu"]["prometheus"] == SECOND
    assert _stored(hub, "eu") == {"url": SECOND, "token": TOKEN}

    cleared = hub.ok("cluster", "prometheus", "eu", "--clear", "-o", "json").json()
    assert_shape(cleared, MemberView)
    assert cleared["prometheus"] is None
    assert _listed(hub)["eu"]["prometheus"] is None
    assert _stored(hub, "eu") == {}
    again = hub.ok("cluster", "prometheus", "eu", "--clear")
    assert again.stdout.strip() == "cluster eu: no Prometheus"

    hub.ok("cluster", "prometheus", "eu", FIRST)  # one without credentials
    assert _stored(hub, "eu") == {"url": FIRST}

    _assert_no_secret_escaped(hub, [PASSWORD, TOKEN])


def test_bad_prometheus_input_is_one_line_and_stores_nothing(
    hub: HubProcess, e2e_clusters: list[ClusterInfo], tmp_path: Path
) -> None:
    password = _file(tmp_path, "password", PASSWORD)
    token = _file(tmp_path, "token", TOKEN)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    kept = {"url": FIRST, "token": TOKEN}
    kubeconfig = str(e2e_clusters[0].kubeconfig)
    tok, user = ("--prometheus-token-file", str(token)), ("--prometheus-username", "grafana")
    pw = ("--prometheus-password-file", str(password))
    hub.ok("cluster", "join", kubeconfig, "--name", "kept", "--prometheus", FIRST, *tok)
    assert _stored(hub, "kept") == kept

    in_url = f"http://grafana:{URL_PASSWORD}@prom.example:9090"
    # One of each kind through the CLI, for its one line and exit code; the hub's checks in
    # all their variants through the API below, where a case costs no Python start-up.
    join = ("cluster", "join", kubeconfig, "--name", "other")
    absent = ("--prometheus-token-file", str(tmp_path / "absent"))
    cases: list[tuple[tuple[str, ...], int, str]] = [
        ((*join, "--prometheus", in_url), 2, "not in the URL"),
        ((*join, "--prometheus", "ftp://prom.example"), 2, NOT_HTTP),
        ((*join, "--prometheus", FIRST, *tok, *user, *pw), 2, NOT_BOTH),
        ((*join, "--prometheus", FIRST, *user), 2, BOTH_HALVES),
        ((*join, *user, *pw), 2, "need --prometheus URL"),
        ((*join, "--prometheus", FIRST, *absent), 2, "cannot read"),
        ((*join, "--prometheus", FIRST, "--prometheus-token-file", str(empty)), 2, "is empty"),
    ]
    set_kept = ("cluster", "prometheus", "kept")
    cases += [
        ((*set_kept, in_url), 2, "not in the URL"),
        ((*set_kept, "ftp://prom.example"), 2, NOT_HTTP),
        ((*set_kept, SECOND, "--token-file", str(token), "--username", "grafana"), 2, NOT_BOTH),
        ((*set_kept, SECOND, "--username", "grafana"), 2, BOTH_HALVES),
        ((*set_kept, SECOND, "--password-file", str(empty), "--username", "g"), 2, "is empty"),
        (set_kept, 2, "give the Prometheus URL, or --clear"),
        ((*set_kept, SECOND, "--clear"), 2, "give the Prometheus URL, or --clear"),
        ((*set_kept, "--clear", "--token-file", str(token)), 2, "--clear takes no --token-file"),
        (("cluster", "prometheus", "ghost", SECOND), 3, "cluster 'ghost' is not registered"),
        (("cluster", "prometheus", "ghost", "--clear"), 3, "cluster 'ghost' is not registered"),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: hub.cli(*case[0]), cases))
    for (args, code, message), result in zip(cases, results, strict=True):
        _refused(result, code, message, args)

    api_cases: list[tuple[Any, str]] = [
        ({"url": "http://grafana@prom.example"}, "not in the URL"),
        ({"url": f"http://:{URL_PASSWORD}@prom.example"}, "not in the URL"),
        ({"url": "prom.example:9090"}, NOT_HTTP),
        ({"url": "http://"}, NOT_HTTP),
        ({"url": "http:///api"}, NOT_HTTP),
        ({"token": TOKEN}, NOT_HTTP),
        ({"url": "http://prom.example:99999"}, "the port is not a number"),
        ({"url": "http://prom.example:http"}, "the port is not a number"),
        ({"url": FIRST, "token": TOKEN, "password": PASSWORD}, NOT_BOTH),
        ({"url": FIRST, "token": TOKEN, "username": "g", "password": PASSWORD}, NOT_BOTH),
        ({"url": FIRST, "password": PASSWORD}, BOTH_HALVES),
        ({"url": FIRST, "bearer": TOKEN}, "unknown field bearer"),
        ({"url": FIRST, "token": 42}, "every field is a string"),
        ({"url": FIRST, "token": 0}, "every field is a string"),
        ({"url": "http://prom.example/?api_key=abc"}, "no user, query or fragment"),
        ({"url": ["http://prom.example"]}, "every field is a string"),
        ([FIRST], "must be a JSON object"),
    ]
    for body, message in api_cases:
        status, answer = _put(hub, "kept", body)
        assert (status, answer["exit_code"]) == (422, 2), (body, answer)
        assert message in answer["error"], (body, answer)
        assert "\n" not in answer["error"]

    assert set(_listed(hub)) == {"kept"}
    assert _listed(hub)["kept"]["prometheus"] == FIRST
    assert _stored(hub, "kept") == kept
    _assert_no_secret_escaped(hub, [PASSWORD, TOKEN, URL_PASSWORD])
