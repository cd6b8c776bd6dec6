"""Charts: fetch them, cache them by digest, render them with Helm's own engine.

A release is only as reproducible as its chart, so every fetched archive is kept under its
sha256 and a small index maps (repository, chart, version) to that digest: the second fetch of
a pinned version touches no network, and the digest is what identifies "the same chart" in
revisions and in the render cache. Local directories are the exception: they change while a
user develops, so they are read afresh on every fetch and identified by a hash of their files.

Rendering goes through `helm_python` (the Helm v4 SDK). This module must never interpret a
template itself: "renders like Helm" is only true if Helm renders. Everything Helm does here
blocks (ctypes into Go), so the async API runs it in a thread; the sync methods are for code
that already runs in one.

HTTP repositories are read with aiohttp rather than through Helm so that every request has a
timeout and the hub shares one HTTP stack; OCI registries speak a protocol Helm already
implements, so Helm pulls them after a quick reachability probe that does have a timeout.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
import helm_python
import semantic_version
import yaml

from hub.errors import FlotillaError, InvalidInput, NotFound

RepoType = Literal["helm", "oci", "local"]

# Long enough for a slow registry on a busy link, short enough that a dead repository fails a
# deploy quickly instead of holding a fan-out hostage.
DEFAULT_TIMEOUT_SECONDS = 30.0
# Renders are keyed by values, and one revision rendered for N clusters with per-cluster
# overrides makes N entries: room for a few hundred targets' worth before evicting.
DEFAULT_RENDER_CACHE_SIZE = 512
# Registries on this machine (the e2e ones, a developer's) serve plain HTTP; anything else must
# be TLS, as Helm itself insists.
PLAIN_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A "not found" message lists at most this many versions: enough to spot a typo.
VERSIONS_SHOWN = 10

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # index.yaml files can be huge


class _ManifestLoader(_YAML_LOADER):  # type: ignore[valid-type,misc]
    """Safe YAML that leaves timestamps as strings, as Helm sends them to Kubernetes."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_HELM_TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})


class ChartError(FlotillaError):
    """Anything that kept a chart from being fetched, loaded or rendered."""


class ChartNotFound(ChartError, NotFound):
    """The repository answered, but holds no such chart or version."""


class ChartRepoUnreachable(ChartError):
    """The repository or registry did not answer in time, at all, or with a usable index."""

    http_status = HTTPStatus.BAD_GATEWAY


class InvalidChartRef(ChartError, InvalidInput):
    """The reference itself is wrong: an unknown repoType, or a version that is no semver."""


class InvalidChart(ChartError, InvalidInput):
    """The archive or directory is not a chart Helm can load."""


class ChartRenderError(ChartError, InvalidInput):
    """A template failed, or produced something that is not a Kubernetes object."""


class InvalidValues(ChartError, InvalidInput):
    """Values that the chart's values.schema.json rejects, or that are not JSON at all."""


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


def flotilla_home() -> Path:
    """Where Flotilla keeps its data unless FLOTILLA_HOME says otherwise (XDG layout)."""
    if explicit := os.environ.get("FLOTILLA_HOME"):
        return Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "flotilla"


