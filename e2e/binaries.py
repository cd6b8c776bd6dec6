"""Build and cache the control-plane binaries that the local clusters run.

Kubernetes publishes no prebuilt binaries that this machine may download, and
`go install k8s.io/kubernetes/cmd/...` is refused because that module's go.mod
uses `replace` for its staging repositories. So we write a throw-away helper
module that requires `k8s.io/kubernetes` and replaces every staging module with
its published `v0.X.Y` twin, the list generated from the release's own go.mod.

The binaries land in `~/.cache/flotilla/k8s-<version>/` (outside the clone,
keyed by version) so only the first run on a machine pays for the build.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# One pinned release: tests assert that /version reports it.
K8S_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"
K8S_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kubectl")
# Only the benchmark needs Helm's own CLI (the way people deploy today, to compare with);
# the hub renders with the Helm SDK and never runs it.
HELM_VERSION = "v3.22.0"

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def cache_root() -> Path:
    if explicit := os.environ.get("FLOTILLA_CACHE"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flotilla"


def k8s_dir() -> Path:
    return cache_root() / f"k8s-{K8S_VERSION}"


def etcd_dir() -> Path:
    return cache_root() / f"etcd-{ETCD_VERSION}"


def helm_dir() -> Path:
    return cache_root() / f"helm-{HELM_VERSION}"


def binary(name: str) -> Path:
    folder = {"etcd": etcd_dir(), "helm": helm_dir()}.get(name, k8s_dir())
    return folder / "bin" / name


def kubectl() -> Path:
    """The kubectl of the pinned release; an older one on PATH may lack flags."""
    return binary("kubectl")


def _go(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, GOFLAGS="-buildvcs=false", CGO_ENABLED="0")
    proc = subprocess.run(["go", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"e2e: go {' '.join(args[:2])} failed in {cwd}:\n{proc.stderr[-4000:]}")
    return proc.stdout


def _staging_replaces(work: Path) -> list[str]:
    """The staging modules named by the release's own go.mod, pinned to their tags."""
    info = json.loads(_go(["mod", "download", "-json", f"k8s.io/kubernetes@{K8S_VERSION}"], work))
    gomod = Path(info["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, re.MULTILINE)
    twin = "v0." + K8S_VERSION.removeprefix("v1.")
    return [f"\t{mod} => {mod} {twin}" for mod in staging]


def _ldflags() -> str:
    major, minor = K8S_VERSION.removeprefix("v").split(".")[:2]
    stamps = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamps += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    return "-s -w " + " ".join(stamps)


def _build(args: list[str], target: Path, work: Path) -> None:
    """`go build` beside `target`, then rename: an interrupted build never leaves
    a truncated binary that a later run would take for a finished one."""
    partial = target.with_name(target.name + ".partial")
    _go(["build", "-trimpath", "-o", str(partial), *args], work)
    partial.replace(target)


def build_k8s() -> None:
    out = k8s_dir()
    if all((out / "bin" / cmd).exists() for cmd in K8S_COMMANDS):
        return
    work = out / "build"
    work.mkdir(parents=True, exist_ok=True)
    replaces = "\n".join(_staging_replaces(work))
    (work / "go.mod").write_text(
        f"module flotilla.local/k8sbuild\n\ngo 1.24.0\n\nreplace (\n{replaces}\n)\n"
    )
    packages = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in K8S_COMMANDS]
    _go(["get", *(f"{p}@{K8S_VERSION}" for p in packages)], work)
    (out / "bin").mkdir(exist_ok=True)
    for cmd, pkg in zip(K8S_COMMANDS, packages, strict=True):
        _log(f"building {cmd} {K8S_VERSION}")
        _build(["-ldflags", _ldflags(), pkg], out / "bin" / cmd, work)


def build_etcd() -> None:
    out = etcd_dir()
    if (out / "bin" / "etcd").exists():
        return
    work = out / "build"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module flotilla.local/etcdbuild\n\ngo 1.24.0\n")
    (work / "main.go").write_text(ETCD_MAIN)
    _go(["get", f"go.etcd.io/etcd/server/v3@{ETCD_VERSION}"], work)
    _go(["mod", "tidy"], work)
    (out / "bin").mkdir(exist_ok=True)
    _log(f"building etcd {ETCD_VERSION}")
    _build(["-ldflags", "-s -w", "."], out / "bin" / "etcd", work)


def build_helm() -> None:
    """`helm` from its Go module; unlike Kubernetes it installs without replaces."""
    out = helm_dir()
    if binary("helm").exists():
        return
    work = out / "build"
    work.mkdir(parents=True, exist_ok=True)
    (work / "go.mod").write_text("module flotilla.local/helmbuild\n\ngo 1.24.0\n")
    _go(["get", f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}"], work)
    (out / "bin").mkdir(exist_ok=True)
    _log(f"building helm {HELM_VERSION}")
    stamp = f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}"
    _build(["-ldflags", f"-s -w {stamp}", "helm.sh/helm/v3/cmd/helm"], binary("helm"), work)


def _log(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


CONTROL_PLANE = ("etcd", *K8S_COMMANDS)


def _missing(names: Sequence[str]) -> bool:
    return not all(binary(name).exists() for name in names)


def ensure_built(names: Sequence[str] = CONTROL_PLANE) -> None:
    """Build whichever of `names` is missing; a warm cache returns at once. A file lock
    makes a second caller wait for a build in progress instead of starting another."""
    if not _missing(names):
        return
    started = time.monotonic()
    cache_root().mkdir(parents=True, exist_ok=True)
    builders = {"etcd": (build_etcd, etcd_dir()), "helm": (build_helm, helm_dir())}
    with (cache_root() / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _missing(names):
            return
        steps = dict.fromkeys(builders.get(name, (build_k8s, k8s_dir())) for name in names)
        for build, folder in steps:
            build()
            shutil.rmtree(folder / "build", ignore_errors=True)
    _log(f"{', '.join(names)} ready in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    # `python -m e2e.binaries` builds the control plane; name binaries to build others.
    ensure_built(tuple(sys.argv[1:]) or CONTROL_PLANE)
