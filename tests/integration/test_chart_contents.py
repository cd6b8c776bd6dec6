"""What a chart holds besides templates, deployed to the real clusters as Helm deploys it:
subcharts switched by conditions and tags, `import-values`, globals and a library chart
(e2e/charts/umbrella-demo); a dependency Chart.yaml declares and `charts/` lacks, fetched
from the real chart repository and pinned; `lookup` and a random value, named by `plan`;
and a `helm.sh/resource-policy: keep` object that outlives a prune and the deletion."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.binaries import binary, ensure_built
from e2e.chartrepo import CHARTS_DIR, ChartRepo, OciRegistry
from e2e.kubectl import kubectl
from hub.charts import ChartCache, ChartPin, ChartRef
from tests.fleet import Fleet, until
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

APP = "umbrella"
UMBRELLA = "umbrella-demo"
PROD = ("prod-eu", "prod-us")


def umbrella_app(
    fleet: Fleet,
    values: dict[str, Any] | None = None,
    *,
    chart: dict[str, Any] | None = None,
    file: str = "umbrella.yaml",
    everywhere: bool = True,
) -> Path:
    """The umbrella chart on every cluster (or only dev), dev with its worker switched off
    by its condition, prod with the extras tag on and the global environment `prod`."""
    properties = chart or {"repoType": "helm", "url": fleet.repo_url, "chart": "umbrella-demo"}
    component = {
        "name": APP,
        "type": "helm",
        "properties": {"version": "1.0.0", **properties, "values": values or {}},
    }
    dev = {"name": APP, "properties": {"values": {"worker": {"enabled": False}}}}
    prod = {
        "name": APP,
        "properties": {"values": {"global": {"environment": "prod"}, "tags": {"extras": True}}},
    }
    steps = [{"name": "deploy-dev", "type": "deploy", "properties": {"policies": ["dev", "d"]}}]
    policies: list[dict[str, Any]] = [
        _topology("dev", {"env": "dev"}, fleet.namespace),
        {"name": "d", "type": "override", "properties": {"components": [dev]}},
    ]
    if everywhere:
        steps.append(
            {"name": "deploy-prod", "type": "deploy", "properties": {"policies": ["prod", "p"]}}
        )
        policies += [
            _topology("prod", {"env": "prod"}, fleet.namespace),
            {"name": "p", "type": "override", "properties": {"components": [prod]}},
        ]
    document = {
        "apiVersion": "core.oam.dev/v1beta1",
        "kind": "Application",
        "metadata": {"name": APP},
        "spec": {"components": [component], "policies": policies, "workflow": {"steps": steps}},
    }
    path = fleet.workdir / file
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _topology(name: str, labels: dict[str, str], namespace: str) -> dict[str, Any]:
    properties = {"clusterLabelSelector": labels, "namespace": namespace}
    return {"name": name, "type": "topology", "properties": properties}


def objects(fleet: Fleet, cluster: str) -> dict[str, dict[str, Any]]:
    """`Kind/name` -> object, of what Flotilla manages in the test namespace on `cluster`."""
    found = fleet.kubectl(
        cluster,
        "get",
        "deployments,configmaps,secrets",
        "-l",
        "flotilla.dev/managed-by=flotilla",
    )
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in found["items"]}


def configmap(fleet: Fleet, cluster: str, name: str) -> dict[str, Any] | None:
    result = kubectl(
        fleet.clusters[cluster].kubeconfig,
        *("-n", fleet.namespace, "get", "configmap", name, "-o", "json"),
        check=False,
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def plan(fleet: Fleet, path: Path) -> dict[str, dict[str, Any]]:
    """The plan's targets by cluster (a plan with a failed target exits non-zero)."""
    view = fleet.hub.cli("plan", "-f", str(path), "-o", "json").json()
    assert_shape(view, "plan")
    return {t["cluster"]: t for step in view["steps"] for t in step["targets"]}


