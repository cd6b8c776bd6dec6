"""Where a chart comes from, and which version a reference resolves to, as Helm picks it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import semantic_version

from hub.charts.errors import ChartNotFound, InvalidChartRef, display_url
from hub.model.targets import RepoType

VERSIONS_SHOWN = 10


@dataclass(frozen=True)
class ChartRef:
    """Where a chart comes from, as a KubeVela helm component names it.

    `url` is the repository (`https://...`), the registry path (`oci://host:port/path`) or, for
    `local`, the directory holding chart directories; `chart` is the chart's name in it.
    `version` is an exact version, a semver constraint (`^1.2`, `>=1.0.0, <2.0.0`), or None
    for the newest stable version.
    """

    repo_type: RepoType
    url: str
    chart: str
    version: str | None = None

    def __str__(self) -> str:
        return f"chart {self.chart} {self.version or '(latest)'}"


def resolve_version(ref: ChartRef, available: Iterable[str]) -> str:
    """Pick the version `ref` asks for among `available`, as Helm would.

    No version means the newest stable one; an exact version must exist; anything else is a
    constraint in Helm's (Masterminds) syntax, which npm-style ranges express once commas
    become spaces.
    """
    available = list(available)
    parsed = {text: version for text in available if (version := semver(text)) is not None}
    if ref.version and ref.version in available:
        return ref.version
    if not ref.version or ref.version == "*":
        stable = [text for text, version in parsed.items() if not version.prerelease]
        if stable:
            return max(stable, key=parsed.__getitem__)
    elif (exact := semver(ref.version)) is not None:
        matching = [text for text, version in parsed.items() if version == exact]
        if matching:
            return matching[0]
    else:
        spec = _constraint(ref)
        best = spec.select(parsed.values())
        if best is not None:
            return next(text for text, version in parsed.items() if version == best)
    newest_first = sorted(parsed, key=parsed.__getitem__, reverse=True)
    shown = ", ".join(newest_first[:VERSIONS_SHOWN])
    if len(newest_first) > VERSIONS_SHOWN:
        shown += f" and {len(newest_first) - VERSIONS_SHOWN} more"
    where = display_url(ref.url)
    raise ChartNotFound(f"{ref}: no such version in {where}; it has {shown or 'no versions'}")


def dependency_ref(parent: ChartRef, subject: str, declared: Mapping[str, Any]) -> ChartRef:
    """Where a dependency its parent's `charts/` lacks comes from, as `helm dependency
    build` reads Chart.yaml: a repository URL, an `oci://` registry path, or a `file://`
    directory relative to the parent's own directory. `subject` names the parent in the
    refusals: a dependency with no repository, or one named as `helm repo add` named it
    (`@stable`), which the hub has no list of."""
    name = str(declared.get("name"))
    version = str(declared["version"]) if declared.get("version") else None
    repository = str(declared.get("repository") or "")
    what = f"{subject}: dependency {name}"
    if repository.startswith(("https://", "http://")):
        return ChartRef("helm", repository, name, version)
    if repository.startswith("oci://"):
        return ChartRef("oci", repository, name, version)
    if repository.startswith("file://"):
        if parent.repo_type != "local":
            raise InvalidChartRef(
                f"{what}: {repository} is a directory, and the chart comes from a repository"
            )
        path = Path(
            os.path.normpath(Path(parent.url) / parent.chart / repository.removeprefix("file://"))
        )
        return ChartRef("local", str(path.parent), path.name, version)
    if not repository:
        raise ChartNotFound(f"{what} is not in its charts/ directory and names no repository")
    raise InvalidChartRef(
        f"{what}: repository {repository} is a name `helm repo add` gave; write its URL"
    )


def semver(text: str) -> semantic_version.Version | None:
    try:
        return semantic_version.Version(text.removeprefix("v"))
    except ValueError:
        return None


_SPACE_AFTER_OPERATOR = re.compile(r"(>=|<=|=>|=<|~>|[<>=~^])\s+")
_MASTERMINDS_ALIASES = (("=>", ">="), ("=<", "<="), ("~>", "~"))


def _constraint(ref: ChartRef) -> semantic_version.NpmSpec:
    text = " ".join(_SPACE_AFTER_OPERATOR.sub(r"\1", str(ref.version)).replace(",", " ").split())
    for alias, operator in _MASTERMINDS_ALIASES:
        text = text.replace(alias, operator)
    try:
        return semantic_version.NpmSpec(text)
    except ValueError as e:
        raise InvalidChartRef(f"{ref}: not a version or a semver constraint") from e
