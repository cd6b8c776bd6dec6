"""The hub's state in a Kubernetes API (etcd underneath): custom resources of the
`flotilla.dev` group in one namespace of a management cluster, credentials in Secrets.

`KubeStore` satisfies `hub.state.interface.ClusterStore` (its `apps()` the `AppStore`);
`install` and `manifests` are for `flotilla install` (the CRDs apart from `serve`).
"""

from hub.state.kube.apps import KubeAppStore
from hub.state.kube.resources import manifests
from hub.state.kube.store import KubeStore, install

__all__ = ["KubeAppStore", "KubeStore", "install", "manifests"]
