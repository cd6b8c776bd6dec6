"""A chart Helm has loaded, and rendering it with Helm's own engine.

This module must never interpret a template itself: "renders like Helm" is only true if
Helm renders. Helm's calls block (ctypes into Go), so the async API runs them in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import io
import json
import re
import tarfile
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import helm_python
import yaml
from helm_python import _native

from clusters.discovery import Capabilities
from hub.charts.errors import ChartRenderError, InvalidValues, one_line
from hub.charts.kubeversion import IncompatibleCluster, satisfies
from hub.charts.offline import lookup_templates, renders_alike
from hub.format.documents import ManifestLoader

if TYPE_CHECKING:  # pins name a chart by what it loads as: a cycle for the type checker only
    from hub.charts.pins import ChartPin

K = TypeVar("K")
V = TypeVar("V")
# Per chart: the values last found valid, and the manifests last parsed. Targets of a
# plan mostly share both, and each cost a millisecond or so (a native call, libyaml's
# Python-side construction) of the hub's CPU per target.
VALIDATED = 64
PARSED = 256

_HELM_TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})


class LoadedChart:
    """A chart Helm has loaded: its identity, defaults and schema, and rendering.

    Safe to share between threads. Rendered output is cached per (digest, values, release,
    namespace, revision, the cluster's capabilities) and every caller gets its own copy, so
    callers may edit the objects they receive.

    A chart with subcharts is rendered from a fresh handle each time: Helm's render removes
    the subcharts a condition or tag disables from the chart it renders (an install loads
    its chart anew, so Helm never notices), and on a shared handle one target's disabled
    subchart would be missing from every later render. Loading from memory takes about a
    millisecond.
    """

    def __init__(
        self,
        handle: helm_python.Chart,
        digest: str,
        renders: RenderCache,
        dependencies: Sequence[ChartPin] = (),
    ) -> None:
        """`dependencies`: the pins of the charts fetched into its `charts/` (`ChartCache`),
        part of what identifies its renders; `digest` is the chart's own."""
        self._handle = handle
        self._renders = renders
        self._validated: Lru[str, bool] = Lru(VALIDATED)
        self._parsed_manifests: Lru[tuple[str, str], list[dict[str, Any]]] = Lru(PARSED)
        metadata = handle.metadata
        self.digest = digest
        self.dependencies = tuple(dependencies)
        self._identity = "+".join([digest, *(d.digest for d in self.dependencies)])
        self.name = str(metadata.get("name", ""))
        self.version = str(metadata.get("version", ""))
        self.app_version = str(metadata.get("appVersion", ""))
        self.kube_version = str(metadata.get("kubeVersion") or "")
        """Chart.yaml's `kubeVersion`: the semver range of clusters it installs on."""
        self._default_values = handle.values
        self._schema = handle.schema
        self._crds = handle.crds
        # The archive every render of a chart with subcharts loads afresh, saved before any.
        self._pristine = _archive_of(handle) if handle.dependencies else None
        present = {str(d.get("name")) for d in handle.dependencies}
        declared = {str(d.get("name")): d for d in metadata.get("dependencies") or []}
        self.missing_dependencies = [d for name, d in declared.items() if name not in present]
        """Dependencies Chart.yaml declares that `charts/` does not hold (one per name, as
        Helm looks them up), for `ChartCache` to fetch."""

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
        """Check values (merged over the defaults, as Helm does) against the schemas.

        A subchart's schema counts only where its condition and tags enable it: Helm checks
        the schemas while it renders, after dropping the disabled subcharts, so a chart with
        subcharts is checked by a render of its own (whose other failures the render proper
        reports)."""
        values_json = _canonical_json(values, self._subject)
        if self._validated.get(values_json):
            return
        try:
            if self._pristine is None:
                self._handle.validate_schema(self._handle.merge_values(values))
            else:
                with self._opened() as handle:
                    handle.render(values)
        except helm_python.HelmValuesError as e:
            raise InvalidValues(f"{self._subject}: {_schema_cause(e.detail, self.name)}") from e
        except helm_python.HelmError:
            return  # the render proper reports it
        self._validated.put(values_json, True)

    def render(
        self,
        values: dict[str, Any],
        *,
        release_name: str,
        namespace: str,
        revision: int = 1,
        again: bool = False,
        capabilities: Capabilities | None = None,
    ) -> list[dict[str, Any]]:
        """The objects Helm renders for one release's templates, by path; the chart's
        `crds/` are not among them (`crds`), since Helm installs those apart. `again`: the
        objects of a second render of the same input, made once and cached beside the
        first, since only a second render shows what changes on every render
        (`hub.charts.offline`), and a plan's targets that render alike need it once.

        `revision` is part of the cache key because templates can read `.Release.Revision`
        and `.Release.IsUpgrade`; revision 1 renders as an install, later ones as upgrades.
        Objects annotated as Helm test hooks are dropped: they belong to `helm test`, not to
        a release. `capabilities` are the target cluster's (`.Capabilities.KubeVersion` and
        `.APIVersions` as `helm upgrade` sees them live); None renders with Helm's built-in
        defaults, as `helm template` does. The cache keys them by their digest.
        """
        values_json = _canonical_json(values, self._subject)
        seen = capabilities.digest if capabilities else None
        key = (self._identity, values_json, release_name, namespace, revision, seen, again)
        objects = self._renders.get(key)
        if objects is None:
            objects = self._render(values, release_name, namespace, revision, capabilities)
            self._renders.put(key, objects)
        return copy.deepcopy(objects)

    async def render_async(
        self,
        values: dict[str, Any],
        *,
        release_name: str,
        namespace: str,
        revision: int = 1,
        again: bool = False,
        capabilities: Capabilities | None = None,
    ) -> list[dict[str, Any]]:
        """`render` in a worker thread, for the event loop."""
        return await asyncio.to_thread(
            self.render,
            values,
            release_name=release_name,
            namespace=namespace,
            revision=revision,
            again=again,
            capabilities=capabilities,
        )

    def check_cluster(self, capabilities: Capabilities, cluster: str) -> None:
        """Refuse a cluster whose version is outside the chart's `kubeVersion`, as Helm
        refuses to install there (`IncompatibleCluster`, naming both)."""
        constraint = self.kube_version
        if constraint and not satisfies(constraint, capabilities.kube_version):
            raise IncompatibleCluster(
                f"{self._subject} requires Kubernetes {constraint}; cluster {cluster} runs "
                f"{capabilities.kube_version}"
            )

    @functools.cached_property
    def templates(self) -> dict[str, str]:
        """Every template's source by its path in the chart, the subcharts' included
        (`charts/worker/templates/configmap.yaml`)."""
        if self._pristine is None:
            return {t["name"]: t["data"] for t in self._handle.templates}
        return _archived_templates(self._pristine)

    @functools.cached_property
    def lookups(self) -> list[str]:
        """The templates that call `lookup` (`hub.charts.offline`), found once per chart:
        a plan asks it for every target."""
        return lookup_templates(self.templates)

    @functools.cached_property
    def renders_alike(self) -> bool:
        """Whether two renders of the same input must come out the same
        (`hub.charts.offline.renders_alike`), found once per chart."""
        return renders_alike(self.templates)

    @property
    def crds(self) -> list[dict[str, Any]]:
        """The objects of the chart's `crds/` directory, as written: Helm never templates
        them, creates them before the templates on install only, and never upgrades or
        deletes them."""
        return [obj for crd in self._crds for obj in self._parse(crd["filename"], crd["data"])]

    @property
    def _subject(self) -> str:
        return f"chart {self.name} {self.version}"

    def archive(self) -> bytes:
        """The chart as an archive Helm saved: what a parent that depends on it holds."""
        return self._pristine if self._pristine is not None else _archive_of(self._handle)

    @contextlib.contextmanager
    def _opened(self) -> Iterator[helm_python.Chart]:
        """The handle to hand Helm: the shared one, or a fresh one for a chart with
        subcharts (see the class)."""
        if self._pristine is None:
            yield self._handle
            return
        with helm_python.Chart.load_archive(self._pristine) as handle:
            yield handle

    def _render(
        self,
        values: dict[str, Any],
        release_name: str,
        namespace: str,
        revision: int,
        capabilities: Capabilities | None,
    ) -> list[dict[str, Any]]:
        options: dict[str, Any] = {
            "name": release_name,
            "namespace": namespace,
            "revision": revision,
            "is_install": revision == 1,
            "is_upgrade": revision > 1,
        }
        if capabilities is not None:
            options["kube_version"] = capabilities.kube_version
            options["api_versions"] = list(capabilities.api_versions)
        try:
            with self._opened() as handle:
                files = _helm_render(handle, values, options)
        except helm_python.HelmValuesError as e:
            raise InvalidValues(f"{self._subject}: {_schema_cause(e.detail, self.name)}") from e
        except helm_python.HelmError as e:
            raise ChartRenderError(f"{self._subject}: {one_line(e.detail)}") from e
        sources = [(path, files[path]) for path in sorted(files) if _is_manifest(path)]
        return [
            obj
            for path, text in sources
            for obj in self._parsed(path, text)
            if not _is_test_hook(obj)
        ]

    def _parsed(self, path: str, text: str) -> list[dict[str, Any]]:
        """`_parse`, once per text: the same manifest rendered for another target (its
        namespace is not in it, as is usual) is not parsed again. The documents are shared
        between renders, whose callers get copies (`render`)."""
        key = (path, text)
        documents = self._parsed_manifests.get(key)
        if documents is None:
            documents = list(self._parse(path, text))
            self._parsed_manifests.put(key, documents)
        return documents

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


class Lru(Generic[K, V]):
    """A thread-safe LRU: renders run in worker threads."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


RenderCache = Lru[tuple[Any, ...], list[dict[str, Any]]]
"""Rendered objects, shared by a hub's charts: one set of values renders once."""


def _archive_of(handle: helm_python.Chart) -> bytes:
    with tempfile.TemporaryDirectory(prefix="flotilla-chart-") as scratch:
        return Path(handle.save(scratch)).read_bytes()


def _archived_templates(archive: bytes) -> dict[str, str]:
    """The templates in a chart archive Helm saved (its subcharts as directories), by their
    path below the chart's own directory."""
    found = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            path = member.name.split("/", 1)[-1]
            if member.isfile() and "templates" in path.split("/")[:-1]:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    found[path] = extracted.read().decode(errors="replace")
    return found


def _helm_render(
    handle: helm_python.Chart, values: dict[str, Any], options: dict[str, Any]
) -> dict[str, str]:
    """Helm's render with every option its native `helm_render` takes.

    helm-python-sdk 0.2.2's `Chart.render` exposes neither `kube_version` nor
    `api_versions`, though its native library (helm-c-sdk's RenderOptions) reads both, so
    this calls the native function as `Chart.render` does, with them. The library decodes
    options strictly: an upgrade that dropped a key would fail every render loudly, not
    render with defaults (tests/unit/test_charts_capabilities.py holds both). The API
    versions add to Helm's default set, as `helm template --api-versions` does.
    """
    rendered = _native.call_string(
        "helm_render", handle._raw(), json.dumps(values), json.dumps(options)
    )
    manifests: dict[str, str] = json.loads(rendered)
    return manifests


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