class ChartCache:
    """Fetches charts through an on-disk cache and hands out loaded charts.

    One instance per process is enough; it is safe to share between tasks and threads.
    Concurrent first fetches of the same reference may both download: the archive store is
    content-addressed and written atomically, so the only cost is the duplicate transfer.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        render_cache_size: int = DEFAULT_RENDER_CACHE_SIZE,
    ) -> None:
        self.cache_dir = cache_dir if cache_dir is not None else flotilla_home() / "charts"
        self.timeout = timeout
        self._archives = _ArchiveStore(self.cache_dir)
        self._renders = _RenderCache(render_cache_size)
        # Loaded remote charts by digest: loading parses the archive, so do it once.
        self._loaded: dict[str, LoadedChart] = {}

    async def fetch(self, ref: ChartRef) -> LoadedChart:
        """Fetch, cache and load the chart `ref` names."""
        if ref.repo_type == "local":
            return await asyncio.to_thread(self._load_local, ref)
        if ref.repo_type not in ("helm", "oci"):
            raise InvalidChartRef(
                f"{ref}: repoType {ref.repo_type!r} is not one of helm, oci, local"
            )
        if ref.version and _semver(ref.version) is not None:
            cached = await asyncio.to_thread(self._load_cached, ref, ref.version)
            if cached is not None:
                return cached
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # A session per fetch: fetches are rare (the cache answers most) and this way nothing
        # outlives the event loop that made it.
        async with aiohttp.ClientSession(timeout=timeout) as session:
            repository: _Repository = (
                _HelmRepository(ref, session, self.timeout)
                if ref.repo_type == "helm"
                else _OciRepository(ref, session, self.timeout)
            )
            version = resolve_version(ref, await repository.versions())
            cached = await asyncio.to_thread(self._load_cached, ref, version)
            if cached is not None:
                return cached
            data = await repository.download(version)
        digest = _sha256(data)
        # Loaded before it is stored, so an archive Helm rejects never enters the cache.
        loaded = await asyncio.to_thread(self._load_archive, ref, version, digest, data)
        await asyncio.to_thread(self._archives.put, _key(ref, version), digest, data)
        return loaded

    def _load_cached(self, ref: ChartRef, version: str) -> LoadedChart | None:
        found = self._archives.get(_key(ref, version))
        if found is None:
            return None
        digest, data = found
        return self._load_archive(ref, version, digest, data)

    def _load_archive(self, ref: ChartRef, version: str, digest: str, data: bytes) -> LoadedChart:
        if (loaded := self._loaded.get(digest)) is not None:
            return loaded
        try:
            handle = helm_python.Chart.load_archive(data)
        except helm_python.HelmError as e:
            raise InvalidChart(f"chart {ref.chart} {version}: {_one_line(e.detail)}") from e
        loaded = LoadedChart(handle, digest, self._renders)
        if loaded.name != ref.chart:
            raise InvalidChart(
                f"chart {ref.chart} {version}: the archive holds chart {loaded.name} instead"
            )
        self._loaded[digest] = loaded
        return loaded

    def _load_local(self, ref: ChartRef) -> LoadedChart:
        path = Path(ref.url).expanduser() / ref.chart
        if not (path / "Chart.yaml").is_file():
            raise ChartNotFound(f"{ref}: no chart directory at {path}")
        try:
            digest = _directory_digest(path)
            handle = helm_python.Chart.load(path)
        except (OSError, helm_python.HelmError) as e:
            raise InvalidChart(f"{ref}: {path}: {_one_line(str(e))}") from e
        loaded = LoadedChart(handle, digest, self._renders)
        if ref.version:
            resolve_version(ref, [loaded.version])  # raises unless the directory matches
        return loaded


class LoadedChart:
    """A chart Helm has loaded: its identity, defaults and schema, and rendering.

    Safe to share between threads (the Helm handle is immutable). Rendered output is cached
    per (digest, values, release, namespace, revision) and every caller gets its own copy, so
    callers may edit the objects they receive.
    """

    def __init__(self, handle: helm_python.Chart, digest: str, renders: _RenderCache) -> None:
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
            raise ChartRenderError(f"{self._subject}: {_one_line(e.detail)}") from e
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
            documents = list(yaml.load_all(text, Loader=_ManifestLoader))
        except yaml.YAMLError as e:
            raise ChartRenderError(
                f"{self._subject}: {path} renders invalid YAML: {_one_line(str(e))}"
            ) from e
        for number, document in enumerate(documents, start=1):
            if document is None:
                continue
            if not (isinstance(document, dict) and "apiVersion" in document and "kind" in document):
                raise ChartRenderError(
                    f"{self._subject}: {path} document {number} is not a Kubernetes object"
                )
            yield document


def resolve_version(ref: ChartRef, available: Iterable[str]) -> str:
    """Pick the version `ref` asks for among `available`, as Helm would.

    No version means the newest stable one; an exact version must exist; anything else is a
    constraint in Helm's (Masterminds) syntax, which npm-style ranges express once commas
    become spaces.
    """
    available = list(available)
    parsed = {text: version for text in available if (version := _semver(text)) is not None}
    if ref.version and ref.version in available:
        return ref.version
    if not ref.version or ref.version == "*":
        stable = [text for text, version in parsed.items() if not version.prerelease]
        if stable:
            return max(stable, key=parsed.__getitem__)
    elif (exact := _semver(ref.version)) is not None:
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
    where = _display_url(ref.url)
    raise ChartNotFound(f"{ref}: no such version in {where}; it has {shown or 'no versions'}")


def _semver(text: str) -> semantic_version.Version | None:
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


class _Repository(Protocol):
    """One remote source of chart archives: what versions it has, and their bytes."""

    async def versions(self) -> list[str]: ...

    async def download(self, version: str) -> bytes: ...


class _HelmRepository:
    """A classic Helm repository: an index.yaml listing archives by URL and digest."""

    def __init__(self, ref: ChartRef, session: aiohttp.ClientSession, timeout: float) -> None:
        self._ref = ref
        self._session = session
        self._timeout = timeout
        self._base = ref.url.rstrip("/") + "/"
        self._entries: dict[str, dict[str, Any]] = {}

    async def versions(self) -> list[str]:
        body = await self._get(urljoin(self._base, "index.yaml"))
        try:
            index = await asyncio.to_thread(yaml.load, body, Loader=_YAML_LOADER)
        except yaml.YAMLError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: {_display_url(self._base)}index.yaml is not valid YAML"
            ) from e
        entries = index.get("entries") if isinstance(index, dict) else None
        if not isinstance(entries, dict):
            raise ChartRepoUnreachable(
                f"{self._ref}: {_display_url(self._base)}index.yaml is not a Helm repository index"
            )
        if not entries.get(self._ref.chart):
            names = ", ".join(sorted(entries)[:VERSIONS_SHOWN]) or "no charts"
            raise ChartNotFound(
                f"{self._ref}: no chart {self._ref.chart} in {_display_url(self._ref.url)}; "
                f"it has {names}"
            )
        self._entries = {str(entry["version"]): entry for entry in entries[self._ref.chart]}
        return list(self._entries)

    async def download(self, version: str) -> bytes:
        entry = self._entries[version]
        urls = entry.get("urls") or []
        if not urls:
            raise InvalidChart(f"chart {self._ref.chart} {version}: the index lists no URL")
        data = await self._get(urljoin(self._base, urls[0]))
        expected = entry.get("digest")
        if expected and hashlib.sha256(data).hexdigest() != expected.removeprefix("sha256:"):
            raise InvalidChart(
                f"chart {self._ref.chart} {version}: the archive does not match the index digest"
            )
        return data

    async def _get(self, url: str) -> bytes:
        shown = _display_url(url)
        try:
            async with self._session.get(url) as response:
                if response.status == HTTPStatus.NOT_FOUND:
                    raise ChartNotFound(f"{self._ref}: {shown} does not exist (HTTP 404)")
                if response.status != HTTPStatus.OK:
                    raise ChartRepoUnreachable(
                        f"{self._ref}: {shown} answered HTTP {response.status}"
                    )
                return await response.read()
        except TimeoutError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: {shown} did not answer within {self._timeout:g}s"
            ) from e
        except aiohttp.ClientError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: cannot reach {shown}: {_one_line(str(e))}"
            ) from e


class _OciRepository:
    """A chart in an OCI registry (`oci://host/path` + chart name), pulled by Helm.

    Helm's pull cannot be given a timeout, so a GET of the registry's `/v2/` endpoint (which
    every distribution-spec registry answers, if only with 401) checks it is there first. A
    registry that answers that and then hangs still blocks a worker thread until Helm gives up.
    """

    def __init__(self, ref: ChartRef, session: aiohttp.ClientSession, timeout: float) -> None:
        self._ref = ref
        self._session = session
        self._timeout = timeout
        self._reference = f"{ref.url.rstrip('/')}/{ref.chart}"
        host = urlsplit(ref.url)
        self._plain_http = host.hostname in PLAIN_HTTP_HOSTS
        scheme = "http" if self._plain_http else "https"
        self._probe_url = f"{scheme}://{host.netloc}/v2/"

    async def versions(self) -> list[str]:
        try:
            async with self._session.get(self._probe_url):
                pass
        except TimeoutError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: registry {_display_url(self._ref.url)} did not answer "
                f"within {self._timeout:g}s"
            ) from e
        except aiohttp.ClientError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: cannot reach registry {_display_url(self._ref.url)}: "
                f"{_one_line(str(e))}"
            ) from e
        return await asyncio.to_thread(self._tags)

    async def download(self, version: str) -> bytes:
        return await asyncio.to_thread(self._pull, version)

    def _tags(self) -> list[str]:
        try:
            with helm_python.RegistryClient(plain_http=self._plain_http) as client:
                return client.tags(self._reference)
        except helm_python.HelmError as e:
            if "status code 404" in e.detail:
                raise ChartNotFound(
                    f"{self._ref}: no chart {self._ref.chart} in {_display_url(self._ref.url)}"
                ) from e
            raise ChartRepoUnreachable(f"{self._ref}: {_one_line(e.detail)}") from e

    def _pull(self, version: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="flotilla-pull-") as destination:
            try:
                helm_python.pull(
                    self._reference,
                    version=version,
                    destination=destination,
                    plain_http=self._plain_http,
                )
            except helm_python.HelmError as e:
                raise ChartRepoUnreachable(
                    f"chart {self._ref.chart} {version}: {_one_line(e.detail)}"
                ) from e
            (archive,) = Path(destination).glob("*.tgz")
            return archive.read_bytes()


class _ArchiveStore:
    """Chart archives on disk by sha256, plus one small file per (url, chart, version).

    A file per reference rather than one shared index, so concurrent hubs and threads never
    rewrite each other's entries; every write is a rename, so a crash leaves no torn file. An
    archive that does not hash to its name is treated as absent and fetched again.
    """

    def __init__(self, root: Path) -> None:
        self._archives = root / "archives"
        self._refs = root / "refs"

    def get(self, key: tuple[str, str, str]) -> tuple[str, bytes] | None:
        try:
            record = json.loads(self._ref_path(key).read_text())
            digest = str(record["digest"])
            data = self._archive_path(digest).read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (digest, data) if _sha256(data) == digest else None

    def put(self, key: tuple[str, str, str], digest: str, data: bytes) -> None:
        _write_atomically(self._archive_path(digest), data)  # also heals a corrupt copy
        url, chart, version = key
        record = {"url": url, "chart": chart, "version": version, "digest": digest}
        _write_atomically(self._ref_path(key), json.dumps(record).encode())

    def _archive_path(self, digest: str) -> Path:
        return self._archives / f"{digest.removeprefix('sha256:')}.tgz"

    def _ref_path(self, key: tuple[str, str, str]) -> Path:
        name = hashlib.sha256(json.dumps(key).encode()).hexdigest()
        return self._refs / f"{name}.json"


class _RenderCache:
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


def _key(ref: ChartRef, version: str) -> tuple[str, str, str]:
    return (ref.url.rstrip("/"), ref.chart, version)


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _directory_digest(path: Path) -> str:
    """A hash of every file's relative path and content: equal trees, equal digests."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return f"sha256:{digest.hexdigest()}"


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as temporary:
        temporary.write(data)
    Path(temporary.name).replace(path)


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
    cause = "; ".join(problems) or _one_line(detail)
    return f"values do not match values.schema.json: {cause}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _display_url(url: str) -> str:
    """The URL without credentials, fit for a message."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
