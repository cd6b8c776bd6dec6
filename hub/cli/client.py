"""The CLI's side of the HTTP API: one request to the hub, with the standard library.

Errors come back as the hub's one-line message with its exit code, so the CLI prints
exactly what the hub decided and exits the way scripts expect. A command is one request
to a hub that is usually on this machine: `http.client` is loaded in a few milliseconds
(and only by a command that sends one, not by `--help`), where asyncio and aiohttp's
connector cost a CLI start several times that; tests/unit/test_cli_imports.py keeps them
out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hub.errors import FlotillaError, HubUnavailable
from hub.home import START_HINT, Home

if TYPE_CHECKING:
    import http.client

# Generous: `join` alone may take the cluster's full 10 s to answer. `http.client` bounds
# each connect and each read by it, so a hub that goes silent is given up after as long.
REQUEST_TIMEOUT = 120.0
# An event stream is quiet for as long as nothing happens: only its connect is bounded.
STREAM_CONNECT_TIMEOUT = 10.0


class RemoteError(FlotillaError):
    """An error the hub reported; carries the hub's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HubClient:
    def __init__(self, url: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def from_home(cls, home: Home | None = None, *, timeout: float = REQUEST_TIMEOUT) -> HubClient:
        return cls(*(home or Home.default()).locate(), timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The hub's JSON answer to one request; a RemoteError when it refused."""
        import http.client

        connection = self._connection(self.timeout)
        try:
            response = self._send(connection, method, path, body)
            raw = response.read()
        except TimeoutError:
            raise HubUnavailable(f"the hub at {self.url} did not answer in time") from None
        except OSError:
            raise HubUnavailable(f"cannot reach the hub at {self.url}; {START_HINT}") from None
        except http.client.HTTPException:
            raise self._not_a_hub() from None
        finally:
            connection.close()
        payload = self._json(raw)
        if response.status >= 400:
            raise self._refused(payload)
        return payload

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """`request` for async callers (the bench joins clusters concurrently): in a
        thread, so their loop goes on meanwhile."""
        import asyncio  # loaded already wherever a coroutine awaits this

        return await asyncio.to_thread(self.request, method, path, body)

    def lines(self, path: str) -> Iterator[Any]:
        """Each JSON line of a streaming answer (NDJSON), until the hub ends it; empty
        lines (the stream's keep-alives) are skipped."""
        import http.client

        connection = self._connection(STREAM_CONNECT_TIMEOUT)
        try:
            connection.connect()
            assert connection.sock is not None  # connect() made it
            connection.sock.settimeout(None)
            response = self._send(connection, "GET", path)
            if response.status >= 400:
                raise self._refused(self._json(response.read()))
            for line in response:
                if line.strip():
                    yield self._json(line)
        except (OSError, http.client.HTTPException):
            raise HubUnavailable(f"lost the hub at {self.url}; {START_HINT}") from None
        finally:
            connection.close()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        import http.client

        parts = urlsplit(self.url)
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.netloc, timeout=timeout)
        return http.client.HTTPConnection(parts.netloc, timeout=timeout)

    def _send(
        self, connection: http.client.HTTPConnection, method: str, path: str, body: Any = None
    ) -> http.client.HTTPResponse:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection.request(method, urlsplit(self.url).path + path, body=data, headers=headers)
        return connection.getresponse()

    def _json(self, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise self._not_a_hub() from None

    def _refused(self, payload: Any) -> FlotillaError:
        if not isinstance(payload, dict):
            return self._not_a_hub()
        return RemoteError(str(payload.get("error")), int(payload.get("exit_code", 1)))

    def _not_a_hub(self) -> HubUnavailable:
        """Something answered at the hub's address, but not in the hub's JSON (a proxy's
        page, another service)."""
        return HubUnavailable(f"{self.url} did not answer like a Flotilla hub")
