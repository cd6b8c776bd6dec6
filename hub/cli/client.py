"""The CLI's side of the HTTP API: one small adapter from a coroutine to a hub call.

Errors come back as the hub's one-line message with its exit code, so the CLI prints
exactly what the hub decided and exits the way scripts expect.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from hub.errors import FlotillaError, HubUnavailable
from hub.home import START_HINT, Home

# Generous: `join` alone may take the cluster's full 10 s to answer.
REQUEST_TIMEOUT = 120.0


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

    async def lines(self, path: str) -> AsyncIterator[Any]:
        """Each JSON line of a streaming answer (NDJSON), until the hub ends it; empty
        lines (the stream's keep-alives) are skipped."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        try:
            async with (
                aiohttp.ClientSession(headers=self._headers, timeout=timeout) as session,
                session.get(f"{self.url}{path}") as resp,
            ):
                if resp.status >= 400:
                    payload = await resp.json(content_type=None)
                    raise RemoteError(str(payload.get("error")), int(payload.get("exit_code", 1)))
                async for line in resp.content:
                    if line.strip():
                        yield json.loads(line)
        except aiohttp.ClientConnectionError:
            raise HubUnavailable(f"lost the hub at {self.url}; {START_HINT}") from None

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(headers=self._headers, timeout=timeout) as session,
                session.request(method, f"{self.url}{path}", json=body) as resp,
            ):
                payload = await resp.json(content_type=None)
        except aiohttp.ClientConnectionError:
            raise HubUnavailable(f"cannot reach the hub at {self.url}; {START_HINT}") from None
        except TimeoutError:
            raise HubUnavailable(f"the hub at {self.url} did not answer in time") from None
        except ValueError:
            raise HubUnavailable(f"{self.url} did not answer like a Flotilla hub") from None
        if resp.status >= 400:
            raise RemoteError(str(payload.get("error")), int(payload.get("exit_code", 1)))
        return payload
