"""The hub's API under bad input (issue 17, §7): random JSON and random bytes sent to every
route of a real hub process, with the token, with a wrong one and with none.

Every answer is a refusal the CLI can print (a 4xx of one line of JSON: `error` and
`exit_code`), or a page for a browser where the route is the web view's; never a 5xx,
never a hang, never a traceback in the hub's log, and the store is byte for byte what it
was. The routes are read from the API's own router (`create_app`), so a route added later
is covered without a change here.

No cluster is needed to refuse bad input, so these run without the `cluster` marker. Under
`make test` the examples are few and derandomized (the same every run); `make chaos`
(e2e/chaos.py) raises FLOTILLA_CHAOS_EXAMPLES and lets hypothesis draw fresh ones, each
failure printed with the example and a blob to reproduce it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.hubproc import HubProcess
from hub.api import create_app
from hub.charts import ChartCache
from hub.fleet.registry import Registry
from hub.home import Home
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.service.metrics import HubMetrics
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from hub.web import is_page

pytestmark = pytest.mark.chaos

# Examples per route: a handful under `make test`, many under `make chaos`.
CHAOS_EXAMPLES = os.environ.get("FLOTILLA_CHAOS_EXAMPLES")
EXAMPLES = int(CHAOS_EXAMPLES or "25")
# A hub that has not answered in this long is hung: every refusal is local and immediate.
ANSWER_TIMEOUT = 10.0
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# Names the handlers look for in a body or a query, so that drawn values reach past the
# first check ("expected a JSON object") into the handlers' own.
FIELDS = (
    "text",
    "source",
    "base",
    "explain",
    "kubeconfig",
    "labels",
    "name",
    "prometheus",
    "add",
    "remove",
    "revision",
    "url",
    "token",
    "username",
    "password",
    "csrf",
    "cluster",
)
QUERY = ("releases", "after", "limit", "app", "code", "revision", "cluster")
# Words a path parameter is sometimes, so that the handlers behind a known verb or asset
# are reached too; an application or cluster name drawn is never one the store holds.
WORDS = ("resume", "suspend", "restart", "rollback", "app.js", "style.css", "0", "-1")
CONTENT_TYPES = (
    None,
    "application/json",
    "application/json; charset=no-such-charset",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=b",
    "text/plain",
)
# Streams answer their headers at once and then stay open: their first answer is checked.
STREAMING = ("application/x-ndjson", "text/event-stream")


@dataclass(frozen=True)
class Route:
    path: str  # aiohttp's formatter, e.g. /api/v1/apps/{name}
    methods: frozenset[str]

    def __str__(self) -> str:
        return f"{'|'.join(sorted(self.methods))} {self.path}"


def served_routes() -> list[Route]:
    """Every path of the API as `create_app` registers it, with the methods it serves."""

    async def build() -> list[Route]:
        with tempfile.TemporaryDirectory() as scratch:
            where = Path(scratch)
            store = SqliteStore(where / "flotilla.db")
            supervisor = Supervisor()
            registry = Registry(store, Scrubber(), temp_dir=where, supervisor=supervisor)
            apps = Applications(
                store, registry, ChartCache(where / "charts"), supervisor=supervisor
            )
            api = create_app(registry, apps, Scrubber(), "token", HubMetrics())
            methods: dict[str, set[str]] = {}
            for resource in api.router.resources():
                methods.setdefault(resource.canonical, set()).update(r.method for r in resource)
            await apps.stop()
            await supervisor.close()
            await registry.close()
            store.close()
        return [Route(path, frozenset(served)) for path, served in methods.items()]

    return asyncio.run(build())


ROUTES = served_routes()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Huge integers too: SQLite's are 64-bit, a bigger one bound to a query is an OverflowError.
numbers = st.integers().map(str) | st.sampled_from(["9" * 30, "-1", "1e9", " 1", "٣"])
bodies = st.one_of(
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(FIELDS), json_values | numbers, max_size=5).map(
        lambda v: json.dumps(v).encode()
    ),
)
queries = st.dictionaries(st.sampled_from(QUERY), st.text(max_size=12) | numbers, max_size=3)
parameters = st.sampled_from(WORDS) | st.text(min_size=1, max_size=20)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@dataclass
class Hub:
    process: HubProcess
    address: str
    token: str

    def dump(self) -> str:
        """The whole store as SQL, read beside the hub (WAL lets a reader in)."""
        db = sqlite3.connect(f"{Home(self.process.home).store.as_uri()}?mode=ro", uri=True)
        try:
            return "\n".join(db.iterdump())
        finally:
            db.close()


@pytest.fixture(scope="module")
def hub_alone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One hub for the module's every example: starting one per example would be most of
    the run. Without clusters, nothing but a request could change its store."""
    process = HubProcess(tmp_path_factory.mktemp("api-input") / "home")
    process.start()
    address = json.loads((process.home / "hub.json").read_text())["url"].removeprefix("http://")
    yield Hub(process, address, (process.home / "token").read_text().strip())
    if process.running:
        process.stop()


