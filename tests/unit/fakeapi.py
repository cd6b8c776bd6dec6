"""A scripted stand-in for an API server's ConfigMap endpoints, for failure paths that a
real server will not produce on demand (a 410 on the first watch, a 503 then success)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import ApiClient, Configuration

from clusters.resources import Backoff

FAST = Backoff(first=0.01, factor=2.0, cap=0.05)
"""Retries against the fake: it is local, and answers at once once it answers at all."""
WAIT = 10.0
"""Only a bound on a test that went wrong: every wait on the fake ends on a condition."""
CONFIG_MAPS = [("v1", "ConfigMap")]
"""What the fake serves to watch."""

DISCOVERY = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {"name": "configmaps", "namespaced": True, "kind": "ConfigMap", "verbs": ["list"]},
        {"name": "namespaces", "namespaced": False, "kind": "Namespace", "verbs": ["list"]},
        {"name": "pods/log", "namespaced": True, "kind": "Pod", "verbs": ["get"]},
    ],
}


def kubeconfig(server: str) -> dict[str, Any]:
    """A kubeconfig that reaches the API server at `server` with a bearer token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "admin", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "admin"}}],
        "current-context": "c",
    }


def config_map(name: str, version: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": version,
            "managedFields": [{"manager": "flotilla"}],
        },
        "data": {"v": version},
    }


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def gone() -> dict[str, Any]:
    status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
    return event("ERROR", status)


@dataclass
class FakeApi:
    """`lists` answers the n-th list; `watches` scripts the n-th watch connection (its
    events, then a clean end). Unscripted watches stay open and silent. `failures`
    answers the first requests of any kind with (status, Status) before the script.
    `pushed`: events a test sends down the open unscripted watch as it goes on."""

    lists: list[list[dict[str, Any]]] = field(default_factory=list)
    watches: list[list[dict[str, Any]]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    pushed: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1", self._discovery)
        app.router.add_get("/readyz", self._ready)
        app.router.add_get("/api/v1/namespaces/ns/configmaps", self._configmaps)
        app.router.add_get("/api/v1/configmaps", self._configmaps)
        app.router.add_get("/api/v1/namespaces/ns/configmaps/{name}", self._get)
        app.router.add_patch("/api/v1/namespaces/ns/configmaps/{name}", self._patch)
        app.router.add_patch("/api/v1/namespaces/{name}", self._patch_namespace)
        return app

    def count(self, what: str) -> int:
        return sum(1 for kind, _ in self.seen if kind == what)

    def _failure(self) -> web.Response | None:
        if not self.failures:
            return None
        code = self.failures.pop(0)
        status = {"kind": "Status", "code": code, "message": f"scripted {code}"}
        return web.json_response(status, status=code)

    async def _discovery(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(("discovery", {}))
        return self._failure() or web.json_response(DISCOVERY)

    async def _ready(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(("readyz", {}))
        return self._failure() or web.Response(text="ok")

    async def _get(self, request: web.Request) -> web.StreamResponse:
        """One object, as the latest scripted list has it."""
        name = request.match_info["name"]
        self.seen.append(("get", {"name": name}))
        found = [o for o in (self.lists[-1] if self.lists else []) if o["metadata"]["name"] == name]
        if not found:
            status = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}
            return web.json_response(status, status=404)
        return web.json_response(found[0])

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(("patch", dict(request.query)))
        applied = await request.json()
        applied["metadata"]["uid"] = f"uid-{applied['metadata']['name']}"
        return self._failure() or web.json_response(applied)

    async def _patch_namespace(self, request: web.Request) -> web.StreamResponse:
        """Namespace-scoped credentials: Namespace objects are out of bounds."""
        self.seen.append(("patch namespace", dict(request.query)))
        status = {"kind": "Status", "code": 403, "message": "namespaces is forbidden"}
        return web.json_response(status, status=403)

    async def _configmaps(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.seen.append(("list", dict(request.query)))
            number = self.count("list") - 1
            items = self.lists[number] if number < len(self.lists) else []
            version = str(100 * (number + 1))
            return web.json_response({"metadata": {"resourceVersion": version}, "items": items})
        self.seen.append(("watch", dict(request.query)))
        number = self.count("watch") - 1
        response = web.StreamResponse()
        await response.prepare(request)
        if number >= len(self.watches):
            # Open until the server stops, with what the test pushes meanwhile.
            stopping = asyncio.ensure_future(self.stopping.wait())
            while True:
                pushed = asyncio.ensure_future(self.pushed.get())
                await asyncio.wait((stopping, pushed), return_when=asyncio.FIRST_COMPLETED)
                if not pushed.done():
                    pushed.cancel()
                    return response
                await response.write(json.dumps(pushed.result()).encode() + b"\n")
        for line in self.watches[number]:
            await response.write(json.dumps(line).encode() + b"\n")
        return response


@asynccontextmanager
async def started(fake: FakeApi) -> AsyncIterator[TestServer]:
    """The fake on a local port (reached at `address(server)`); on the way out its open
    watches end and it stops."""
    server = TestServer(fake.app())
    await server.start_server()
    try:
        yield server
    finally:
        fake.stopping.set()
        await server.close()


def address(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@asynccontextmanager
async def serving(fake: FakeApi) -> AsyncIterator[ApiClient]:
    """The fake on a local port, and a kubernetes_asyncio client pointed at it."""
    async with started(fake) as server, ApiClient(Configuration(host=address(server))) as client:
        yield client
