"""Servers the harness runs from Debian's archive, installed on first use.

The OCI registry and Prometheus are real programs, not mocks, and a fresh machine (CI's, a
new developer's) has neither: the test setup installs the package the first time a binary is
missing, so `make test` needs no manual step. Recommended packages are left out: they are
agents and exporters that Debian would start as system services, which the harness never
wants (it runs its own copy of each server, detached, on ports it chooses).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def ensure_installed(binary: str, package: str) -> Path:
    """The path of `binary` on PATH, after installing Debian's `package` if it is missing."""
    if found := shutil.which(binary):
        return Path(found)
    if os.geteuid() != 0:
        raise RuntimeError(
            f"{binary} is not installed and installing it needs root: apt-get install {package}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
    ):
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which(binary)
    if found is None:
        raise RuntimeError(f"apt-get installed {package} but {binary} is not on PATH")
    return Path(found)
