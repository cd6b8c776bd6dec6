"""A minimal synchronous REST client for the harness's own few calls.

`up` must wait for /readyz, the node and the `default` service account, and
create the restricted user's namespace and RBAC, all from plain synchronous
code (a CLI, a session fixture). Spawning kubectl for each poll costs a process
start per call, and an async client would force an event loop on every caller;
a handful of JSON requests over the stdlib's HTTPS client is the smaller thing.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Every call is local; anything slower than this is a hung server, not load.
REQUEST_TIMEOUT = 10.0


class KubeAPIError(Exception):
    """A request that the API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:300]}")
        self.status = status


class KubeAPI:
    """Speaks to one API server on 127.0.0.1 with a client certificate."""

    def __init__(self, port: int, ca: Path, cert: Path, key: Path) -> None:
        self.port = port
        self._context = ssl.create_default_context(cafile=str(ca))
        self._context.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; the decoded JSON answer, or KubeAPIError."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self._context, timeout=REQUEST_TIMEOUT
        )
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        if response.status >= 400:
            raise KubeAPIError(method, path, response.status, text)
        return json.loads(text) if text.startswith(("{", "[")) else text

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def create(self, path: str, body: dict[str, Any]) -> None:
        """POST `body`; an object that already exists counts as created."""
        try:
            self.request("POST", path, body)
        except KubeAPIError as e:
            if e.status != 409:
                raise

    def wait_for(self, what: str, probe: Callable[[KubeAPI], bool], timeout: float) -> None:
        """Poll `probe` until it holds; connection errors and HTTP errors count as
        'not yet', since a starting server produces both."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if probe(self):
                    return
            except (OSError, http.client.HTTPException, KubeAPIError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"127.0.0.1:{self.port}: {what} not ready after {timeout:.0f}s")
            time.sleep(0.1)