@pytest.fixture(scope="module")
def pristine(hub_alone: Hub) -> str:
    """The store as the hub left it after starting, before any request."""
    return hub_alone.dump()


def test_the_routes_are_read_from_the_api() -> None:
    """A guard on the enumeration itself: were it to find nothing, nothing would be tested."""
    paths = {route.path for route in ROUTES}
    assert {"/api/v1/apps", "/api/v1/clusters/{name}", "/api/v1/events/stream"} <= paths
    assert any("POST" in route.methods for route in ROUTES if route.path == "/api/v1/apps")


@pytest.mark.parametrize("route", ROUTES, ids=str)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CHAOS_EXAMPLES is None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_bad_input_is_refused_in_one_line_and_changes_nothing(
    hub_alone: Hub, pristine: str, route: Route, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(sorted(route.methods)) | st.sampled_from(METHODS))
    path = route.path.format_map(_Parameters(data))
    query = data.draw(queries)
    target = f"{path}?{urlencode(query)}" if query else path
    headers: dict[str, str] = {}
    credential = data.draw(st.sampled_from(["token", "wrong", "none"]))
    if credential == "token":
        headers["Authorization"] = f"Bearer {hub_alone.token}"
    elif credential == "wrong":
        headers["Authorization"] = data.draw(header_text)
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["Content-Type"] = content_type
    body = data.draw(bodies)

    logged = len(hub_alone.process.log())
    status, kind, answer = _send(hub_alone.address, method, target, body, headers)

    where = f"{method} {target} ({credential} token)"
    assert status < 500, f"{where}: {status} {answer[:300]!r}"
    if not is_page(path) and credential != "token":
        assert status == 401, f"{where}: {status} without the token"
    if status >= 400 and kind != "text/html":
        _assert_one_line_error(where, kind, answer, head=method == "HEAD")
    if kind == "text/html":
        assert is_page(path), f"{where}: an API route answered HTML"
    assert "Traceback" not in hub_alone.process.log()[logged:], f"{where}: a traceback logged"
    assert hub_alone.dump() == pristine, f"{where}: the store changed"


class _Parameters(dict[str, str]):
    """A path's `{parameters}`, each drawn when the path is formatted, quoted for a URL."""

    def __init__(self, data: st.DataObject) -> None:
        super().__init__()
        self._data = data

    def __missing__(self, key: str) -> str:
        return quote(self._data.draw(parameters, label=key), safe="")


def _send(
    address: str, method: str, target: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str, bytes]:
    """(status, content type without parameters, body) of one request; a stream's body is
    not awaited, since it does not end."""
    connection = http.client.HTTPConnection(address, timeout=ANSWER_TIMEOUT)
    try:
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        kind = (response.getheader("Content-Type") or "").split(";")[0].strip()
        answer = b"" if kind in STREAMING else response.read()
        return response.status, kind, answer
    finally:
        connection.close()


def _assert_one_line_error(where: str, kind: str, answer: bytes, *, head: bool) -> None:
    assert kind == "application/json", f"{where}: a refusal as {kind!r}: {answer[:300]!r}"
    if head:
        return  # a HEAD's answer has no body
    assert b"\n" not in answer.strip(), f"{where}: a refusal of more than one line: {answer!r}"
    refusal: Any = json.loads(answer)
    assert isinstance(refusal, dict) and set(refusal) == {"error", "exit_code"}, (
        f"{where}: {answer!r}"
    )
    assert isinstance(refusal["error"], str) and refusal["error"], f"{where}: {answer!r}"
    assert isinstance(refusal["exit_code"], int) and refusal["exit_code"] > 0, (
        f"{where}: {answer!r}"
    )
