"""Remote sources of chart archives: classic Helm repositories (index.yaml) and OCI
registries.

HTTP repositories are read with aiohttp rather than through Helm so that every request
has a timeout; OCI registries speak a protocol Helm already implements, so Helm pulls
them after a quick reachability probe that does have a timeout.

A repository registered with credentials (`flotilla repo add`) is read with them: an HTTP
repository's requests carry its basic auth or bearer token, but only those to its own
origin (an index may list archives on any host, and a password must not follow them
there); an OCI registry is logged in to by Helm's registry client, whose logins file is a
private one under the hub's home (never the user's ~/.config/helm), made afresh for each
fetch and removed after it. A refusal of the credentials is one line naming the repository.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import shutil
import tempfile
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp
import helm_python
import yaml

from hub.charts.errors import (
    ChartError,
    ChartNotFound,
    ChartRepoUnreachable,
    InvalidChart,
    display_url,
    one_line,
)
from hub.charts.refs import VERSIONS_SHOWN, ChartRef
from hub.errors import InvalidInput
from hub.format.documents import ManifestLoader
from hub.model.records import RepositoryRecord, same_origin

# Registries on this machine (the e2e ones, a developer's) serve plain HTTP; anything else must
# be TLS, as Helm itself insists.
PLAIN_HTTP_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# What a server answers credentials it will not take (or a request that needs some).
REFUSALS = (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
# The status in an error of Helm's registry client ("... 401 Unauthorized", "status code 403").
_HELM_STATUS = re.compile(r"\b(401|403)\b")
# What Helm's registry client says when a registry wants basic auth and it has no login: a
# 401 it does not quote.
_NO_CREDENTIALS = "basic credential not found"


class CredentialsRefused(ChartError, InvalidInput):
    """A repository or registry refused the credentials registered for it, or asks for
    credentials none are registered for. Nothing was fetched."""


class Repository(Protocol):
    """One remote source of chart archives: what versions it has, and their bytes."""

    async def versions(self) -> list[str]: ...

    async def download(self, version: str) -> bytes: ...

    def close(self) -> None:
        """Release what the repository holds (a registry login); it is not used again."""


def describe(record: RepositoryRecord) -> str:
    """`repository acme (http://127.0.0.1:8879/charts)`: how messages name one."""
    return f"repository {record.name} ({display_url(record.url)})"


def refused(record: RepositoryRecord, status: int | str) -> CredentialsRefused:
    """The repository would not take `record`'s credentials."""
    return CredentialsRefused(f"{describe(record)}: credentials refused (HTTP {status})")


def needs_credentials(url: str, status: int | str) -> CredentialsRefused:
    """A repository that answers 401/403 to a hub that has no credentials for it."""
    shown = display_url(url.rstrip("/"))
    return CredentialsRefused(
        f"repository {shown} needs credentials (HTTP {status}): register them with "
        f"`flotilla repo add NAME --url {shown} --username USER --password-stdin`"
    )


def authorization(record: RepositoryRecord) -> str:
    """The `Authorization` header value of an HTTP repository's credentials."""
    if record.auth == "token":
        return f"Bearer {record.secret}"
    # By hand: aiohttp's BasicAuth is deprecated, and its successor needs aiohttp 3.14.
    return "Basic " + base64.b64encode(f"{record.username}:{record.secret}".encode()).decode()


def registry_host(url: str) -> tuple[str, bool]:
    """An `oci://` URL's registry host (`host:port`), and whether it speaks plain HTTP."""
    host = urlsplit(url)
    return host.netloc, host.hostname in PLAIN_HTTP_HOSTS


def _subject(ref: ChartRef, credentials: RepositoryRecord | None) -> str:
    """What a message names: the chart fetched or, checking credentials, the repository."""
    if ref.chart:
        return str(ref)
    return describe(credentials) if credentials else f"repository {display_url(ref.url)}"


