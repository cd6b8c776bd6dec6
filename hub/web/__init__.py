"""The web view: a read-only page at `/` of the fleet, the applications and one
application's tree, live from the hub's change stream, served by the hub beside the API.

Signing in. The API token is typed once into the sign-in form (a POST: a token in a URL
would stay in the history and in logs), or `flotilla ui` prints a link with a one-time
code (valid CODE_LIFETIME seconds, dead after its first use) that the CLI got from the
hub with the token. Either way the browser gets a session cookie: a random key of the
hub's (hub.web.keys), not the token, HttpOnly and SameSite=Strict, so that what a
browser holds admits to this read-only view and never to the API. The bearer-token API
is left as it is: the cookie is accepted by no API route, and the token by no page.

POSTs (sign-in, sign-out) carry a CSRF check twice over: the form's hidden field must
equal a second cookie (double submit), and the request's Origin must be the hub's own.
The Origin check is the one that counts on loopback, where other programs listen on
other ports of the same host: cookies do not keep ports apart, SameSite treats every
port of a host as the same site, but an Origin names its port.

What the page renders is the API's JSON, pushed over server-sent events (hub.web.stream)
and drawn in the browser by static/app.js: the same answers `-o json` prints, with
their secrets already redacted, and never a kubeconfig.
"""

from __future__ import annotations

import hmac
import html
import logging
import secrets
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from hub.service.applications import Applications
from hub.service.clusters import Clusters
from hub.web.keys import KeyRing
from hub.web.lasting import Lasting
from hub.web.stream import Feed

log = logging.getLogger(__name__)

