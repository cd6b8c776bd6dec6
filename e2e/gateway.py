"""Gateway API CRDs for the local clusters, for canaries that shift traffic with
HTTPRoute weights.

The CRDs ship inside the Go module `sigs.k8s.io/gateway-api`; the Go module
proxy is a source this machine may use, and `go mod download` caches the module
once per machine, like the control-plane binaries.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from e2e.kubectl import kubectl

GATEWAY_API_VERSION = "v1.3.0"
MODULE = "sigs.k8s.io/gateway-api"


def crd_dir() -> Path:
    """The standard-channel CRD manifests of the pinned release."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{MODULE}@{GATEWAY_API_VERSION}"],
        capture_output=True,
        text=True,
        check=False,
        # Outside any module, so that no go.mod around the caller is read or changed.
        cwd="/",
    )
    if result.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{GATEWAY_API_VERSION}: {result.stderr}")
    return Path(json.loads(result.stdout)["Dir"]) / "config" / "crd" / "standard"


def install_gateway_crds(kubeconfig: Path) -> None:
    """Apply the Gateway API CRDs to one cluster and wait until they are served."""
    manifests = str(crd_dir())
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", manifests)
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", "-f", manifests)
