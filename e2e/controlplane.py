"""The files and command lines of one local cluster's control plane.

Only what differs from a stock control plane is set, and each choice that
departs from a production setup says why. Command lines are a pure function of
the cluster's files and ports, so an API server stopped by a test comes back
with exactly the same flags, port and certificates.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from e2e.binaries import binary
from e2e.pki import ClusterPKI

SERVICE_CIDR = "10.96.0.0/16"
# What real clusters (kubeadm, kind) use, so tokens look like theirs.
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers a workload needs to converge and clean up after itself; the
# ones that need a cloud, volumes or node IPAM are left out.
CONTROLLERS = (
    "clusterrole-aggregation-controller",
    "cronjob-controller",
    "daemonset-controller",
    "deployment-controller",
    "disruption-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "garbage-collector-controller",
    "job-controller",
    "namespace-controller",
    "pod-garbage-collector-controller",
    "replicaset-controller",
    "replicationcontroller-controller",
    "resourcequota-controller",
    "root-ca-certificate-publisher-controller",
    "service-cidr-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "statefulset-controller",
    "ttl-after-finished-controller",
)
# Identities of the harness's own components. They are system:masters because
# the simulated kubelet also schedules (binds pods), which no node identity may.
CLIENTS = {
    "admin": ("flotilla-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", "system:masters"),
    "kubelet": ("flotilla-e2e-kubelet", "system:masters"),
}


@dataclass(frozen=True)
class ClusterFiles:
    """Where one cluster keeps its certificates, credentials, kubeconfigs and logs."""

    root: Path
    name: str

    @property
    def pki(self) -> ClusterPKI:
        return ClusterPKI(self.root / "pki", self.name)

    @property
    def node(self) -> str:
        return f"{self.name}-node"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens.csv"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def token_kubeconfig(self) -> Path:
        return self.root / "token.kubeconfig"

    @property
    def restricted_kubeconfig(self) -> Path:
        return self.root / "restricted.kubeconfig"

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.root / "controller-manager.kubeconfig"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    def log(self, component: str) -> Path:
        return self.root / f"{component}.log"


def etcd_command(data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        str(binary("etcd")),
        "--name=e2e",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=e2e={peer}",
        # Throw-away data: durability only costs latency on every write.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_command(files: ClusterFiles, port: int, etcd_port: int) -> list[str]:
    pki = files.pki
    return [
        str(binary("kube-apiserver")),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        # One etcd serves every cluster; the prefix is what keeps them apart.
        f"--etcd-prefix=/{files.name}/registry",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--token-auth-file={files.tokens}",
        "--authorization-mode=Node,RBAC",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_public_key}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # The simulated node needs no not-ready taint: it binds pods itself and
        # no node-lifecycle controller would ever lift the taint.
        "--disable-admission-plugins=TaintNodesByCondition",
        # Endpoints may not hold a loopback address, so the `kubernetes`
        # Service's endpoints cannot be reconciled to 127.0.0.1; nothing
        # inside these clusters dials it.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
    ]


def controller_manager_command(files: ClusterFiles) -> list[str]:
    return [
        str(binary("kube-controller-manager")),
        f"--kubeconfig={files.controller_manager_kubeconfig}",
        # No serving port: many clusters share 127.0.0.1 and nothing scrapes it.
        "--secure-port=0",
        "--leader-elect=false",
        f"--controllers={','.join(CONTROLLERS)}",
        f"--cluster-name={files.name}",
        f"--service-account-private-key-file={files.pki.service_account_key}",
        f"--root-ca-file={files.pki.ca.cert}",
        # Client-side rate limits sized for a busy test, not for a shared server.
        "--kube-api-qps=100",
        "--kube-api-burst=200",
    ]


def kubelet_command(files: ClusterFiles, metrics_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "e2e.kubelet",
        f"--kubeconfig={files.kubelet_kubeconfig}",
        f"--node={files.node}",
        f"--metrics-port={metrics_port}",
    ]
