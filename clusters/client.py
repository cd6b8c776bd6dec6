"""One member cluster's connection: a reused ApiClient, a bound on requests in flight.

kubernetes_asyncio gives us authentication (tokens, client certificates, exec plugins)
and an aiohttp session; it has no rate limiter and its generated models are slow to
build, so every call here goes through `request`, which returns the raw JSON and maps
failures onto `clusters.errors`. One `ClusterClient` per cluster, created once and reused;
it counts what it sends (`stats`), which the hub's metrics read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from asyncio import sslproto
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.config import load_kube_config_from_dict
from kubernetes_asyncio.config.config_exception import ConfigException
from yarl import URL

from clusters.errors import ClusterError, Unauthorized, Unreachable, api_error, causes_of

# A member cluster that does not answer within this is treated as unreachable: long
# enough for a loaded API server across an ocean, short enough that `join` answers fast.
DEFAULT_TIMEOUT = 10.0
# Requests in flight per cluster. API servers' priority-and-fairness queues start
# rejecting a single client well above this; beyond it latency only grows.
DEFAULT_MAX_IN_FLIGHT = 16
# Long-lived streams (watches) per cluster the connection pool keeps room for, beside the
# requests: a watch cache holds one per watched kind (about ten), and watches are exempt
# from the API server's in-flight limits, so they take no request slot.
MAX_STREAMS = 16

JSON = "application/json"
# How a long-lived stream (a watch) is counted among the requests, as API servers count it.
WATCH = "WATCH"
# The code of a request's error when no answer came (refused, timed out, TLS failed).
NO_ANSWER = "none"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
# Seconds an idle connection is kept for the next request: longer than the hub leaves a
# quiet cluster unasked (its probe and discovery, back to back on one connection, every
# WATCH_QUIET and DISCOVERY_INTERVAL of 60 s, which the prober's one-second passes make
# 61), shorter than an API server keeps it (90 s). At 60 s, every one of those minutes
# paid a new connection: a thousand idle clusters' TLS handshakes and address lookups
# were two fifths of the hub's idle CPU.
KEEPALIVE = 75.0
# Bytes one TLS connection reads from its socket at a time: one TLS record's worth.
TLS_READ_BUFFER = 16 * 1024


def small_tls_buffers() -> None:
    """Give every TLS connection of this process a read buffer of one TLS record
    instead of asyncio's 256 KiB.

    asyncio allocates (and zero-fills, so it is resident) `SSLProtocol.max_size` bytes
    per connection, and a member cluster holds about nine of them open for as long as
    the hub runs: a watch per watched kind and the requests' pool. That buffer was three
    quarters of an idle cluster's memory, 2.2 MiB of its cache's 2.9 (measured on 100
    caches of one local API server); with a record's worth it is 0.6 MiB. The socket is
    then read 16 KiB at a time instead of 256: a large LIST takes a few more loop
    callbacks, and watch events, a few hundred bytes each, none. The attribute is
    asyncio's own, unchanged since 3.11; where it is missing this does nothing."""
    if hasattr(sslproto.SSLProtocol, "max_size"):
        sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


@dataclass
class RequestStats:
    """What one client sent, for the hub's metrics: plain numbers, so that counting costs a
    request an addition, and reading them (on a scrape) costs the requests nothing."""

    requests: dict[str, int] = field(default_factory=dict)
    """By verb: the HTTP method, or WATCH for a stream."""
    errors: dict[tuple[str, str], int] = field(default_factory=dict)
    """By (verb, code): the HTTP status of an error answer, or NO_ANSWER."""
    in_flight: int = 0
    """Requests holding a slot now (watches take none): at most `max_in_flight`."""

    def failed(self, verb: str, code: str) -> None:
        self.errors[verb, code] = self.errors.get((verb, code), 0) + 1


