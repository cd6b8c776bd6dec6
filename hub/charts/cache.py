"""Fetching charts through an on-disk cache keyed by digest.

A release is only as reproducible as its chart, so every fetched archive is kept under
its sha256 and a small index maps (repository, chart, version) to that digest: the second
fetch of a pinned version touches no network. Local directories change while a user
develops, so they are read afresh on every fetch and identified by a hash of their files.
A revision's pinned chart is fetched by its digest, and bytes that hash otherwise are refused.
Dependencies a chart declares but does not package are fetched the same way and built into
it, as `helm dependency build` would, each pinned inside the chart's pin.
A repository registered with credentials is fetched with them (looked up by URL on every
fetch), but they are no part of any key: the same bytes are the same chart, however they
were fetched, and rotating a password keeps the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import aiohttp
import helm_python

from hub.charts.errors import ChartError, ChartNotFound, InvalidChart, InvalidChartRef, one_line
from hub.charts.pins import ChartPin
from hub.charts.refs import ChartRef, dependency_ref, resolve_version, semver
from hub.charts.render import LoadedChart, RenderCache
from hub.charts.repositories import (
    HelmRepository,
    OciRepository,
    Repository,
    check_credentials,
)
from hub.home import Home
from hub.model.records import RepositoryRecord, covering
from hub.model.settings import DEFAULTS
from hub.model.targets import TargetSpec

log = logging.getLogger(__name__)

# Renders are keyed by values, and one revision rendered for N clusters with per-cluster
# overrides makes N entries: room for a few hundred targets' worth before evicting.
DEFAULT_RENDER_CACHE_SIZE = 512


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
        timeout: float = DEFAULTS.chart_timeout,
        render_cache_size: int = DEFAULT_RENDER_CACHE_SIZE,
        repositories: Callable[[], Sequence[RepositoryRecord]] | None = None,
    ) -> None:
        """`repositories`: the repositories registered with credentials (the store's); a
        fetch from a URL one of them covers uses its credentials."""
        self.cache_dir = cache_dir if cache_dir is not None else Home.default().charts
        self.timeout = timeout
        self._registered = repositories or _none_registered
        # Registry logins, one directory per fetch, private to the hub like its store.
        self._logins_dir = self.cache_dir / "logins"
        self._archives = _ArchiveStore(self.cache_dir)
        self._renders = RenderCache(render_cache_size)
        # Loaded remote charts by digest: loading parses the archive, so do it once.
        self._loaded: dict[str, LoadedChart] = {}

    async def fetch(self, ref: ChartRef) -> LoadedChart:
        """Fetch, cache and load the chart `ref` names, with the dependencies its Chart.yaml
        declares and its `charts/` lacks fetched too (`_with_dependencies`)."""
        return await self._with_dependencies(ref, await self._fetch_chart(ref), None)

    async def fetch_pinned(self, pin: ChartPin, *, revision: int) -> LoadedChart:
        """The very chart `pin` names, for `revision`, or `ChartPinMismatch`; built with
        the very dependencies the pin holds, each fetched as its own pin.

        An archive already held (in memory or on disk) under the pinned digest is used with
        no network. Otherwise the exact version is downloaded, and bytes that hash to
        anything else are refused and not kept: nothing renders from them, so the caller
        deploys nothing. A local directory is read afresh and must hash as it did.
        """
        chart = await self._fetch_pinned_chart(pin, revision=revision)
        return await self._with_dependencies(pin.ref, chart, (pin, revision))

    async def _fetch_chart(self, ref: ChartRef) -> LoadedChart:
        if ref.repo_type == "local":
            return await asyncio.to_thread(self._load_local, ref)
        _check_remote(ref)
        if ref.version and semver(ref.version) is not None:
            cached = await asyncio.to_thread(self._load_cached, ref, ref.version)
            if cached is not None:
                return cached
        async with self._repository(ref) as repository:
            version = resolve_version(ref, await repository.versions())
            cached = await asyncio.to_thread(self._load_cached, ref, version)
            if cached is not None:
                return cached
            data = await repository.download(version)
        return await self._keep(ref, version, _sha256(data), data)

    async def _fetch_pinned_chart(self, pin: ChartPin, *, revision: int) -> LoadedChart:
        ref = pin.ref
        if ref.repo_type == "local":
            loaded = await asyncio.to_thread(self._load_directory, ref)
            if loaded.digest != pin.digest:
                raise pin.mismatch(loaded.digest, revision=revision)
            return loaded
        _check_remote(ref)
        held = await asyncio.to_thread(self._load_digest, pin)
        if held is not None:
            return held
        async with self._repository(ref) as repository:
            version = resolve_version(ref, await repository.versions())
            data = await repository.download(version)
        digest = _sha256(data)
        if digest != pin.digest:
            raise pin.mismatch(digest, revision=revision)
        return await self._keep(ref, version, digest, data)

    async def _with_dependencies(
        self, ref: ChartRef, chart: LoadedChart, pinned: tuple[ChartPin, int] | None
    ) -> LoadedChart:
        """`chart` with the dependencies its Chart.yaml declares and its `charts/` lacks,
        as `helm dependency build` would put them there: each fetched from the repository
        (or directory) it names, through this cache, then the chart loaded again with them.
        Helm itself renders a chart without them (and `helm template` refuses it); neither
        would deploy what the chart means. `pinned`: the parent's pin and revision, whose
        dependency pins are fetched exactly."""
        if not chart.missing_dependencies:
            return chart
        subject = f"chart {chart.name} {chart.version}"
        pins = {d.requested: d for d in pinned[0].dependencies} if pinned else {}
        fetched: list[tuple[ChartPin, LoadedChart]] = []
        for declared in chart.missing_dependencies:
            wanted = dependency_ref(ref, subject, declared)
            try:
                if pinned is not None and (pin := pins.get(wanted)) is not None:
                    dependency = await self.fetch_pinned(pin, revision=pinned[1])
                else:
                    dependency = await self.fetch(wanted)
            except ChartError as e:
                raise type(e)(f"{subject}: dependency {wanted.chart}: {e}") from e
            if dependency.name != declared.get("name"):
                raise InvalidChart(
                    f"{subject}: dependency {declared.get('name')}: {wanted.url} holds "
                    f"chart {dependency.name} instead"
                )
            fetched.append((ChartPin.of(wanted, dependency), dependency))
        return await asyncio.to_thread(self._built, chart, fetched)

    def _built(
        self, chart: LoadedChart, fetched: Sequence[tuple[ChartPin, LoadedChart]]
    ) -> LoadedChart:
        """`chart` loaded again with `fetched` as archives in its `charts/`."""
        with tempfile.TemporaryDirectory(prefix="flotilla-dependencies-") as scratch:
            archive = Path(scratch) / "chart.tgz"
            archive.write_bytes(chart.archive())
            try:
                helm_python.expand(Path(scratch) / "expanded", archive)
                root = Path(scratch) / "expanded" / chart.name
                (root / "charts").mkdir(exist_ok=True)
                for _, dependency in fetched:
                    name = f"{dependency.name}-{dependency.version}.tgz"
                    (root / "charts" / name).write_bytes(dependency.archive())
                handle = helm_python.Chart.load(root)
            except (OSError, helm_python.HelmError) as e:
                detail = e.detail if isinstance(e, helm_python.HelmError) else str(e)
                raise InvalidChart(
                    f"chart {chart.name} {chart.version}: with its dependencies: {one_line(detail)}"
                ) from e
        pins = [pin for pin, _ in fetched]
        return LoadedChart(handle, chart.digest, self._renders, dependencies=pins)

    async def fetch_stored(self, spec: TargetSpec, *, revision: int) -> LoadedChart:
        """The chart of a stored target spec of `revision`: exactly its pin. A spec stored
        before revisions pinned their charts has none, and resolves its reference again as
        it always did."""
        pin = ChartPin.from_spec(spec)
        if pin is None:
            chart = spec.chart
            assert chart is not None, "only a helm target has a chart to fetch"
            return await self.fetch(
                ChartRef(chart.repo_type, chart.url, chart.chart, chart.version)
            )
        return await self.fetch_pinned(pin, revision=revision)

    def repositories(self) -> list[RepositoryRecord]:
        """The repositories registered with credentials, as they are now."""
        return list(self._registered())

    def credentials(self, url: str) -> RepositoryRecord | None:
        """The registered repository whose credentials a fetch from `url` uses, if any.
        Asked on every fetch, so that a `repo add` or `repo remove` holds from the next."""
        return covering(self._registered(), url)

    async def check_credentials(self, record: RepositoryRecord) -> None:
        """One request to the repository with `record`'s credentials (its index.yaml, or a
        registry login): CredentialsRefused, in one line naming it, if it will not take them."""
        await check_credentials(record, timeout=self.timeout, logins_dir=self._logins_dir)

    @contextlib.asynccontextmanager
    async def _repository(self, ref: ChartRef) -> AsyncIterator[Repository]:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # A session per fetch: fetches are rare (the cache answers most) and this way nothing
        # outlives the event loop that made it.
        credentials = self.credentials(ref.url)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            repository: Repository = (
                HelmRepository(ref, session, self.timeout, credentials=credentials)
                if ref.repo_type == "helm"
                else OciRepository(
                    ref,
                    session,
                    self.timeout,
                    credentials=credentials,
                    logins_dir=self._logins_dir,
                )
            )
            try:
                yield repository
            finally:
                await asyncio.to_thread(repository.close)

    async def _keep(self, ref: ChartRef, version: str, digest: str, data: bytes) -> LoadedChart:
        # Loaded before it is stored, so an archive Helm rejects never enters the cache.
        loaded = await asyncio.to_thread(self._load_archive, ref, version, digest, data)
        try:
            await asyncio.to_thread(self._archives.put, _key(ref, version), digest, data)
        except OSError as e:  # a full disk: the chart is held in memory, the cache is a cache
            log.warning("chart cache cannot keep %s %s: %s", ref.chart, version, e.strerror or e)
        return loaded

    def _load_digest(self, pin: ChartPin) -> LoadedChart | None:
        if (loaded := self._loaded.get(pin.digest)) is not None:
            return loaded
        data = self._archives.archive(pin.digest)
        if data is None:
            return None
        return self._load_archive(pin.ref, pin.version, pin.digest, data)

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
            raise InvalidChart(f"chart {ref.chart} {version}: {one_line(e.detail)}") from e
        loaded = LoadedChart(handle, digest, self._renders)
        if loaded.name != ref.chart:
            raise InvalidChart(
                f"chart {ref.chart} {version}: the archive holds chart {loaded.name} instead"
            )
        self._loaded[digest] = loaded
        return loaded

    def _load_local(self, ref: ChartRef) -> LoadedChart:
        loaded = self._load_directory(ref)
        if ref.version:
            resolve_version(ref, [loaded.version])  # raises unless the directory matches
        return loaded

    def _load_directory(self, ref: ChartRef) -> LoadedChart:
        path = Path(ref.url).expanduser() / ref.chart
        if not (path / "Chart.yaml").is_file():
            raise ChartNotFound(f"{ref}: no chart directory at {path}")
        try:
            digest = _directory_digest(path)
            handle = helm_python.Chart.load(path)
        except (OSError, helm_python.HelmError) as e:
            raise InvalidChart(f"{ref}: {path}: {one_line(str(e))}") from e
        return LoadedChart(handle, digest, self._renders)


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
            digest = str(json.loads(self._ref_path(key).read_text())["digest"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        data = self.archive(digest)
        return None if data is None else (digest, data)

    def archive(self, digest: str) -> bytes | None:
        """The archive stored under `digest`, if it is there and still hashes to it."""
        try:
            data = self._archive_path(digest).read_bytes()
        except OSError:
            return None
        return data if _sha256(data) == digest else None

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


def _none_registered() -> list[RepositoryRecord]:
    """A cache that knows no credentials (tests, tools): every repository is public."""
    return []


def _check_remote(ref: ChartRef) -> None:
    if ref.repo_type not in ("helm", "oci"):
        raise InvalidChartRef(f"{ref}: repoType {ref.repo_type!r} is not one of helm, oci, local")


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
    """Write via a temporary file and rename; a write that fails leaves nothing behind,
    so that a full disk is not kept full by half an archive."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