SESSION_COOKIE, CSRF_COOKIE = "flotilla_session", "flotilla_csrf"
# A working day; a hub restart ends every session sooner (they are kept in memory).
SESSION_LIFETIME = 12 * 3600
CODE_LIFETIME = 60
# The web view's paths: the guard here takes them, hub.api's bearer token every other.
PAGE_PATHS = frozenset({"/", "/signin", "/signout"})
UI = "/ui/"
# What a browser may have before signing in: the form, and its looks.
PUBLIC = frozenset({"/signin", "/ui/static/style.css"})
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
TEMPLATES = ("index.html", "signin.html")
# No Secure flag: the hub speaks plain HTTP (on loopback by default), and a Secure
# cookie is sent over HTTPS only (some browsers except localhost, not every browser and
# not another --listen address), so it would never come back.
COOKIE: dict[str, Any] = {"path": "/", "httponly": True, "samesite": "Strict"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it a browser sends `Origin: null` on a form POST, and the
    # CSRF check needs the real one.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class WebView:
    def __init__(self, apps: Applications, clusters: Clusters, token: str) -> None:
        self._apps = apps
        self._clusters = clusters
        self._token = token
        self.sessions = KeyRing(SESSION_LIFETIME, limit=1000)
        self.codes = KeyRing(CODE_LIFETIME, limit=100)
        static = resources.files(__package__) / "static"
        self._files = {name: (static / name).read_bytes() for name in (*ASSETS, *TEMPLATES)}
        self.lasting = Lasting()

    def register(self, app: web.Application) -> None:
        """The page's routes, and the API's one route for it (a sign-in code, with the
        token). `guard()` must be among the app's middlewares."""
        app.on_response_prepare.append(self._headers)
        self.lasting.register(app)
        app.router.add_get("/", self.index)
        app.router.add_get("/signin", self.signin_page)
        app.router.add_post("/signin", self.signin)
        app.router.add_post("/signout", self.signout)
        app.router.add_get("/ui/stream", self.stream)
        app.router.add_get("/ui/static/{name}", self.asset)
        app.router.add_post("/api/v1/ui/signin-codes", self.issue_code)

    def guard(self) -> Middleware:
        """Every path of the web view (`is_page`) needs the session cookie, but the
        sign-in form: without it a page redirects to the form, the rest answers 401."""

        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            path = request.path
            if not is_page(path) or path in PUBLIC or self._signed_in(request):
                return await handler(request)
            if request.method == "GET" and path in PAGE_PATHS:
                return _see_other("/signin")
            return web.json_response(
                {"error": "unauthorized: sign in at /signin", "exit_code": 6}, status=401
            )

        return middleware

    # pages

    async def index(self, request: web.Request) -> web.Response:
        return self._page(request, "index.html")

    async def signin_page(self, request: web.Request) -> web.StreamResponse:
        """The form; or, with `?code=` from `flotilla ui`, the code exchanged for a
        session and a redirect to `/`, which takes the code out of the address bar."""
        code = request.query.get("code")
        if code is not None:
            if self.codes.take(code):
                return self._open_session(request)
            return self._page(
                request,
                "signin.html",
                "This sign-in link has expired or was used already: run `flotilla ui` "
                "again, or enter the token.",
                status=401,
            )
        if self._signed_in(request):
            return _see_other("/")
        return self._page(request, "signin.html")

    async def signin(self, request: web.Request) -> web.StreamResponse:
        form = await self._checked_form(request)
        given = str(form.get("token", "")).strip().encode()
        if not hmac.compare_digest(given, self._token.encode()):
            log.warning("web view: sign-in with a wrong token from %s", request.remote)
            return self._page(request, "signin.html", "Wrong token.", status=401)
        return self._open_session(request)

    async def signout(self, request: web.Request) -> web.StreamResponse:
        await self._checked_form(request)
        self.sessions.drop(request.cookies.get(SESSION_COOKIE, ""))
        response = _see_other("/signin")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=self._files[name], content_type=ASSETS[name])

    # live

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """`?app=NAME`: the page's feed (hub.web.stream). Subscribed before anything is
        read, so that no change falls between what is read and what is pushed."""
        subscription = self._apps.apps.changes.subscribe()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        try:
            with self.lasting.held():
                await response.prepare(request)
                feed = Feed(
                    response,
                    self._apps,
                    self._clusters,
                    request.query.get("app") or None,
                    _last_event(request),
                )
                await feed.run(subscription)
        except ConnectionResetError:
            pass  # the page was closed
        finally:
            subscription.close()
        return response

    # the API's route for `flotilla ui` (bearer token, hub.api's middleware)

    async def issue_code(self, request: web.Request) -> web.Response:
        code = self.codes.issue()
        body = {"code": code, "path": f"/signin?code={code}", "expiresIn": CODE_LIFETIME}
        return web.json_response(body, status=201)

    # sessions and CSRF

    def _signed_in(self, request: web.Request) -> bool:
        return self.sessions.holds(request.cookies.get(SESSION_COOKIE))

    def _open_session(self, request: web.Request) -> web.StreamResponse:
        """A new key at every sign-in; the browser's old one, if it had one, ends."""
        self.sessions.drop(request.cookies.get(SESSION_COOKIE, ""))
        response = _see_other("/")
        response.set_cookie(
            SESSION_COOKIE, self.sessions.issue(), max_age=SESSION_LIFETIME, **COOKIE
        )
        return response

    async def _checked_form(self, request: web.Request) -> Any:
        """The form of a POST that passed both CSRF checks; 403 otherwise, 400 for a body
        that is no form (a cut multipart, an unknown charset)."""
        try:
            form = await request.post()
        except (ValueError, LookupError):
            raise web.HTTPBadRequest(text="refused: this is not the hub's form") from None
        expected = request.cookies.get(CSRF_COOKIE, "").encode()
        given = str(form.get("csrf", "")).encode()
        if not (_same_origin(request) and expected and hmac.compare_digest(given, expected)):
            raise web.HTTPForbidden(
                text="refused: this form was not sent from the hub's own page; reload it"
            )
        return form

    def _page(
        self, request: web.Request, name: str, message: str = "", *, status: int = 200
    ) -> web.Response:
        """A page with its CSRF token in its forms (and in a cookie, set here the first
        time), and a message (a sign-in refused) when there is one."""
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        text = self._files[name].decode()
        text = text.replace("{{csrf}}", html.escape(csrf)).replace(
            "{{message}}", html.escape(message)
        )
        response = web.Response(text=text, content_type="text/html", status=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, **COOKIE)
        return response

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if is_page(request.path):
            response.headers.update(SECURITY_HEADERS)


def is_page(path: str) -> bool:
    """The web view's: the pages, their stream and their files. Every other path is the
    API's, behind the bearer token, so that a path nobody claims is refused."""
    return path in PAGE_PATHS or path.startswith(UI)


def _see_other(location: str) -> web.Response:
    """303: the browser GETs `location`, and a reload does not send the form again."""
    return web.Response(status=303, headers={"Location": location})


def _same_origin(request: web.Request) -> bool:
    """Sent from a page of this hub: its Origin (scheme, host and port) is ours, and the
    browser's Sec-Fetch-Site, where it sends one, does not say another port or site."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


def _last_event(request: web.Request) -> int | None:
    """The id of the last event the page has: EventSource's Last-Event-ID when it
    reconnects; None for a new page, or for a header that is no id SQLite could hold."""
    given = request.headers.get("Last-Event-ID", "")
    return int(given) if given.isascii() and given.isdigit() and len(given) < 19 else None