class ClusterClient:
    """Requests to one API server, bounded and timed out, answering raw JSON."""

    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        server: str,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.api = api
        self.server = server
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_in_flight)
        self.stats = RequestStats()
        self._refresh: Callable[[], Awaitable[None]] | None = None

    @classmethod
    async def connect(
        cls,
        document: Mapping[str, Any],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        temp_dir: Path | None = None,
    ) -> ClusterClient:
        """Build the client from a self-contained kubeconfig (see clusters.kubeconfig).

        Runs an exec credential plugin if the kubeconfig has one; a failing plugin is
        reported as Unauthorized without its output, which may contain a token.
        """
        configuration = k8s.Configuration()
        configuration.connection_pool_maxsize = max_in_flight + MAX_STREAMS
        try:
            await load_kube_config_from_dict(
                dict(document),
                client_configuration=configuration,
                temp_file_path=str(temp_dir) if temp_dir else None,
            )
        except (ConfigException, OSError, ssl.SSLError, ValueError) as e:
            raise Unauthorized(f"{_server_of(document)}: cannot load credentials") from e
        _proxy_from_env(configuration)
        try:
            api = _JsonApiClient(configuration)
        except (ssl.SSLError, OSError) as e:
            raise Unauthorized(
                f"{_server_of(document)}: certificate or key is not usable ({type(e).__name__})"
            ) from e
        # kubernetes_asyncio's session trusts the environment, so aiohttp looks up proxy
        # variables and parses ~/.netrc in a worker thread on *every* request: two thread
        # hops per call, a tenth of the hub's CPU in a 64-cluster deploy. The proxy was
        # settled once above; netrc never applies (credentials come from the kubeconfig).
        api.rest_client.pool_manager._trust_env = False
        # aiohttp closes a connection idle for 15 s, so one asked every half minute (a
        # quiet cluster's discovery) paid a TLS handshake each time: with a thousand
        # clusters, most of an idle hub's CPU. API servers close theirs after 90 s.
        if (connector := api.rest_client.pool_manager.connector) is not None:
            connector._keepalive_timeout = KEEPALIVE
        client = cls(
            api, server=str(configuration.host), timeout=timeout, max_in_flight=max_in_flight
        )
        if _uses_exec(document):

            async def refresh() -> None:
                """Run the exec plugin again: its tokens expire (EKS: 15 minutes)."""
                await load_kube_config_from_dict(
                    dict(document),
                    client_configuration=configuration,
                    temp_file_path=str(temp_dir) if temp_dir else None,
                )

            client._refresh = refresh
        return client

    async def close(self) -> None:
        await self.api.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> Any:
        """One call; the parsed JSON body (or text for non-JSON answers like /readyz).

        A 401 with exec-plugin credentials runs the plugin again and retries once."""
        try:
            async with self._response(method, path, query, body, content_type, timeout) as resp:
                data = await resp.read()
        except Unauthorized:
            if self._refresh is None:
                raise
            try:
                await self._refresh()
            except (ConfigException, OSError, ValueError) as e:
                raise Unauthorized(f"{self.server}: the exec credential plugin failed") from e
            async with self._response(method, path, query, body, content_type, timeout) as resp:
                data = await resp.read()
        if resp.content_type == JSON:
            return orjson.loads(data)  # lists of hundreds of objects: the fast parser
        return data.decode(errors="replace")

    async def get_unless_match(
        self, path: str, *, accept: str, etag: str | None, timeout: float | None = None
    ) -> tuple[str | None, Any]:
        """A GET sent with `If-None-Match: etag`: the answer's ETag and its JSON, or its
        JSON as None when the ETag still holds (304). For documents that rarely change
        and are asked for often (discovery): a 304 costs the server no serialising and
        the hub no parsing."""
        headers = {"Accept": accept} | ({"If-None-Match": etag} if etag else {})
        async with self._response("GET", path, None, None, JSON, timeout, headers=headers) as resp:
            tag = resp.headers.get("ETag")
            if resp.status == 304:
                return tag or etag, None
            return tag, orjson.loads(await resp.read())

    @asynccontextmanager
    async def stream(
        self,
        path: str,
        *,
        query: Mapping[str, str | int | bool] | None = None,
        read_timeout: float | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A long-lived GET (a watch); the caller reads lines from `response.content`.

        It takes no request slot: a stream lives as long as its watch, and a few watches
        holding slots would starve the short requests that the slots are for.
        """
        timeout = aiohttp.ClientTimeout(sock_connect=self.timeout, sock_read=read_timeout)
        async with self._response("GET", path, query, None, JSON, timeout, slot=False) as resp:
            yield resp

    @asynccontextmanager
    async def _response(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None,
        body: Any,
        content_type: str,
        timeout: float | aiohttp.ClientTimeout | None,
        *,
        slot: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        verb, stats = method if slot else WATCH, self.stats
        async with self._slots if slot else contextlib.nullcontext():
            stats.requests[verb] = stats.requests.get(verb, 0) + 1
            stats.in_flight += slot
            try:
                try:
                    resp = await self._call(
                        method, path, query, body, content_type, timeout, headers
                    )
                except Unreachable:
                    stats.failed(verb, NO_ANSWER)
                    raise
                try:
                    if resp.status >= 400:
                        stats.failed(verb, str(resp.status))
                        await _raise_for_status(resp, self.server, method, path)
                    yield resp
                finally:
                    resp.release()
            finally:
                stats.in_flight -= slot

    async def _call(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int | bool] | None,
        body: Any,
        content_type: str,
        timeout: float | aiohttp.ClientTimeout | None,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send one request; every way of getting no answer is Unreachable."""
        params = {k: _query_value(v) for k, v in (query or {}).items()}
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=list(params.items()),
                header_params={"Content-Type": content_type, "Accept": JSON, **(headers or {})},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout if timeout is not None else self.timeout,
            )
        except TimeoutError as e:
            raise Unreachable(f"{self.server}: no answer within the timeout") from e
        except aiohttp.ClientSSLError as e:
            raise Unreachable(f"{self.server}: TLS failed ({_tls_reason(e)})") from e
        except aiohttp.ClientError as e:
            raise Unreachable(f"{self.server}: cannot connect ({type(e).__name__})") from e
        except (ConfigException, ssl.SSLError, OSError) as e:
            raise Unreachable(f"{self.server}: cannot connect ({type(e).__name__})") from e
        return response