def test_subcharts_render_by_condition_tags_imports_and_globals(fleet: Fleet) -> None:
    path = umbrella_app(fleet)
    ns = fleet.namespace

    targets = plan(fleet, path)
    for target in targets.values():
        assert target["error"] is None, target["error"]
        assert target["usesLookup"] == ["templates/secret.yaml"]
        assert target["warnings"] == [
            f"Secret {ns}/{APP}-token data.password changes on every render "
            "(randAlphaNum, uuidv4, now ...)"
        ]
        assert target["dependencies"] == []  # every subchart is packaged in charts/
    printed = fleet.hub.ok("plan", "-f", str(path)).stdout
    assert "uses lookup" in printed and "templates/secret.yaml" in printed
    assert f"Secret {ns}/{APP}-token data.password changes on every render" in printed

    result = fleet.up(path, "--wait")
    assert result.code == 0, result.stderr

    dev = objects(fleet, "dev")
    assert set(dev) == {
        f"Deployment/{APP}-frontend",
        f"ConfigMap/{APP}-summary",
        f"ConfigMap/{APP}-kept",
        f"Secret/{APP}-token",
    }, "dev: the worker's condition is off, and extras' tag is off by default"
    assert dev[f"ConfigMap/{APP}-summary"]["data"] == {
        "environment": "dev",
        "queue": "none",  # a disabled subchart exports nothing
        "workerThreads": "0",
        "workerOwner": "umbrella",
    }
    for cluster in PROD:
        found = objects(fleet, cluster)
        assert set(found) == set(dev) | {f"ConfigMap/{APP}-worker", f"ConfigMap/{APP}-extras"}
        summary = found[f"ConfigMap/{APP}-summary"]
        assert summary["data"] == {
            "environment": "prod",
            "queue": "jobs",  # import-values, the exports form
            "workerThreads": "4",  # the child/parent form, merged over the parent's map
            "workerOwner": "umbrella",
        }
        assert found[f"ConfigMap/{APP}-extras"]["data"] == {"environment": "prod"}
        labels = found[f"ConfigMap/{APP}-worker"]["metadata"]["labels"]
        assert labels["environment"] == "prod"  # the library chart's template, the global
        assert labels["app.kubernetes.io/name"] == "worker"
        container = found[f"Deployment/{APP}-frontend"]["spec"]["template"]["spec"]
        assert container["containers"][0]["env"] == [{"name": "ENVIRONMENT", "value": "prod"}]


