"""Layered values with provenance: what each cluster gets, and who decided it.

Layers apply in order (chart defaults < component properties < override policies in the
order a deploy step lists them) with Helm's own rule for combining values: maps merge
deeply, lists and scalars replace (so an explicit `false`, `0` or `""` wins), and `null`
deletes the key. Every leaf remembers each layer that set, replaced or deleted it, because
"why does prod run 3 replicas?" is the question `flotilla plan` exists to answer.

Paths are written as Helm's `--set` writes them: keys joined by `.`, a literal `.` in a key
escaped as `\\.` (`podAnnotations.prometheus\\.io/scrape`).

`${cluster.name}` and `${cluster.labels.<key>}` inside string values are replaced per
cluster after merging, so one override can serve every cluster of an environment.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from placement.errors import PlacementError, Problem
from placement.names import PLACEHOLDER
from placement.topology import ClusterInfo

Path = tuple[str, ...]

_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def format_path(path: Path) -> str:
    return ".".join(key.replace(".", "\\.") for key in path)


def parse_path(text: str) -> Path:
    return tuple(key.replace("\\.", ".") for key in _UNESCAPED_DOT.split(text))


def json_pointer(path: Path) -> str:
    """RFC 6901: `/podAnnotations/prometheus.io~1scrape`. Unlike a dotted path it needs
    no convention for keys that hold dots or slashes, so scripts can follow it blindly."""
    return "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in path)


@dataclass(frozen=True)
class Layer:
    """One source of values, named as a user should read it: `policy prod`, `chart defaults`."""

    name: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Setting:
    """What one layer did to one path: set `value`, or delete it (a `null`, or a replacement
    of the map holding it by a scalar or list)."""

    layer: str
    value: Any = None
    deleted: bool = False


@dataclass(frozen=True)
class Provenance:
    """Every path any layer touched, with what each layer did to it, oldest first."""

    history: Mapping[Path, tuple[Setting, ...]]

    def sources(self) -> dict[str, str]:
        """Each leaf of the result (a scalar or a list) and the layer that set it."""
        return {
            format_path(path): settings[-1].layer
            for path, settings in self.history.items()
            if not settings[-1].deleted
        }

    def last(self, under: Path = ()) -> dict[Path, Setting]:
        """What the last layer did to every path below `under` (paths relative to it),
        deletions included: a key a `null` removed is gone from the values, not from here."""
        return {
            path[len(under) :]: settings[-1]
            for path, settings in self.history.items()
            if path[: len(under)] == under and len(path) > len(under)
        }

    def explain(self, key: str) -> dict[str, tuple[Setting, ...]]:
        """The history of `key`, of every leaf under it, and of any leaf that replaced it."""
        wanted = parse_path(key)
        return {
            format_path(path): settings
            for path, settings in self.history.items()
            if path[: len(wanted)] == wanted or wanted[: len(path)] == path
        }

    def __or__(self, other: Provenance) -> Provenance:
        return Provenance({**self.history, **other.history})


@dataclass(frozen=True)
class Merged:
    values: dict[str, Any]
    provenance: Provenance


def merge_layers(layers: Sequence[Layer], *, keep_nulls: bool = False, prefix: Path = ()) -> Merged:
    """Merge `layers` in order; paths in the provenance start with `prefix`.

    With `keep_nulls`, a deleted key stays in the result as `null`: when the chart's own
    defaults are not among the layers, only Helm can delete them, and it needs the `null`.
    """
    merge = _Merge(keep_nulls)
    result: dict[str, Any] = {}
    for layer in layers:
        merge.into(result, layer.values, layer.name, prefix)
    return Merged(result, Provenance({k: tuple(v) for k, v in merge.history.items()}))


class _Merge:
    def __init__(self, keep_nulls: bool) -> None:
        self.keep_nulls = keep_nulls
        self.history: dict[Path, list[Setting]] = {}

    def into(self, target: dict[str, Any], values: Mapping[Any, Any], layer: str, at: Path) -> None:
        for key, value in values.items():
            path = (*at, str(key))
            current = target.get(key)
            if isinstance(value, Mapping):
                if not isinstance(current, dict):
                    if key in target:
                        self.drop(current, path, layer)
                    current = target[key] = {}
                self.into(current, value, layer, path)
                continue
            if isinstance(current, dict) or (value is None and key in target):
                self.drop(target.pop(key), path, layer)
            if value is None:
                deletion = Setting(layer, deleted=True)
                settings = self.history.setdefault(path, [])
                if settings[-1:] != [
                    deletion
                ]:  # once, though dropping a leaf above recorded it already
                    settings.append(deletion)
                if self.keep_nulls:
                    target[key] = None
            else:
                target[key] = copy.deepcopy(value)
                self.history.setdefault(path, []).append(Setting(layer, value))

    def drop(self, removed: Any, path: Path, layer: str) -> None:
        """Record that `layer` removed `removed` (a leaf or a whole map) from `path`."""
        if isinstance(removed, dict):
            for key, value in removed.items():
                self.drop(value, (*path, str(key)), layer)
        elif path in self.history:
            self.history[path].append(Setting(layer, deleted=True))


def substitute_cluster(values: Any, cluster: ClusterInfo) -> Any:
    """`values` with `${cluster.name}` and `${cluster.labels.<key>}` replaced in every string.

    Raises `PlacementError` naming each value (by path) that uses a label the cluster lacks
    or a placeholder that does not exist.
    """
    problems: list[Problem] = []

    def replace(match: re.Match[str], path: Path) -> str:
        field = match.group(1)
        if field == "name":
            return cluster.name
        label = field.removeprefix("labels.")
        if label != field and label in cluster.labels:
            return cluster.labels[label]
        where = format_path(path)
        if label != field:
            message = (
                f"{where}: cluster {cluster.name!r} has no label {label!r} (used by {match[0]})"
            )
        else:
            message = (
                f"{where}: unknown placeholder {match[0]} "
                "(known: ${cluster.name}, ${cluster.labels.<key>})"
            )
        problems.append(Problem(message, path))
        return match[0]

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: replace(m, path), value)
        if isinstance(value, Mapping):
            return {k: walk(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, str(i))) for i, v in enumerate(value)]
        return value

    substituted = walk(values, ())
    if problems:
        raise PlacementError(problems)
    return substituted
