"""Fetching charts through an on-disk cache keyed by digest.

A release is only as reproducible as its chart, so every fetched archive is kept under
its sha256 and a small index maps (repository, chart, version) to that digest: the second
fetch of a pinned version touches no network. Local directories change while a user
develops, so they are read afresh on every fetch and identified by a hash of their files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import tempfile
from pathlib import Path

import aiohttp
import helm_python

from hub.charts.errors import ChartNotFound, InvalidChart, InvalidChartRef, one_line
from hub.charts.refs import ChartRef, resolve_version, semver
from hub.charts.render import LoadedChart, RenderCache
from hub.charts.repositories import HelmRepository, OciRepository, Repository
from hub.home import Home

# Long enough for a slow registry on a busy link, short enough that a dead repository fails a
# deploy quickly instead of holding a fan-out hostage.
DEFAULT_TIMEOUT_SECONDS = 30.0
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
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        render_cache_size: int = DEFAULT_RENDER_CACHE_SIZE,
    ) -> None:
        self.cache_dir = cache_dir if cache_dir is not None else Home.default().charts
        self.timeout = timeout
        self._archives = _ArchiveStore(self.cache_dir)
        self._renders = RenderCache(render_cache_size)
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
        if ref.version and semver(ref.version) is not None:
            cached = await asyncio.to_thread(self._load_cached, ref, ref.version)
            if cached is not None:
                return cached
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        # A session per fetch: fetches are rare (the cache answers most) and this way nothing
        # outlives the event loop that made it.
        async with aiohttp.ClientSession(timeout=timeout) as session:
            repository: Repository = (
                HelmRepository(ref, session, self.timeout)
                if ref.repo_type == "helm"
                else OciRepository(ref, session, self.timeout)
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
            raise InvalidChart(f"chart {ref.chart} {version}: {one_line(e.detail)}") from e
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
            raise InvalidChart(f"{ref}: {path}: {one_line(str(e))}") from e
        loaded = LoadedChart(handle, digest, self._renders)
        if ref.version:
            resolve_version(ref, [loaded.version])  # raises unless the directory matches
        return loaded


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
