"""The web view's doors and its feed, at the HTTP API without a browser: who is let in
with what (token, one-time code, cookie), the CSRF checks, that the bearer-token API is
unchanged, and that the stream sends the API's own JSON, coalescing bursts. The page
itself, in a real browser against real clusters: tests/integration/test_web_view.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from hub.api import create_app
from hub.model.phases import AppPhase
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.tasks import Supervisor
from hub.web import CSRF_COOKIE, SESSION_COOKIE
from hub.web.keys import KeyRing
from tests.shapes import assert_shape
from tests.unit.fakeapi import WAIT, FakeApi, address, started
from tests.unit.hubparts import applications_of, deploy, observing, store_on

TOKEN = "test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Hub:
    client: TestClient[Any, Any]
    applications: Applications

    def origin(self) -> str:
        return str(self.client.make_url("/")).rstrip("/")

    async def csrf(self) -> str:
        """The CSRF token a fresh sign-in page hands out (and sets as a cookie)."""
        page = await self.client.get("/signin")
        assert page.status == 200
        cookie = self.client.session.cookie_jar.filter_cookies(self.client.make_url("/"))
        value = cookie[CSRF_COOKIE].value
        assert f'name="csrf" value="{value}"' in await page.text()
        return value

    async def sign_in(self) -> None:
        answer = await self.post("/signin", {"token": TOKEN, "csrf": await self.csrf()})
        assert answer.status == 303 and answer.headers["Location"] == "/"

    async def post(
        self, path: str, form: dict[str, str], origin: str | None = None
    ) -> ClientResponse:
        headers = {"Origin": origin or self.origin()}
        return await self.client.post(path, data=form, headers=headers, allow_redirects=False)


@asynccontextmanager
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """The API of a hub with one cluster (`edge`, a scripted API server) and one
    application (`shop`) deployed to it; no runner runs."""
    fake = FakeApi()
    async with started(fake) as server:
        store = store_on(tmp_path / "db", address(server), "edge")
        async with observing(store, tmp_path, Supervisor()) as registry:
            applications = applications_of(registry, tmp_path)
            deploy(applications.apps, "shop", "edge")
            api = create_app(registry, applications, Scrubber(), TOKEN)
            async with TestClient(TestServer(api)) as client:
                yield Hub(client, applications)


async def test_without_a_session_pages_redirect_and_the_rest_is_refused(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        page = await h.client.get("/", allow_redirects=False)
        assert page.status == 303 and page.headers["Location"] == "/signin"
        for path in ("/ui/stream", "/ui/stream?app=shop", "/ui/static/app.js"):
            refused = await h.client.get(path)
            assert refused.status == 401, path
        assert (await h.client.post("/signout", data={})).status == 401
        assert (await h.client.get("/ui/static/style.css")).status == 200  # the form's looks
        # A path nobody claims stays the API's: the bearer token's.
        assert (await h.client.get("/elsewhere")).status == 401


async def test_sign_in_with_the_token_gives_a_session_cookie_not_the_token(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        answer = await h.post("/signin", {"token": TOKEN, "csrf": await h.csrf()})
        assert answer.status == 303
        cookie = answer.cookies[SESSION_COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
        assert TOKEN not in cookie.value and TOKEN not in answer.headers["Location"]
        page = await h.client.get("/")
        assert page.status == 200
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert (await h.client.get("/ui/static/app.js")).status == 200
        # Signed in, the form sends the browser on to the page.
        again = await h.client.get("/signin", allow_redirects=False)
        assert again.status == 303 and again.headers["Location"] == "/"


async def test_a_wrong_token_is_refused(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        answer = await h.post("/signin", {"token": "guess", "csrf": await h.csrf()})
        assert answer.status == 401 and "Wrong token." in await answer.text()
        assert SESSION_COOKIE not in answer.cookies
        assert (await h.client.get("/", allow_redirects=False)).status == 303


async def test_posts_need_the_csrf_token_and_the_hubs_own_origin(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        csrf = await h.csrf()
        missing = await h.post("/signin", {"token": TOKEN})
        assert missing.status == 403
        wrong = await h.post("/signin", {"token": TOKEN, "csrf": csrf + "x"})
        assert wrong.status == 403
        # Another program on another port of the same host: same site, not same origin.
        other_port = await h.post(
            "/signin", {"token": TOKEN, "csrf": csrf}, origin="http://127.0.0.1:1"
        )
        assert other_port.status == 403
        await h.sign_in()
        assert (await h.post("/signout", {})).status == 403
        out = await h.post("/signout", {"csrf": csrf})
        assert out.status == 303 and out.headers["Location"] == "/signin"
        assert (await h.client.get("/ui/stream")).status == 401


async def test_a_sign_in_code_works_once(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        assert (await h.client.post("/api/v1/ui/signin-codes")).status == 401
        issued = await (await h.client.post("/api/v1/ui/signin-codes", headers=BEARER)).json()
        assert issued["path"] == f"/signin?code={issued['code']}" and issued["expiresIn"] == 60
        assert TOKEN not in issued["code"]
        used = await h.client.get(issued["path"], allow_redirects=False)
        assert used.status == 303 and used.headers["Location"] == "/"
        assert SESSION_COOKIE in used.cookies
        h.client.session.cookie_jar.clear()
        again = await h.client.get(issued["path"], allow_redirects=False)
        assert again.status == 401 and "expired or was used" in await again.text()
        assert (await h.client.get("/", allow_redirects=False)).status == 303


def test_keys_expire_and_a_taken_key_is_gone() -> None:
    now = [0.0]
    ring = KeyRing(60, limit=2, clock=lambda: now[0])
    first, second = ring.issue(), ring.issue()
    assert ring.holds(first) and ring.take(first) and not ring.holds(first)
    now[0] = 60.0
    assert not ring.holds(second)
    oldest, _, _ = ring.issue(), ring.issue(), ring.issue()
    assert not ring.holds(oldest)  # past the limit, the oldest goes
    assert not ring.holds(None) and not ring.take("never issued")


async def test_the_bearer_api_is_unchanged_and_takes_no_cookie(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        await h.sign_in()
        assert (await h.client.get("/api/v1/apps")).status == 401
        listed = await h.client.get("/api/v1/apps", headers=BEARER)
        assert listed.status == 200
        assert [a["name"] for a in (await listed.json())["applications"]] == ["shop"]
        assert "Content-Security-Policy" not in listed.headers


async def _messages(response: ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event, data) of each server-sent event; comments (keep-alives) skipped."""
    kind, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield kind, json.loads(data)
            kind, data = "message", ""
        elif line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")