async def check_credentials(record: RepositoryRecord, *, timeout: float, logins_dir: Path) -> None:
    """Ask the repository once whether it takes `record`'s credentials: an HTTP
    repository's index.yaml, or a registry login. Raises CredentialsRefused (or
    ChartRepoUnreachable, ChartNotFound) with one line naming the repository."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        if record.kind == "http":
            ref = ChartRef("helm", record.url, "")
            await HelmRepository(ref, session, timeout, credentials=record).index()
            return
        ref = ChartRef("oci", record.url, "")
        registry = OciRepository(ref, session, timeout, credentials=record, logins_dir=logins_dir)
        try:
            await registry.probe()
            await asyncio.to_thread(registry.client)
        finally:
            registry.close()


class HelmRepository:
    """A classic Helm repository: an index.yaml listing archives by URL and digest."""

    def __init__(
        self,
        ref: ChartRef,
        session: aiohttp.ClientSession,
        timeout: float,
        *,
        credentials: RepositoryRecord | None = None,
    ) -> None:
        """`credentials`: the registered repository covering `ref.url`, if any."""
        self._ref = ref
        self._session = session
        self._timeout = timeout
        self._credentials = credentials
        self._what = _subject(ref, credentials)
        self._base = ref.url.rstrip("/") + "/"
        self._entries: dict[str, dict[str, Any]] = {}

    async def index(self) -> dict[str, Any]:
        """The repository's index.yaml: its `entries`, by chart name."""
        body = await self._get(urljoin(self._base, "index.yaml"))
        try:
            index = await asyncio.to_thread(yaml.load, body, Loader=ManifestLoader)
        except yaml.YAMLError as e:
            raise ChartRepoUnreachable(
                f"{self._what}: {display_url(self._base)}index.yaml is not valid YAML"
            ) from e
        entries = index.get("entries") if isinstance(index, dict) else None
        if not isinstance(entries, dict):
            raise ChartRepoUnreachable(
                f"{self._what}: {display_url(self._base)}index.yaml is not a Helm repository index"
            )
        return entries

    async def versions(self) -> list[str]:
        entries = await self.index()
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

    def close(self) -> None:
        """Nothing to release: the session is the caller's."""

    async def _get(self, url: str) -> bytes:
        shown = display_url(url)
        credentials = self._credentials
        headers = {}
        if credentials is not None and same_origin(url, self._base):
            headers["Authorization"] = authorization(credentials)
        try:
            async with self._session.get(url, headers=headers) as response:
                if response.status in REFUSALS and same_origin(url, self._base):
                    if credentials is None:
                        raise needs_credentials(self._ref.url, response.status)
                    raise refused(credentials, response.status)
                if response.status == HTTPStatus.NOT_FOUND:
                    raise ChartNotFound(f"{self._what}: {shown} does not exist (HTTP 404)")
                if response.status != HTTPStatus.OK:
                    raise ChartRepoUnreachable(
                        f"{self._what}: {shown} answered HTTP {response.status}"
                    )
                return await response.read()
        except TimeoutError as e:
            raise ChartRepoUnreachable(
                f"{self._what}: {shown} did not answer within {self._timeout:g}s"
            ) from e
        except aiohttp.ClientError as e:
            raise ChartRepoUnreachable(
                f"{self._what}: cannot reach {shown}: {one_line(str(e))}"
            ) from e


