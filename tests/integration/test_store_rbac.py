"""The RBAC the README gives a hub in its management cluster is all it needs: a hub whose
store credential is only examples/kubernetes-store/rbac.yaml's ServiceAccount installs
its CRDs, joins clusters, deploys, and holds its shards' Leases."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

from e2e import clusters, kubeconfigs
from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess, kubernetes_store
from e2e.kubeapi import TOKEN_TIMEOUT
from e2e.kubectl import kubectl
from tests.fleet import Fleet

RBAC = Path(__file__).parents[2] / "examples" / "kubernetes-store" / "rbac.yaml"


def test_the_readmes_rbac_is_all_a_hub_on_the_kubernetes_store_needs(
    tmp_path: Path, e2e_clusters: list[ClusterInfo], namespace: str, chart_repo: ChartRepo
) -> None:
    management = e2e_clusters[0]
    suffix = secrets.token_hex(3)
    store = f"fs-rbac-{suffix}"
    # The example as written, in a namespace and under cluster-wide names of the test's own.
    manifests = (
        RBAC.read_text()
        .replace("flotilla-system", store)
        .replace("name: flotilla-hub\n", f"name: flotilla-hub-{suffix}\n")
    )
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=manifests)
    try:
        hub = HubProcess(
            tmp_path / "home",
            serve_args=kubernetes_store(
                _token_kubeconfig(management, store, suffix, tmp_path), store
            ),
        )
        hub.start()
        try:
            fleet = Fleet.join(hub, e2e_clusters, namespace, chart_repo.url, tmp_path)
            deployed = fleet.up(fleet.app(), "--wait")
            assert deployed.code == 0, deployed.stderr
            assert fleet.deployment("prod-eu") is not None
            leases = clusters.admin_api(management).get(
                f"/apis/coordination.k8s.io/v1/namespaces/{store}/leases"
            )["items"]
            held = [lease for lease in leases if lease["spec"].get("holderIdentity")]
            assert len(held) > 1, "the hub holds its membership and its shards"
            assert "Forbidden" not in hub.log() and "forbidden" not in hub.log()
        finally:
            hub.stop()
    finally:
        kubectl(management.kubeconfig, "delete", "-f", "-", "--wait=false", stdin=manifests)


def _token_kubeconfig(management: ClusterInfo, store: str, suffix: str, into: Path) -> Path:
    """A kubeconfig of the management cluster whose only credential is the example's
    ServiceAccount's token (a legacy token Secret, filled by the token controller)."""
    api = clusters.admin_api(management)
    secrets_path = f"/api/v1/namespaces/{store}/secrets"
    name = f"flotilla-hub-{suffix}"
    api.create(
        secrets_path,
        {
            "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": name}},
            "type": "kubernetes.io/service-account-token",
        },
    )
    api.wait_for(
        f"the token of {store}/{name}",
        lambda server: bool(server.get(f"{secrets_path}/{name}").get("data", {}).get("token")),
        TOKEN_TIMEOUT,
    )
    token = base64.b64decode(api.get(f"{secrets_path}/{name}")["data"]["token"]).decode()
    return kubeconfigs.derive(
        management.kubeconfig, into / "store.kubeconfig", user={"token": token}
    )
