"""`flotilla diff` on the real clusters: what `up` would create, change and prune, asked of
the API servers by dry-run apply; exit codes 0 and 1; Secret values never shown; server
defaults and other managers' fields not shown; an unreachable cluster named while the
others are diffed; and the drift of a running revision after a `kubectl` edit."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.clusters import ClusterInfo
from e2e.faultproxy import running_proxy
from e2e.hubproc import HubProcess, Result
from e2e.kubeconfigs import derive
from e2e.kubectl import kubectl
from tests.fleet import NAMES, Fleet
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

IMAGE = "registry.local/canary-demo:1.0.0"
SECRETS = ("s3cret-one", "s3cret-two")
# A chart whose values say which objects it renders: ConfigMaps by name, a Secret when
# there is a password, a Deployment when there is an image.
CHART = {
    "Chart.yaml": "apiVersion: v2\nname: shapes\nversion: 0.1.0\n",
    "values.yaml": "configmaps: []\ngreeting: hello\npassword: ''\nimage: ''\n",
    "templates/configmaps.yaml": (
        "{{- range .Values.configmaps }}\n---\napiVersion: v1\nkind: ConfigMap\n"
        "metadata:\n  name: {{ . }}\ndata:\n  greeting: {{ $.Values.greeting | quote }}\n"
        "{{- end }}\n"
    ),
    "templates/secret.yaml": (
        "{{- if .Values.password }}\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n"
        "stringData:\n  password: {{ .Values.password | quote }}\n{{- end }}\n"
    ),
    "templates/deployment.yaml": (
        "{{- if .Values.image }}\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        "  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n"
        "  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n"
        "        - name: web\n          image: {{ .Values.image }}\n{{- end }}\n"
    ),
}


def shapes_app(
    workdir: Path,
    namespace: str,
    *,
    env: str = "dev",
    file: str = "app.yaml",
    policies: Sequence[dict[str, Any]] = (),
    **values: Any,
) -> Path:
    """Application `shapes` of the chart above, on the clusters labelled `env`, in
    `namespace`, with more `policies`; `values` go to the chart."""
    for name, text in CHART.items():
        path = workdir / "charts" / "shapes" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    document = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": "shapes"},
        "spec": {
            "components": [
                {
                    "name": "shapes",
                    "type": "helm",
                    "properties": {
                        "repoType": "local",
                        "url": "charts",
                        "chart": "shapes",
                        "values": values,
                    },
                }
            ],
            "policies": [
                {
                    "name": "where",
                    "type": "topology",
                    "properties": {"clusterLabelSelector": {"env": env}, "namespace": namespace},
                },
                *policies,
            ],
        },
    }
    path = workdir / file
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def objects(view: dict[str, Any], cluster: str = "dev") -> dict[str, dict[str, Any]]:
    """`Kind/name` -> entry, of the one release on `cluster`."""
    found = next(c for c in view["clusters"] if c["name"] == cluster)
    (release,) = found["releases"]
    return {f"{o['kind']}/{o['name']}": o for o in release["objects"]}


def diff(hub: HubProcess, *args: str) -> Result:
    return hub.cli("diff", *args, timeout=180)


def _no_secret_in(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
        assert base64.b64encode(secret.encode()).decode() not in text


def test_diff_shows_created_changed_and_pruned_objects_with_exit_codes(fleet: Fleet) -> None:
    ns, hub = fleet.namespace, fleet.hub
    first = shapes_app(fleet.workdir, ns, configmaps=["a", "b"], password=SECRETS[0], image=IMAGE)
    before = diff(hub, "-f", str(first), "-o", "json")
    assert before.code == 1, before.stderr
    view = before.json()
    assert_shape(view, "diff")
    assert (view["application"], view["revision"], view["changes"]) == ("shapes", None, 4)
    assert [c["name"] for c in view["clusters"]] == ["dev"]  # only where the file places it
    assert {k: o["action"] for k, o in objects(view).items()} == {
        "ConfigMap/a": "created",
        "ConfigMap/b": "created",
        "Secret/creds": "created",
        "Deployment/web": "created",
    }
    assert "+  greeting: hello" in objects(view)["ConfigMap/a"]["diff"]
    _no_secret_in(before.stdout)
    assert not _names(fleet, "configmaps,secrets,deployments") & {"a", "b", "creds", "web"}

    assert fleet.up(first, "--wait").code == 0

    # Right after an `up` of the same file: nothing to change, although the live
    # Deployment carries every field the server defaulted (strategy, probes' defaults...).
    same = diff(hub, "-f", str(first), "-o", "json")
    assert same.code == 0, same.stdout + same.stderr
    assert set(o["action"] for o in objects(same.json()).values()) == {"unchanged"}
    assert diff(hub, "-f", str(first)).stdout.strip().endswith("no changes")

    second = shapes_app(
        fleet.workdir, ns, configmaps=["a", "c"], greeting="hi", password=SECRETS[1], image=IMAGE
    )
    changed = diff(hub, "-f", str(second), "-o", "json")
    assert changed.code == 1, changed.stderr
    view = changed.json()
    assert_shape(view, "diff")
    entries = objects(view)
    assert {k: o["action"] for k, o in entries.items()} == {
        "ConfigMap/a": "changed",
        "ConfigMap/c": "created",
        "Secret/creds": "changed",
        "Deployment/web": "unchanged",
        "ConfigMap/b": "pruned",
    }
    assert view["changes"] == 4
    lines = entries["ConfigMap/a"]["diff"].splitlines()
    assert "-  greeting: hello" in lines and "+  greeting: hi" in lines
    assert not any(line.startswith(("-", "+")) and "revision" in line for line in lines[2:])
    secret = entries["Secret/creds"]["diff"].splitlines()
    assert "-  password: '(redacted: old value)'" in secret
    assert "+  password: '(redacted: new value)'" in secret
    assert "-  greeting: hello" in entries["ConfigMap/b"]["diff"]
    for fmt in ("json", "yaml", "table"):
        _no_secret_in(diff(hub, "-f", str(second), "-o", fmt).stdout)

    table = diff(hub, "-f", str(second))
    assert table.code == 1
    assert f"~ ConfigMap {ns}/a: changed" in table.stdout
    assert f"+ ConfigMap {ns}/c: created" in table.stdout
    assert f"- ConfigMap {ns}/b: pruned" in table.stdout
    assert "1 unchanged" in table.stdout and "4 object(s) would change" in table.stdout
    assert "\x1b[" not in table.stdout  # piped: plain
    # A diff changes nothing: the second file's objects are not there.
    assert fleet.kubectl("dev", "get", "configmap", "a")["data"] == {"greeting": "hello"}
    names = _names(fleet, "configmaps")
    assert {"a", "b"} <= names and "c" not in names


def _names(fleet: Fleet, kinds: str) -> set[str]:
    return {i["metadata"]["name"] for i in fleet.kubectl("dev", "get", kinds)["items"]}


def test_fields_others_own_or_the_server_defaults_do_not_show(fleet: Fleet) -> None:
    ns = fleet.namespace
    path = shapes_app(fleet.workdir, ns, configmaps=["a"], image=IMAGE)
    assert fleet.up(path, "--wait").code == 0
    config = fleet.clusters["dev"].kubeconfig
    kubectl(config, "-n", ns, "annotate", "configmap", "a", "team=payments")
    kubectl(config, "-n", ns, "label", "deployment", "web", "owner=someone")
    result = diff(fleet.hub, "-f", str(path), "-o", "json")
    assert result.code == 0, result.stdout
    assert {o["action"] for o in objects(result.json()).values()} == {"unchanged"}


def test_what_apply_once_leaves_alone_is_no_change(fleet: Fleet) -> None:
    once = {
        "name": "once",
        "type": "apply-once",
        "properties": {
            "enable": True,
            "rules": [
                {"selector": {"resourceNames": ["a"]}, "strategy": {"path": ["data.greeting"]}},
                {"selector": {"resourceNames": ["b"]}, "strategy": {"path": ["*"]}},
            ],
        },
    }
    ns = fleet.namespace
    path = shapes_app(fleet.workdir, ns, policies=[once], configmaps=["a", "b", "c"])
    assert fleet.up(path, "--wait").code == 0
    changed = shapes_app(
        fleet.workdir,
        ns,
        file="hi.yaml",
        policies=[once],
        configmaps=["a", "b", "c"],
        greeting="hi",
    )
    result = diff(fleet.hub, "-f", str(changed), "-o", "json")
    assert result.code == 1, result.stderr
    assert {k: o["action"] for k, o in objects(result.json()).items()} == {
        "ConfigMap/a": "unchanged",  # its greeting is applied once
        "ConfigMap/b": "apply-once",
        "ConfigMap/c": "changed",
    }


def test_a_namespace_not_there_yet_means_created_and_is_not_created(fleet: Fleet) -> None:
    absent = f"{fleet.namespace}-new"
    path = shapes_app(fleet.workdir, absent, configmaps=["a"], password=SECRETS[0])
    result = diff(fleet.hub, "-f", str(path), "-o", "json")
    assert result.code == 1, result.stderr
    entries = objects(result.json())
    assert {o["action"] for o in entries.values()} == {"created"}
    assert entries["ConfigMap/a"]["namespace"] == absent
    _no_secret_in(result.stdout)
    gone = kubectl(fleet.clusters["dev"].kubeconfig, "get", "namespace", absent, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def test_revision_shows_the_drift_of_a_kubectl_edit(fleet_without_healing: Fleet) -> None:
    fleet = fleet_without_healing
    ns = fleet.namespace
    path = shapes_app(fleet.workdir, ns, configmaps=["a"], image=IMAGE)
    assert fleet.up(path, "--wait").code == 0
    assert diff(fleet.hub, "shapes").code == 0

    config = fleet.clusters["dev"].kubeconfig
    kubectl(config, "-n", ns, "patch", "configmap", "a", "-p", '{"data":{"greeting":"edited"}}')
    kubectl(config, "-n", ns, "set", "image", "deployment/web", "web=registry.local/other:9")
    result = diff(fleet.hub, "shapes", "--revision", "1", "-o", "json")
    assert result.code == 1, result.stderr
    view = result.json()
    assert_shape(view, "diff")
    assert view["revision"] == 1
    entries = objects(view)
    assert "-  greeting: edited" in entries["ConfigMap/a"]["diff"].splitlines()
    assert "+  greeting: hello" in entries["ConfigMap/a"]["diff"].splitlines()
    web = entries["Deployment/web"]["diff"]
    assert "registry.local/other:9" in web and IMAGE in web
    assert diff(fleet.hub, "shapes", "--revision", "7").code == 3
    assert diff(fleet.hub, "nope").code == 3
    assert diff(fleet.hub, "shapes", "--cluster", "nowhere").code == 3


def test_an_unreachable_cluster_is_named_and_the_others_are_diffed(
    hub: HubProcess, e2e_clusters: list[ClusterInfo], namespace: str, tmp_path: Path
) -> None:
    eu, us = e2e_clusters[1:3]
    hub.ok("cluster", "join", str(eu.kubeconfig), "--name", NAMES[1], "--labels", "env=prod")
    with running_proxy(int(us.server.rpartition(":")[2])) as proxy:
        through = derive(us.kubeconfig, tmp_path / "through.yaml", server=proxy.url)
        hub.ok("cluster", "join", str(through), "--name", NAMES[2], "--labels", "env=prod")
        proxy.die()  # prod-us, as this hub sees it, is gone; the shared cluster runs on
        port = proxy.port
    path = shapes_app(tmp_path, namespace, env="prod", configmaps=["a"])
    result = diff(hub, "-f", str(path), "-o", "json")
    assert result.code == 5, result.stdout + result.stderr
    view = result.json()
    assert_shape(view, "diff")
    by_name = {c["name"]: c for c in view["clusters"]}
    assert by_name["prod-us"]["error"] and by_name["prod-us"]["releases"] == []
    assert f"127.0.0.1:{port}" in by_name["prod-us"]["error"]
    assert by_name["prod-eu"]["error"] is None
    assert objects(view, "prod-eu")["ConfigMap/a"]["action"] == "created"
    assert view["changes"] == 1

    table = diff(hub, "-f", str(path))
    assert table.code == 5
    assert "cluster prod-us: could not be diffed: " in table.stdout
    assert "1 cluster(s) could not be diffed" in table.stdout
    only = diff(hub, "-f", str(path), "--cluster", "prod-eu", "-o", "json")
    assert only.code == 1 and [c["name"] for c in only.json()["clusters"]] == ["prod-eu"]
    assert only.json()["changes"] == 1