class OciRepository:
    """A chart in an OCI registry (`oci://host/path` + chart name), pulled by Helm.

    Helm's pull cannot be given a timeout, so a GET of the registry's `/v2/` endpoint (which
    every distribution-spec registry answers, if only with 401) checks it is there first. A
    registry that answers that and then hangs still blocks a worker thread until Helm gives up.

    Helm's registry client is made once per fetch, logged in first when `credentials` are
    given; its logins file is in a directory of its own under `logins_dir` (0700), removed
    by `close`, so no login outlives the fetch and none is read from the user's Helm.
    """

    def __init__(
        self,
        ref: ChartRef,
        session: aiohttp.ClientSession,
        timeout: float,
        *,
        credentials: RepositoryRecord | None = None,
        logins_dir: Path | None = None,
    ) -> None:
        """`logins_dir`: where the private logins file goes (None and no credentials:
        Helm's own configuration, only read)."""
        self._ref = ref
        self._session = session
        self._timeout = timeout
        self._credentials = credentials
        self._what = _subject(ref, credentials)
        self._logins_dir = logins_dir
        self._reference = f"{ref.url.rstrip('/')}/{ref.chart}"
        self._host, self._plain_http = registry_host(ref.url)
        scheme = "http" if self._plain_http else "https"
        self._probe_url = f"{scheme}://{self._host}/v2/"
        self._client: helm_python.RegistryClient | None = None
        self._logins: Path | None = None

    async def probe(self) -> None:
        """Whether the registry answers at all (any status will do), within the timeout."""
        try:
            async with self._session.get(self._probe_url):
                pass
        except TimeoutError as e:
            raise ChartRepoUnreachable(
                f"{self._what}: registry {display_url(self._ref.url)} did not answer "
                f"within {self._timeout:g}s"
            ) from e
        except aiohttp.ClientError as e:
            raise ChartRepoUnreachable(
                f"{self._what}: cannot reach registry {display_url(self._ref.url)}: "
                f"{one_line(str(e))}"
            ) from e

    async def versions(self) -> list[str]:
        await self.probe()
        return await asyncio.to_thread(self._tags)

    async def download(self, version: str) -> bytes:
        return await asyncio.to_thread(self._pull, version)

    def client(self) -> helm_python.RegistryClient:
        """Helm's registry client for this fetch, logged in if there are credentials."""
        if self._client is not None:
            return self._client
        logins = None
        credentials = self._credentials
        if self._logins_dir is not None or credentials is not None:
            # A login is never written to the user's Helm: without a directory of the hub's,
            # to a private temporary one (mkdtemp makes it 0700).
            parent = self._logins_dir or Path(tempfile.gettempdir())
            parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._logins = Path(tempfile.mkdtemp(prefix="login-", dir=parent))
            logins = self._logins / "config.json"
        client = helm_python.RegistryClient(plain_http=self._plain_http, credentials_file=logins)
        if credentials is not None:
            try:
                client.login(
                    self._host,
                    credentials.username,
                    credentials.secret,
                    plain_http=self._plain_http,
                )
            except helm_python.HelmError as e:
                client.close()
                status = _HELM_STATUS.search(e.detail)
                if status is None:
                    raise ChartRepoUnreachable(
                        f"{describe(credentials)}: login failed: {one_line(e.detail)}"
                    ) from e
                raise refused(credentials, status[1]) from e
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._logins is not None:
            shutil.rmtree(self._logins, ignore_errors=True)
            self._logins = None

    def _refusal(self, error: helm_python.HelmError) -> CredentialsRefused | None:
        """The error as a refusal of (or a need for) credentials, if it is one."""
        status = _HELM_STATUS.search(error.detail)
        if status is None and _NO_CREDENTIALS not in error.detail:
            return None
        code = status[1] if status else str(int(HTTPStatus.UNAUTHORIZED))
        if self._credentials is None:
            return needs_credentials(self._ref.url, code)
        return refused(self._credentials, code)

    def _tags(self) -> list[str]:
        try:
            return self.client().tags(self._reference)
        except helm_python.HelmError as e:
            if "status code 404" in e.detail:
                raise ChartNotFound(
                    f"{self._ref}: no chart {self._ref.chart} in {display_url(self._ref.url)}"
                ) from e
            if (refusal := self._refusal(e)) is not None:
                raise refusal from e
            raise ChartRepoUnreachable(f"{self._what}: {one_line(e.detail)}") from e

    def _pull(self, version: str) -> bytes:
        with tempfile.TemporaryDirectory(prefix="flotilla-pull-") as destination:
            try:
                helm_python.pull(
                    self._reference,
                    client=self.client(),
                    version=version,
                    destination=destination,
                    plain_http=self._plain_http,
                )
            except helm_python.HelmError as e:
                if (refusal := self._refusal(e)) is not None:
                    raise refusal from e
                raise ChartRepoUnreachable(
                    f"chart {self._ref.chart} {version}: {one_line(e.detail)}"
                ) from e
            (archive,) = Path(destination).glob("*.tgz")
            return archive.read_bytes()
