"""Helm hooks and `crds/`, deployed the way `helm upgrade --install` deploys them (issue 11).

The chart is e2e/charts/hooks-demo: a hook for every event, weights, each delete policy,
a migration Job that fails on request (`migrate.fail`, an image tag the local kubelet
fails), and a `crds/` CRD whose Widget the templates hold. One application goes through
install, upgrade, a failing upgrade, a clean re-run, rollback and delete in one test, on
dev alone, so the clusters do the work once.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chartrepo import CHARTS_DIR
from e2e.clusters import ClusterInfo
from e2e.kubectl import kubectl
from e2e.prometheus import Prometheus
from tests.fleet import Fleet, phase, until
from tests.integration.test_analysis import _analysis
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

APP = "hooks-demo"


def _dev_only(fleet: Fleet, **app: Any) -> Path:
    """The fleet's application of the hooks chart, its workflow cut to the dev step."""
    path = fleet.app(name=APP, chart=APP, **app)
    document = yaml.safe_load(path.read_text())
    steps = document["spec"]["workflow"]["steps"]
    document["spec"]["workflow"]["steps"] = [s for s in steps if s["name"] == "deploy-dev"]
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _local(path: Path, values: dict[str, Any]) -> Path:
    """The application at `path` with its chart from the local copy under `charts/`."""
    document = yaml.safe_load(path.read_text())
    properties = document["spec"]["components"][0]["properties"]
    properties.update(repoType="local", url="charts", values=values)
    properties.pop("version")
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _release(fleet: Fleet, cluster: str = "dev") -> dict[str, Any]:
    status = fleet.status(APP)
    for step in status["steps"]:
        for found in step["clusters"]:
            if found["name"] == cluster:
                release: dict[str, Any] = found["releases"][0]
                return release
    raise AssertionError(f"no release on {cluster}: {status}")


def _runs(release: dict[str, Any], event: str) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["name"], r["phase"]) for r in release["hooks"] if r["event"] == event]


def _get(fleet: Fleet, kind: str, name: str, cluster: str = "dev") -> dict[str, Any] | None:
    result = kubectl(
        fleet.clusters[cluster].kubeconfig,
        "-n",
        fleet.namespace,
        "get",
        kind,
        name,
        "-o",
        "json",
        check=False,
    )
    if result.returncode != 0:
        return None
    found: dict[str, Any] = yaml.safe_load(result.stdout)
    return found


def _uid(fleet: Fleet, kind: str, name: str) -> str:
    found = _get(fleet, kind, name)
    assert found is not None, f"{kind} {name} not found"
    return str(found["metadata"]["uid"])


