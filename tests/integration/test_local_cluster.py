"""KubeVela's `local` cluster (issue 11 §5): KubeVela's own Helm canary walkthrough, its
Application files as the KubeVela documentation gives them, run with `flotilla up -f` on a
member joined as `local`; and the refusal when no member is.

The walkthrough ("Canary Rollout Helm chart", kubevela.io) deploys canary-demo 1.0.0 with a
`kruise-rollout` trait (steps 20% and 90%, nginx traffic routing) and no policies at all,
upgrades it to 2.0.0, and finishes the canary with two `vela workflow resume`. Its chart is
at https://wangyikewxgm.github.io/my-charts/, which this machine cannot reach: the files
name our copy of that chart (e2e/charts/canary-demo, served by the test's chart
repository) instead, and that URL is the one change a user makes. The test also gives the
files `metadata.namespace` (what `vela up -n NAMESPACE` does), so that the release lives in
the test's own namespace rather than in `default`, where `make demo` deploys canary-demo.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess
from tests.fleet import Fleet

pytestmark = pytest.mark.cluster

# The documentation's two files, comments and all; only `url` is ours (see above).
WALKTHROUGH = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: canary-demo
  annotations:
    app.oam.dev/publishVersion: {publish}
spec:
  components:
  - name: canary-demo
    type: helm
    properties:
      repoType: "helm"
      url: "{url}"
      chart: "canary-demo"
      version: "{version}"
    traits:
    - type: kruise-rollout
      properties:
        canary:
          # The first batch of Canary releases 20% Pods, and 20% traffic imported to the new version, require manual confirmation before subsequent releases are completed
          steps:
          - weight: 20
          # The second batch of Canary releases 90% Pods, and 90% traffic imported to the new version.
          - weight: 90
          trafficRoutings:
          - type: nginx
"""  # noqa: E501 (the documentation's lines, as they are)
REPLICAS = 5  # the chart's default replicaCount: the walkthrough sets no values
STABLE = "app.kubernetes.io/name=canary-demo,!flotilla.dev/canary"
CANARY = "flotilla.dev/canary=true"
JOIN = "flotilla cluster join KUBECONFIG --name local"


def _file(fleet: Fleet, version: str, publish: str) -> Path:
    text = WALKTHROUGH.format(url=fleet.repo_url, version=version, publish=publish)
    text = text.replace(
        "  name: canary-demo\n", f"  name: canary-demo\n  namespace: {fleet.namespace}\n", 1
    )
    path = fleet.workdir / f"canary-demo-{publish}.yaml"
    path.write_text(text)
    return path


def _uids(fleet: Fleet, selector: str) -> set[str]:
    return {p["metadata"]["uid"] for p in fleet.pods("local", selector)}


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _paused_at(fleet: Fleet, step: int) -> None:
    status = fleet.status()
    assert status["phase"] == "suspended", status["message"]
    assert f"paused at step {step}/2" in status["message"]
    [deploy] = status["steps"]
    assert deploy["name"] == "deploy"
    [cluster] = deploy["clusters"]
    assert cluster["name"] == "local"


@pytest.fixture
def local(
    hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> Fleet:
    """A hub with one member, joined under the name `local`."""
    hub.ok("cluster", "join", str(e2e_clusters[0].kubeconfig), "--name", "local")
    return Fleet(hub, {"local": e2e_clusters[0]}, namespace, chart_repo.url, tmp_path)


def test_kubevelas_helm_canary_walkthrough_runs_on_local(local: Fleet) -> None:
    first = local.up(_file(local, "1.0.0", "v1"), "--wait")
    assert first.code == 0, first.stderr
    assert local.status()["phase"] == "succeeded"
    assert local.image("local") == "registry.local/canary-demo:1.0.0"
    stable = _uids(local, STABLE)
    assert len(stable) == REPLICAS

    upgrade = local.up(_file(local, "2.0.0", "v2"), "--wait")
    assert upgrade.code == 0, upgrade.stderr
    _paused_at(local, 1)
    canaries = [p for p in local.pods("local", CANARY) if _ready(p)]
    assert [p["spec"]["containers"][0]["image"] for p in canaries] == [
        "registry.local/canary-demo:2.0.0"
    ]
    weight = local.kubectl("local", "get", "ingress", "canary-demo-canary")["metadata"]
    assert weight["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "20"
    assert _uids(local, STABLE) == stable

    local.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    _paused_at(local, 2)
    canaries = [p for p in local.pods("local", CANARY) if _ready(p)]
    assert len(canaries) == math.ceil(0.9 * REPLICAS)
    assert _uids(local, STABLE) == stable

    local.hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert local.status()["phase"] == "succeeded"
    assert local.image("local") == "registry.local/canary-demo:2.0.0"
    deployment = local.deployment("local")
    assert deployment is not None and not deployment["spec"].get("paused")
    assert deployment["status"].get("updatedReplicas") == REPLICAS
    ingresses = local.kubectl("local", "get", "ingresses")["items"]
    assert [i["metadata"]["name"] for i in ingresses] == ["canary-demo"]


def test_without_a_local_member_the_walkthrough_is_refused_with_what_to_do(
    fleet: Fleet,
) -> None:
    path = _file(fleet, "1.0.0", "v1")
    for verb in ("plan", "up"):
        refused = fleet.hub.cli(verb, "-f", str(path))
        assert refused.code == 2, refused.stderr
        assert refused.stderr.strip() == (
            f"error: {path}: the application has no topology policy, so it deploys to 'local', but "
            "no cluster is registered as 'local' (KubeVela's hub cluster): join one under "
            f"that name ({JOIN}) or add a topology policy"
        )
    assert fleet.hub.ok("ls", "-o", "json").json()["applications"] == []

    named = path.read_text() + (
        "  policies:\n  - name: hub\n    type: topology\n    properties:\n"
        '      clusters: ["local"]\n'
    )
    path.write_text(named)
    refused = fleet.hub.cli("up", "-f", str(path))
    assert refused.code == 2
    assert refused.stderr.strip().startswith(
        f"error: {path}: spec.policies[0].properties.clusters: step 'deploy-hub': topology 'hub': "
        "'local' is not a registered cluster (registered: 'dev', 'prod-eu', 'prod-us'); "
        f"'local' is KubeVela's hub cluster: join one under that name ({JOIN})"
    )
