"""A chart Helm has loaded, and rendering it with Helm's own engine.

This module must never interpret a template itself: "renders like Helm" is only true if
Helm renders. Helm's calls block (ctypes into Go), so the async API runs them in a thread.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import helm_python
import yaml

from hub.charts.errors import ChartRenderError, InvalidValues, one_line
from hub.format.documents import ManifestLoader

_HELM_TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})


class LoadedChart:
    """A chart Helm has loaded: its identity, defaults and schema, and rendering.

    Safe to share between threads (the Helm handle is immutable). Rendered output is cached
    per (digest, values, release, namespace, revision) and every caller gets its own copy, so
    callers may edit the objects they receive.
    """

    def __init__(self, handle: helm_python.Chart, digest: str, renders: RenderCache) -> None:
        self._handle = handle
        self._renders = renders
        metadata = handle.metadata
        self.digest = digest
        self.name = str(metadata.get("name", ""))
        self.version = str(metadata.get("version", ""))
        self.app_version = str(metadata.get("appVersion", ""))
        self._default_values = handle.values
        self._schema = handle.schema
        self._crds = handle.crds

    def __repr__(self) -> str:
        return f"<LoadedChart {self.name} {self.version} {self.digest}>"

    @property
    def default_values(self) -> dict[str, Any]:
        """The chart's values.yaml, the bottom layer of every target's values."""
        return copy.deepcopy(self._default_values)

    @property
    def schema(self) -> dict[str, Any] | None:
        """The chart's values.schema.json, or None when it ships none."""
        return copy.deepcopy(self._schema)

    def validate(self, values: dict[str, Any]) -> None:
        """Check values (merged over the defaults, as Helm does) against the schema."""
        _canonical_json(values, self._subject)
        try:
            self._handle.validate_schema(self._handle.merge_values(values))
        except helm_python.HelmValuesError as e:
            raise InvalidValues(f"{self._subject}: {_schema_cause(e.detail, self.name)}") from e

    def render(
        self,
        values: dict[str, Any],
        *,
        release_name: str,
        namespace: str,
        revision: int = 1,
    ) -> list[dict[str, Any]]:
        """The objects Helm renders for one release, CRDs first, then templates by path.

        `revision` is part of the cache key because templates can read `.Release.Revision`
        and `.Release.IsUpgrade`; revision 1 renders as an install, later ones as upgrades.
        Objects annotated as Helm test hooks are dropped: they belong to `helm test`, not to
        a release.
        """
        values_json = _canonical_json(values, self._subject)
        key = (self.digest, values_json, release_name, namespace, revision)
        objects = self._renders.get(key)
        if objects is None:
            objects = self._render(values, release_name, namespace, revision)
            self._renders.put(key, objects)
        return copy.deepcopy(objects)

    async def render_async(
        self,
        values: dict[str, Any],
        *,
        release_name: str,
        namespace: str,
        revision: int = 1,
    ) -> list[dict[str, Any]]:
        """`render` in a worker thread, for the event loop."""
        return await asyncio.to_thread(
            self.render,
            values,
            release_name=release_name,
            namespace=namespace,
            revision=revision,
        )

    @property
    def _subject(self) -> str:
        return f"chart {self.name} {self.version}"

    def _render(
        self, values: dict[str, Any], release_name: str, namespace: str, revision: int
    ) -> list[dict[str, Any]]:
        try:
            files = self._handle.render(
                values,
                name=release_name,
                namespace=namespace,
                revision=revision,
                is_install=revision == 1,
                is_upgrade=revision > 1,
            )
        except helm_python.HelmValuesError as e:
            raise InvalidValues(f"{self._subject}: {_schema_cause(e.detail, self.name)}") from e
        except helm_python.HelmError as e:
            raise ChartRenderError(f"{self._subject}: {one_line(e.detail)}") from e
        sources = [(crd["filename"], crd["data"]) for crd in self._crds]
        sources += [(path, files[path]) for path in sorted(files) if _is_manifest(path)]
        return [
            obj
            for path, text in sources
            for obj in self._parse(path, text)
            if not _is_test_hook(obj)
        ]

    def _parse(self, path: str, text: str) -> Iterable[dict[str, Any]]:
        try:
            documents = list(yaml.load_all(text, Loader=ManifestLoader))
        except yaml.YAMLError as e:
            raise ChartRenderError(
                f"{self._subject}: {path} renders invalid YAML: {one_line(str(e))}"
            ) from e
        for number, document in enumerate(documents, start=1):
            if document is None:
                continue
            if not (isinstance(document, dict) and "apiVersion" in document and "kind" in document):
                raise ChartRenderError(
                    f"{self._subject}: {path} document {number} is not a Kubernetes object"
                )
            yield document


class RenderCache:
    """A thread-safe LRU of rendered objects: one set of values renders once."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[Any, ...], list[dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> list[dict[str, Any]] | None:
        with self._lock:
            objects = self._entries.get(key)
            if objects is not None:
                self._entries.move_to_end(key)
            return objects

    def put(self, key: tuple[Any, ...], objects: list[dict[str, Any]]) -> None:
        with self._lock:
            self._entries[key] = objects
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


def _canonical_json(values: dict[str, Any], subject: str) -> str:
    try:
        return json.dumps(values, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidValues(f"{subject}: values must be plain JSON data: {e}") from e


def _is_manifest(path: str) -> bool:
    """Helm's rule: NOTES.txt is for people and `_`-prefixed files are partials."""
    name = path.rsplit("/", 1)[-1]
    return name != "NOTES.txt" and not name.startswith("_")


def _is_test_hook(obj: dict[str, Any]) -> bool:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    hooks = str(annotations.get("helm.sh/hook", "")).split(",")
    return any(hook.strip() in _HELM_TEST_HOOKS for hook in hooks)


_SCHEMA_CHART = re.compile(r"^(\S+):$")
_SCHEMA_VIOLATION = re.compile(r"^- at '([^']*)': (.*)$")


def _schema_cause(detail: str, chart: str) -> str:
    """Turn Helm's multi-line schema report into `key.path: problem; ...`.

    Helm reports JSON pointers per (sub)chart; a subchart's keys live under its name in the
    values the user writes, so they are prefixed with it.
    """
    prefix = ""
    problems = []
    for line in detail.splitlines():
        line = line.strip()
        if match := _SCHEMA_CHART.match(line):
            prefix = "" if match[1] == chart else f"{match[1]}."
        elif match := _SCHEMA_VIOLATION.match(line):
            key = prefix + match[1].strip("/").replace("/", ".")
            problems.append(f"{key or '(root)'}: {match[2]}")
    cause = "; ".join(problems) or one_line(detail)
    return f"values do not match values.schema.json: {cause}"
