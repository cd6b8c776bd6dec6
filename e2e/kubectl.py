"""Run the pinned kubectl against one cluster, as a user would.

Tests use it to prove that the kubeconfigs work with the standard tool; the
`kubectl` on PATH may be years older than the clusters, so the one built with
them is used.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e.binaries import kubectl as kubectl_path

# kubectl's own request timeout; a local server that needs longer is broken.
REQUEST_TIMEOUT = "20s"


class KubectlError(Exception):
    """kubectl exited non-zero; the message carries its stderr."""

    def __init__(self, args: tuple[str, ...], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)}: exit {result.returncode}: {result.stderr}")
        self.result = result


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`kubectl --kubeconfig KUBECONFIG ARGS...`; with `check`, a failure raises
    KubectlError."""
    result = subprocess.run(
        [
            str(kubectl_path()),
            f"--kubeconfig={kubeconfig}",
            f"--request-timeout={REQUEST_TIMEOUT}",
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise KubectlError(args, result)
    return result
