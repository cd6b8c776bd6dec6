"""Remote sources of chart archives: classic Helm repositories (index.yaml) and OCI
registries.

HTTP repositories are read with aiohttp rather than through Helm so that every request
has a timeout; OCI registries speak a protocol Helm already implements, so Helm pulls
them after a quick reachability probe that does have a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp
import helm_python
import yaml

from hub.charts.errors import (
    ChartNotFound,
    ChartRepoUnreachable,
    InvalidChart,
    display_url,
    one_line,
)
from hub.charts.refs import VERSIONS_SHOWN, ChartRef
from hub.format.documents import ManifestLoader

# Registries on this machine (the e2e ones, a developer's) serve plain HTTP; anything else must
# be TLS, as Helm itself insists.
PLAIN_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# A "not found" message lists at most this many versions: enough to spot a typo.


class Repository(Protocol):
    """One remote source of chart archives: what versions it has, and their bytes."""

    async def versions(self) -> list[str]: ...

    async def download(self, version: str) -> bytes: ...


class HelmRepository:
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
            index = await asyncio.to_thread(yaml.load, body, Loader=ManifestLoader)
        except yaml.YAMLError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: {display_url(self._base)}index.yaml is not valid YAML"
            ) from e
        entries = index.get("entries") if isinstance(index, dict) else None
        if not isinstance(entries, dict):
            raise ChartRepoUnreachable(
                f"{self._ref}: {display_url(self._base)}index.yaml is not a Helm repository index"
            )
        if not entries.get(self._ref.chart):
            names = ", ".join(sorted(entries)[:VERSIONS_SHOWN]) or "no charts"
            raise ChartNotFound(
                f"{self._ref}: no chart {self._ref.chart} in {display_url(self._ref.url)}; "
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
        shown = display_url(url)
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
                f"{self._ref}: cannot reach {shown}: {one_line(str(e))}"
            ) from e


class OciRepository:
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
                f"{self._ref}: registry {display_url(self._ref.url)} did not answer "
                f"within {self._timeout:g}s"
            ) from e
        except aiohttp.ClientError as e:
            raise ChartRepoUnreachable(
                f"{self._ref}: cannot reach registry {display_url(self._ref.url)}: "
                f"{one_line(str(e))}"
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
                    f"{self._ref}: no chart {self._ref.chart} in {display_url(self._ref.url)}"
                ) from e
            raise ChartRepoUnreachable(f"{self._ref}: {one_line(e.detail)}") from e

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
                    f"chart {self._ref.chart} {version}: {one_line(e.detail)}"
                ) from e
            (archive,) = Path(destination).glob("*.tgz")
            return archive.read_bytes()
