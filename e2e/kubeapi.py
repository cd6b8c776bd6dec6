"""A minimal synchronous REST client for the harness's own few calls.

`up` must wait for /readyz, the node and the `default` service account, and
create the restricted user's namespace and RBAC, all from plain synchronous
code (a CLI, a session fixture). Spawning kubectl for each poll costs a process
start per call, and an async client would force an event loop on every caller;
a handful of JSON requests over the stdlib's HTTPS client is the smaller thing.
"""

from __future__ import annotations

import base64
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
    """Speaks to one API server on 127.0.0.1 with a client certificate (or a token)."""

    def __init__(
        self, port: int, ca: Path, cert: Path | None, key: Path | None, token: str | None = None
    ) -> None:
        self.port = port
        self.ca = ca
        self._token = token
        self._context = ssl.create_default_context(cafile=str(ca))
        if cert is not None and key is not None:
            self._context.load_cert_chain(str(cert), str(key))

    def as_token(self, token: str) -> KubeAPI:
        """The same server, as whoever `token` says."""
        return KubeAPI(self.port, self.ca, None, None, token)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; the decoded JSON answer, or KubeAPIError."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self._context, timeout=REQUEST_TIMEOUT
        )
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Accept": "application/json"}
            if self._token is not None:
                headers["Authorization"] = f"Bearer {self._token}"
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


# How long the token controller may take to fill a new token Secret: it does so at once
# on a healthy cluster, and the bound only matters on a broken one.
TOKEN_TIMEOUT = 30.0


def service_account_token(api: KubeAPI, namespace: str, name: str) -> str:
    """A ServiceAccount `name` in `namespace`, bound to cluster-admin, and its legacy token
    (a `kubernetes.io/service-account-token` Secret also called `name`): a credential that
    `revoke_token` can take away while a client uses it. The binding is owned by the
    namespace, so deleting the namespace takes everything along."""
    namespaced = f"/api/v1/namespaces/{namespace}"
    api.create(f"{namespaced}/serviceaccounts", {"metadata": {"name": name}})
    owner = api.get(namespaced)["metadata"]["uid"]
    api.create(
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "metadata": {
                "name": f"{namespace}-{name}",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": owner}
                ],
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    api.create(
        f"{namespaced}/secrets",
        {
            "metadata": {
                "name": name,
                "annotations": {"kubernetes.io/service-account.name": name},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    secret = f"{namespaced}/secrets/{name}"
    api.wait_for(
        f"the token of {namespace}/{name}",
        lambda server: bool(server.get(secret).get("data", {}).get("token")),
        TOKEN_TIMEOUT,
    )
    return base64.b64decode(api.get(secret)["data"]["token"]).decode()


def revoke_token(api: KubeAPI, namespace: str, name: str, token: str) -> None:
    """Delete the token Secret `name`, and return once the API server refuses `token`: it
    remembers a token it accepted for a few seconds (its authentication cache)."""
    api.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}")

    def refused(server: KubeAPI) -> bool:
        try:
            server.get("/api")
        except KubeAPIError as e:
            if e.status == 401:
                return True
            raise
        return False

    api.as_token(token).wait_for(f"the token of {namespace}/{name} refused", refused, TOKEN_TIMEOUT)