def _complete(job: dict[str, Any] | None) -> bool:
    conditions = (job or {}).get("status", {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


@pytest.fixture
def crd_group(e2e_clusters: list[ClusterInfo]) -> Iterator[str]:
    """A CRD group of the test's own, so that its `crds/` CRD is new to the cluster; the
    CRD outlives the release (as Helm leaves it), so the test removes it itself."""
    group = f"t{secrets.token_hex(4)}.flotilla.dev"
    yield group
    for info in e2e_clusters:
        kubectl(info.kubeconfig, "delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def _chart_copy(fleet: Fleet, group: str) -> Path:
    """hooks-demo copied under the fleet's folder, its `crds/` CRD in `group`."""
    copy = fleet.workdir / "charts" / APP
    shutil.copytree(CHARTS_DIR / APP, copy)
    crd = copy / "crds" / "widgets.yaml"
    crd.write_text(crd.read_text().replace("hooks-demo.flotilla.dev", group))
    return crd


def test_hooks_run_around_each_operation_and_crds_are_left_as_installed(
    fleet: Fleet, crd_group: str
) -> None:
    crd_file = _chart_copy(fleet, crd_group)
    values: dict[str, Any] = {"widget": {"group": crd_group}}

    def up(**more: Any) -> Any:
        return fleet.up(_local(_dev_only(fleet), {**values, **more}), "--wait")

    # install: crds/ first, pre-install by weight, the release, then post-install
    result = up()
    assert result.code == 0, result.stderr
    release = _release(fleet)
    assert_shape(fleet.status(APP), "status")  # with hook runs and a crd
    assert _runs(release, "pre-install") == [
        ("ConfigMap", f"{APP}-hook-config", "Succeeded"),
        ("Job", f"{APP}-pre-install", "Succeeded"),
    ]
    assert _runs(release, "post-install") == [("Job", f"{APP}-post-install", "Succeeded")]
    assert [(c["name"], c["phase"]) for c in release["crds"]] == [
        (f"widgets.{crd_group}", "Created")
    ]
    assert "never upgraded or deleted" in release["crds"][0]["message"]
    pre = next(r for r in release["hooks"] if r["name"] == f"{APP}-pre-install")
    post = next(r for r in release["hooks"] if r["name"] == f"{APP}-post-install")
    deployment = fleet.deployment("dev", APP)
    assert deployment is not None
    assert pre["finished"] <= deployment["metadata"]["creationTimestamp"] <= post["started"]
    assert (
        _get(fleet, f"widgets.{crd_group}", APP) is not None
    )  # its kind came from crds/, before it
    # hooks are not objects of the release
    names = {o["name"] for o in release["objects"]}
    assert names.isdisjoint({f"{APP}-hook-config", f"{APP}-pre-install", f"{APP}-post-install"})
    # delete policies: hook-succeeded went, hook-failed stays on success
    assert _get(fleet, "job", f"{APP}-pre-install") is None
    assert _complete(_get(fleet, "job", f"{APP}-post-install"))
    config_uid = _uid(fleet, "configmap", f"{APP}-hook-config")

    # upgrade, with crds/ changed: pre-upgrade by weight, post-upgrade after; CRD untouched
    crd_file.write_text(
        crd_file.read_text().replace("singular: widget", "singular: widget\n    shortNames: [wd]")
    )
    result = up(image={"tag": "2.0.0"})
    assert result.code == 0, result.stderr
    assert fleet.image("dev", APP) == "registry.local/hooks-demo:2.0.0"
    release = _release(fleet)
    assert _runs(release, "pre-upgrade") == [
        ("ConfigMap", f"{APP}-hook-config", "Succeeded"),
        ("Job", f"{APP}-migrate", "Succeeded"),
    ]
    assert _runs(release, "post-upgrade") == [("Pod", f"{APP}-post-upgrade", "Succeeded")]
    # before-hook-creation replaced the ConfigMap
    assert _uid(fleet, "configmap", f"{APP}-hook-config") != config_uid
    crd = kubectl(
        fleet.clusters["dev"].kubeconfig, "get", "crd", f"widgets.{crd_group}", "-o", "json"
    )
    assert "shortNames" not in yaml.safe_load(crd.stdout)["spec"]["names"]
    migrate_uid = _uid(fleet, "job", f"{APP}-migrate")

    # a failing pre-upgrade hook fails the target in one line; the release stays as it was
    result = up(image={"tag": "3.0.0"}, migrate={"fail": True})
    assert result.code != 0
    status = fleet.status(APP)
    assert status["phase"] == "failed"
    message = _release(fleet)["message"]
    assert message == (
        f"pre-upgrade hook Job {fleet.namespace}/{APP}-migrate failed: BackoffLimitExceeded "
        "(Job has reached the specified backoff limit)"
    ), message
    assert fleet.image("dev", APP) == "registry.local/hooks-demo:2.0.0"
    assert "Traceback" not in result.stderr

    # the next upgrade re-runs the migration Job cleanly: no "field is immutable"
    result = up(image={"tag": "2.0.0"}, config={"GREETING": "migrated"})
    assert result.code == 0, result.stderr
    job = _get(fleet, "job", f"{APP}-migrate")
    assert _complete(job) and job is not None and job["metadata"]["uid"] != migrate_uid
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "REVISION", "value": "4"} in env

    # workflow rollback runs the rolled-back-to release's pre- and post-rollback hooks
    back = fleet.hub.cli("workflow", "rollback", APP, "--wait", timeout=300)
    assert back.code == 0, back.stderr
    release = _release(fleet)
    assert _runs(release, "pre-rollback") == [("Job", f"{APP}-pre-rollback", "Succeeded")]
    assert _runs(release, "post-rollback") == [("ConfigMap", f"{APP}-post-rollback", "Succeeded")]
    assert _runs(release, "pre-upgrade")[-1][2] == "Succeeded"  # an earlier run, shown as last
    assert _complete(_get(fleet, "job", f"{APP}-pre-rollback"))

    # delete runs pre-delete; the release goes, the crds/ CRD stays
    fleet.hub.ok("delete", APP, "--yes", timeout=300)
    assert _complete(_get(fleet, "job", f"{APP}-pre-delete"))
    until(lambda: fleet.deployment("dev", APP) is None, what="release deleted")
    assert _get(fleet, f"widgets.{crd_group}", APP) is None
    kubectl(fleet.clusters["dev"].kubeconfig, "get", "crd", f"widgets.{crd_group}")


def test_a_release_whose_chart_no_longer_renders_is_deleted_without_its_hooks(
    fleet: Fleet, crd_group: str
) -> None:
    """The delete hooks come from rendering the chart of the revision the cluster runs
    (Helm reads them from its stored release). Where that chart is gone (a local chart's
    folder, read anew by a restarted hub), the release must still go, without them."""
    _chart_copy(fleet, crd_group)
    result = fleet.up(_local(_dev_only(fleet), {"widget": {"group": crd_group}}), "--wait")
    assert result.code == 0, result.stderr
    fleet.hub.stop()
    shutil.rmtree(fleet.workdir / "charts")
    fleet.hub.start()

    fleet.hub.ok("delete", APP, "--yes", timeout=300)

    until(lambda: fleet.deployment("dev", APP) is None, what="release deleted")
    assert _get(fleet, "job", f"{APP}-pre-delete") is None


def test_hooks_of_a_canary_upgrade_run_once_before_its_first_step_and_after_finalise(
    fleet: Fleet,
) -> None:
    trait = [{"type": "kruise-rollout", "properties": {"canary": {"steps": [{"weight": 50}]}}}]
    result = fleet.up(_dev_only(fleet, traits=trait, dev_canary=True), "--wait")
    assert result.code == 0, result.stderr

    result = fleet.up(_dev_only(fleet, version="2.0.0", traits=trait, dev_canary=True), "--wait")
    assert result.code == 0, result.stderr
    assert phase(fleet, APP) == "suspended"
    canary = _get(fleet, "deployment", f"{APP}-canary")
    assert canary is not None, "no canary Deployment while paused"
    job = _get(fleet, "job", f"{APP}-migrate")
    assert _complete(job) and job is not None
    # The migration completed before the canary existed: before any pod changed.
    assert job["status"]["completionTime"] <= canary["metadata"]["creationTimestamp"]
    release = _release(fleet)
    assert _runs(release, "pre-upgrade")[-1] == ("Job", f"{APP}-migrate", "Succeeded")
    assert _runs(release, "post-upgrade") == []  # not before the release is finalised
    stable = fleet.pods("dev", f"app.kubernetes.io/name={APP},!flotilla.dev/canary")
    images = {p["spec"]["containers"][0]["image"] for p in stable}
    assert images == {"registry.local/hooks-demo:1.0.0"}  # stable pods untouched

    fleet.hub.kill()  # after the migration succeeded: the next hub must not run it again
    fleet.hub.start()
    fleet.hub.ok("workflow", "resume", APP)
    # Not `--wait`: right after a restart it may read the phase before the resume acts.
    until(lambda: phase(fleet, APP) == "succeeded", 180, "the canary finalised")
    release = _release(fleet)
    assert _runs(release, "post-upgrade") == [("Pod", f"{APP}-post-upgrade", "Succeeded")]
    # Neither the restarted hub nor the resumed deploy ran the migration again.
    assert _uid(fleet, "job", f"{APP}-migrate") == job["metadata"]["uid"]
    assert fleet.image("dev", APP) == "registry.local/hooks-demo:2.0.0"
    deployment = fleet.deployment("dev", APP)
    assert deployment is not None and deployment["status"].get("readyReplicas") == 1
    until(lambda: _get(fleet, "deployment", f"{APP}-canary") is None, what="canary gone")
    found = fleet.kubectl(
        "dev", "get", "deployments,services,ingresses", "-l", "flotilla.dev/canary=true"
    )
    assert found["items"] == []


def test_a_canary_its_analysis_rolls_back_runs_the_earlier_releases_rollback_hooks(
    fleet: Fleet, prometheus: Prometheus
) -> None:
    canary = {
        "steps": [{"weight": 50, "pause": {"duration": 0}}],
        "trafficRoutings": [{"type": "nginx"}],
        "analysis": _analysis(prometheus),
    }
    trait = [{"type": "kruise-rollout", "properties": {"canary": canary}}]
    result = fleet.up(_dev_only(fleet, traits=trait, dev_canary=True), "--wait")
    assert result.code == 0, result.stderr

    bad = {"image": {"tag": "2.0.0-errors-100"}}
    path = _dev_only(fleet, version="2.0.0", traits=trait, dev_canary=True, values=bad)
    result = fleet.up(path, "--wait")
    assert result.code == 1, result.stdout
    release = _release(fleet)
    assert release["message"].startswith("rolled back: "), release["message"]
    assert _runs(release, "pre-rollback") == [("Job", f"{APP}-pre-rollback", "Succeeded")]
    assert _runs(release, "post-rollback") == [("ConfigMap", f"{APP}-post-rollback", "Succeeded")]
    assert _runs(release, "post-upgrade") == []
    rolled_back = _get(fleet, "configmap", f"{APP}-post-rollback")
    assert rolled_back is not None and rolled_back["data"] == {"revision": "1"}  # revision 1's
    assert fleet.image("dev", APP) == "registry.local/hooks-demo:1.0.0"