async def test_the_stream_sends_the_apis_json_then_each_change(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        await h.sign_in()
        stream = await h.client.get("/ui/stream?app=shop")
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        messages = _messages(stream)
        first: dict[str, Any] = {}
        async with asyncio.timeout(WAIT):
            while set(first) != {"clusters", "status", "apps"}:
                kind, data = await anext(messages)
                first[kind] = data
        for kind, shape in (("status", "status"), ("apps", "ls"), ("clusters", "clusters")):
            assert_shape(first[kind], shape)
        assert [c["name"] for c in first["clusters"]["clusters"]] == ["edge"]
        assert [a["name"] for a in first["apps"]["applications"]] == ["shop"]

        apps = h.applications.apps
        apps.add_event("shop", "something happened")
        for n in range(50):  # a burst: at most a few status messages, the last one fresh
            apps.set_app("shop", phase=AppPhase.RUNNING, message=f"change {n}")
        seen: list[tuple[str, Any]] = []
        async with asyncio.timeout(WAIT):
            while not (seen and seen[-1][0] == "status" and seen[-1][1]["message"] == "change 49"):
                seen.append(await anext(messages))
        events = [data for kind, data in seen if kind == "event"]
        assert [e["message"] for e in events] == ["something happened"]
        statuses = [data for kind, data in seen if kind == "status"]
        assert 1 <= len(statuses) <= 3
        answer = await h.client.get("/api/v1/apps/shop", headers=BEARER)
        assert statuses[-1] == await answer.json()  # the API's own JSON
        stream.close()


async def test_a_stopping_hub_ends_the_open_streams(tmp_path: Path) -> None:
    """Else the API's shutdown waits on each open page (aiohttp: a minute and more)."""
    async with hub(tmp_path) as h:
        await h.sign_in()
        stream = await h.client.get("/ui/stream?app=shop")
        assert stream.status == 200
        async with asyncio.timeout(WAIT):
            await h.client.server.close()
        stream.close()