def helm_template(chart: Path, values: dict[str, Any], namespace: str, workdir: Path) -> Any:
    """`helm template` of Helm's own CLI (built from its Go module, as the benchmark's),
    by `Kind/name`, each object without what a random template draws anew."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "values.yaml").write_text(yaml.safe_dump(values))
    command = [str(binary("helm")), "template", APP, str(chart), "--namespace", namespace]
    out = _helm([*command, "--values", str(workdir / "values.yaml")], workdir)
    return by_name(o for o in yaml.safe_load_all(out) if o)


def _helm(command: list[str], workdir: Path) -> str:
    # Helm's caches and settings of its own: a user's ~/.config/helm changes nothing here.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir)}
    env |= {
        f"HELM_{kind}_HOME": str(workdir / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def by_name(rendered: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found = {}
    for obj in rendered:
        obj = copy.deepcopy(obj)
        (obj.get("data") or {}).pop("password", None)  # randAlphaNum
        found[f"{obj['kind']}/{obj['metadata']['name']}"] = obj
    return found


@pytest.fixture(scope="module")
def helm() -> None:
    ensure_built(("helm",))


@pytest.mark.usefixtures("helm")
async def test_what_flotilla_renders_is_what_helm_template_renders(
    fleet: Fleet, chart_repo: ChartRepo, chart_cache: ChartCache, tmp_path: Path
) -> None:
    """The values `plan` says Helm receives on each cluster, rendered by the hub's chart
    cache and by `helm template` of the same chart directory: the same objects."""
    targets = plan(fleet, umbrella_app(fleet, {"tags": {"web": False}}))
    chart = await chart_cache.fetch(ChartRef("helm", chart_repo.url, UMBRELLA, "1.0.0"))

    for cluster, target in targets.items():
        ours = chart.render(target["values"], release_name=APP, namespace=fleet.namespace)
        helms = helm_template(
            CHARTS_DIR / UMBRELLA, target["values"], fleet.namespace, tmp_path / cluster
        )
        assert by_name(ours) == helms, cluster


@pytest.mark.usefixtures("helm")
async def test_dependencies_fetched_as_helm_dependency_update_fetches_them(
    chart_repo: ChartRepo, chart_cache: ChartCache, tmp_path: Path
) -> None:
    ours_root = _with_dependency(tmp_path / "ours", chart_repo.url, "^1.0.0")
    helms_root = _with_dependency(tmp_path / "helms", chart_repo.url, "^1.0.0")
    _helm([str(binary("helm")), "dependency", "update", str(helms_root / UMBRELLA)], tmp_path)
    values = {"tags": {"extras": True}, "canary-demo": {"replicaCount": 2}}

    chart = await chart_cache.fetch(ChartRef("local", str(ours_root), UMBRELLA))
    ours = chart.render(values, release_name=APP, namespace="demo")

    helms = helm_template(helms_root / UMBRELLA, values, "demo", tmp_path / "template")
    assert by_name(ours) == helms
    assert {"Deployment/umbrella-canary-demo", "ConfigMap/umbrella-worker"} <= set(helms)


def test_a_subchart_schema_counts_only_where_the_subchart_is_enabled(fleet: Fleet) -> None:
    path = umbrella_app(fleet, {"worker": {"settings": {"threads": 0}}})

    targets = plan(fleet, path)

    assert targets["dev"]["error"] is None, "dev's worker is disabled: its schema is not asked"
    for cluster in PROD:
        assert targets[cluster]["error"] == (
            "chart umbrella-demo 1.0.0: values do not match values.schema.json: "
            "worker.settings.threads: minimum: got 0, want 1"
        )


def _with_dependency(root: Path, repository: str, version: str) -> Path:
    """umbrella-demo as a chart directory under `root` that also declares canary-demo from
    `repository` without packaging it (as before `helm dependency build`), and takes its
    worker from a directory beside it (`file://../worker`)."""
    shutil.copytree(CHARTS_DIR / "umbrella-demo", root / "umbrella-demo")
    shutil.move(root / "umbrella-demo" / "charts" / "worker", root / "worker")
    chart_yaml = root / "umbrella-demo" / "Chart.yaml"
    metadata = yaml.safe_load(chart_yaml.read_text())
    for dependency in metadata["dependencies"]:
        if dependency["name"] == "worker":
            dependency["repository"] = "file://../worker"
    metadata["dependencies"].append(
        {"name": "canary-demo", "version": version, "repository": repository}
    )
    chart_yaml.write_text(yaml.safe_dump(metadata, sort_keys=False))
    return root


def test_a_declared_dependency_is_fetched_from_its_repository_and_pinned(
    fleet: Fleet, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    root = _with_dependency(tmp_path / "charts", chart_repo.url, "^1.0.0")
    local = {"repoType": "local", "url": str(root), "chart": "umbrella-demo"}
    path = umbrella_app(fleet, {"canary-demo": {"replicaCount": 1}}, chart=local)
    archive = (chart_repo.directory / "canary-demo-1.0.0.tgz").read_bytes()
    digest = f"sha256:{hashlib.sha256(archive).hexdigest()}"

    targets = plan(fleet, path)

    for target in targets.values():
        assert target["error"] is None, target["error"]
        assert target["dependencies"] == [
            f"worker 1.0.0 {target['dependencies'][0].split()[-1]}",
            f"canary-demo 1.0.0 {digest}",
        ]
    assert targets["dev"]["dependencies"][0] == targets["prod-eu"]["dependencies"][0]
    assert "fetched dependencies: " in fleet.hub.ok("plan", "-f", str(path)).stdout

    result = fleet.up(path, "--wait")
    assert result.code == 0, result.stderr
    for cluster in fleet.clusters:
        deployment = fleet.deployment(cluster, f"{APP}-canary-demo")
        assert deployment is not None, cluster
        assert deployment["status"].get("readyReplicas") == 1, cluster
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "registry.local/canary-demo:1.0.0", "the ^1.0.0 pin, not 2.0.0"
    assert "ConfigMap/umbrella-worker" in objects(fleet, "prod-eu"), "file:// dependency"


async def test_a_dependency_from_an_oci_registry_is_pulled_and_pinned(
    oci_registry: OciRegistry, chart_cache: ChartCache, tmp_path: Path
) -> None:
    root = _with_dependency(tmp_path / "charts", oci_registry.url, "2.0.0")
    ref = ChartRef("local", str(root), UMBRELLA)

    chart = await chart_cache.fetch(ref)

    pins = {pin.requested.chart: pin for pin in ChartPin.of(ref, chart).dependencies}
    assert (pins["canary-demo"].requested.url, pins["canary-demo"].version) == (
        oci_registry.url,
        "2.0.0",
    )
    objects = by_name(chart.render({}, release_name=APP, namespace="demo"))
    image = objects[f"Deployment/{APP}-canary-demo"]["spec"]["template"]["spec"]["containers"]
    assert image[0]["image"] == "registry.local/canary-demo:2.0.0"
    again = await chart_cache.fetch_pinned(ChartPin.of(ref, chart), revision=1)
    assert again.dependencies == chart.dependencies


def test_a_dependency_that_cannot_be_found_names_parent_and_dependency(
    fleet: Fleet, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    root = _with_dependency(tmp_path / "charts", chart_repo.url, "9.9.9")
    local = {"repoType": "local", "url": str(root), "chart": "umbrella-demo"}

    result = fleet.hub.cli("plan", "-f", str(umbrella_app(fleet, chart=local)))

    assert result.code != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert (
        "chart umbrella-demo 1.0.0: dependency canary-demo: chart canary-demo 9.9.9: no such "
        f"version in {chart_repo.url}; it has 2.0.0, 1.0.0"
    ) in result.stdout + result.stderr


def test_keep_survives_a_revision_that_drops_it_and_the_deletion(fleet: Fleet) -> None:
    kept = f"{APP}-kept"
    first = fleet.up(umbrella_app(fleet, everywhere=False), "--wait")
    assert first.code == 0, first.stderr
    status = fleet.status(APP)
    (release,) = status["steps"][0]["clusters"][0]["releases"]
    flags = {o["name"]: o["keep"] for o in release["objects"]}
    assert flags[kept] is True and flags[f"{APP}-summary"] is False

    dropped = umbrella_app(
        fleet, {"keep": {"enabled": False}}, file="dropped.yaml", everywhere=False
    )
    (target,) = plan(fleet, dropped).values()
    assert target["prune"] == [], "a kept object is no deletion"
    second = fleet.up(dropped, "--wait")
    assert second.code == 0, second.stderr
    assert configmap(fleet, "dev", kept) is not None, "pruned despite resource-policy keep"
    events = fleet.hub.ok("events", APP, "-o", "json").stdout
    message = f"kept ConfigMap {fleet.namespace}/{kept}: helm.sh/resource-policy keep"
    assert message in [json.loads(line)["message"] for line in events.splitlines()]
    (release,) = fleet.status(APP)["steps"][0]["clusters"][0]["releases"]
    assert kept not in {o["name"] for o in release["objects"]}, "still in the inventory"

    third = fleet.up(umbrella_app(fleet, file="again.yaml", everywhere=False), "--wait")
    assert third.code == 0, third.stderr
    fleet.hub.ok("delete", APP, "--yes")
    until(lambda: configmap(fleet, "dev", f"{APP}-summary") is None, what="the release deleted")
    assert configmap(fleet, "dev", kept) is not None, "deleted despite resource-policy keep"