class _JsonApiClient(k8s.ApiClient):
    """An ApiClient that sends bodies as they are. The stock one walks every body to turn
    generated models into JSON; ours are JSON already (manifests from Helm or the store),
    and the walk cost a tenth of the hub's CPU in a 64-cluster deploy."""

    def sanitize_for_serialization(self, obj: Any) -> Any:
        return obj


def _proxy_from_env(configuration: k8s.Configuration) -> None:
    """Use HTTPS_PROXY / NO_PROXY as kubectl does, unless the kubeconfig names a proxy."""
    if configuration.proxy:
        return
    try:
        proxy, auth = get_env_proxy_for_url(URL(str(configuration.host)))
    except LookupError:
        return
    configuration.proxy = str(proxy)
    if auth is not None:
        configuration.proxy_headers = {"Proxy-Authorization": auth.encode()}


async def _raise_for_status(
    resp: aiohttp.ClientResponse, server: str, method: str, path: str
) -> None:
    text = await resp.text(errors="replace")
    message, reason, causes = text.strip()[:300], "", []
    try:
        status = json.loads(text)
        message, reason = status.get("message", message), status.get("reason", "")
        causes = causes_of(status)
    except (ValueError, AttributeError):
        pass
    if resp.status == 401:
        raise Unauthorized(f"{server}: credentials rejected (401 Unauthorized)")
    raise api_error(resp.status, f"{method} {path}: {message}", reason, causes=causes)


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _tls_reason(error: aiohttp.ClientSSLError) -> str:
    cause = getattr(error, "certificate_error", None) or error.__cause__ or error
    text = str(getattr(cause, "verify_message", "") or getattr(cause, "reason", "") or "")
    return text or type(cause).__name__


def _uses_exec(document: Mapping[str, Any]) -> bool:
    users = document.get("users") or []
    return any(isinstance((u.get("user") or {}).get("exec"), Mapping) for u in users)


def _server_of(document: Mapping[str, Any]) -> str:
    try:
        return str(document["clusters"][0]["cluster"]["server"])
    except (KeyError, IndexError, TypeError):
        return "cluster"


__all__ = ["APPLY_PATCH", "JSON", "MERGE_PATCH", "ClusterClient", "ClusterError", "RequestStats"]
