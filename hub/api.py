"""The hub's HTTP API (aiohttp): the only way the CLI, scripts and dashboards act.

Binds 127.0.0.1 by default and demands the bearer token on every route, because the
process holds credentials for every member cluster; `/metrics` too, unless it is served
alone on a listener of its own (`serve --metrics-listen`). Errors leave as JSON
`{"error": one line, "exit_code": n}`; tracebacks stay in the log, scrubbed of secrets.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from hub.errors import Conflict, FlotillaError, InvalidInput, NotFound
from hub.fleet.registry import Registry
from hub.redaction import Scrubber
from hub.service.applications import Applications, event_view
from hub.service.clusters import Clusters, HeldReleases
from hub.service.metrics import CONTENT_TYPE, HubMetrics
from hub.service.repositories import Repositories
from hub.web import WebView, is_page
from hub.web.lasting import Lasting

log = logging.getLogger(__name__)
# Events one call returns by default, and at most.
EVENTS_LIMIT, EVENTS_LIMIT_MAX = 100, 10_000
# Seconds between the empty lines that keep an idle event stream alive.
KEEPALIVE = 15.0
# SQLite's integers are 64-bit: a larger number is no id or revision the store holds, and
# binding one raises OverflowError instead of finding nothing.
LARGEST_ID = 2**63 - 1
# The exit code of an HTTP error raised by aiohttp or a handler (no such route, a method
# not served, a body too large): the one a FlotillaError of the same kind has; any other
# 4xx is bad input.
HTTP_EXIT_CODES = {401: 6, 403: 6, 404: NotFound.exit_code, 409: Conflict.exit_code}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLUSTERS: web.AppKey[Clusters] = web.AppKey("clusters", Clusters)
APPS: web.AppKey[Applications] = web.AppKey("apps", Applications)
SCRUBBER: web.AppKey[Scrubber] = web.AppKey("scrubber", Scrubber)
METRICS: web.AppKey[HubMetrics] = web.AppKey("metrics", HubMetrics)
LASTING: web.AppKey[Lasting] = web.AppKey("lasting", Lasting)
REPOSITORIES: web.AppKey[Repositories] = web.AppKey("repositories", Repositories)


def create_app(
    registry: Registry,
    apps: Applications,
    scrubber: Scrubber,
    token: str,
    metrics: HubMetrics | None = None,
) -> web.Application:
    """The API; with `metrics`, `/metrics` too, behind the token like every route."""
    clusters = Clusters(registry, apps)
    view = WebView(apps, clusters, token)  # the page at `/`, its sign-in and its stream
    app = web.Application(middlewares=[_errors(scrubber), _auth(token), view.guard()])
    view.register(app)
    if metrics is not None:
        _add_metrics(app, metrics)
    app[CLUSTERS] = clusters
    app[APPS] = apps
    app[SCRUBBER] = scrubber
    app[REPOSITORIES] = Repositories(registry.store, scrubber, apps.charts)
    app.router.add_get("/api/v1/clusters", list_clusters)
    app.router.add_post("/api/v1/clusters", join_cluster)
    app.router.add_get("/api/v1/clusters/{name}", show_cluster)
    app.router.add_patch("/api/v1/clusters/{name}/labels", label_cluster)
    app.router.add_post("/api/v1/clusters/{name}/rename", rename_cluster)
    app.router.add_put("/api/v1/clusters/{name}/prometheus", set_prometheus)
    app.router.add_delete("/api/v1/clusters/{name}", detach_cluster)
    app.router.add_get("/api/v1/repositories", list_repositories)
    app.router.add_post("/api/v1/repositories", add_repository)
    app.router.add_delete("/api/v1/repositories/{name}", remove_repository)
    app.router.add_post("/api/v1/plan", plan_app)
    app.router.add_post("/api/v1/diff", diff_app)
    app.router.add_get("/api/v1/apps", list_apps)
    app.router.add_post("/api/v1/apps", up_app)
    app.router.add_get("/api/v1/apps/{name}", app_status)
    app.router.add_get("/api/v1/apps/{name}/history", app_history)
    app.router.add_get("/api/v1/apps/{name}/diff", app_drift)
    app.router.add_post("/api/v1/apps/{name}/workflow/{verb}", workflow_verb)
    app.router.add_delete("/api/v1/apps/{name}", delete_app)
    app.router.add_get("/api/v1/events", list_events)
    app.router.add_get("/api/v1/events/stream", stream_events)
    app[LASTING] = view.lasting
    return app


def _auth(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_page(request.path):
            return await handler(request)  # the web view's: its guard demands its cookie
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return _json(
                {"error": "unauthorized: wrong or missing token", "exit_code": 6}, status=401
            )
        return await handler(request)

    return middleware


def _errors(scrubber: Scrubber) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise  # a redirect
            return _refusal(request, e, scrubber)
        except FlotillaError as e:
            body = {"error": scrubber.scrub(str(e)), "exit_code": e.exit_code}
            return _json(body, status=e.http_status)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            body = {"error": "internal error in the hub; see its log", "exit_code": 1}
            return _json(body, status=500)

    return middleware


def _refusal(request: web.Request, e: web.HTTPException, scrubber: Scrubber) -> web.Response:
    """An HTTP error as every other refusal leaves: one line of JSON, so that the CLI and
    scripts read it as they read the hub's own errors. aiohttp's default text ("405:
    Method Not Allowed") is replaced by one naming the request."""
    message = e.text or ""
    if message in ("", f"{e.status}: {e.reason}"):
        message = f"{request.method} {request.path}: {e.reason.lower()}"
        if isinstance(e, web.HTTPMethodNotAllowed):
            message += f" (allowed: {', '.join(sorted(e.allowed_methods))})"
    body = {"error": scrubber.scrub(message), "exit_code": HTTP_EXIT_CODES.get(e.status, 2)}
    allow = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
    return _json(body, status=e.status, headers=allow)


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, LookupError):  # LookupError: a charset Python does not know
        raise InvalidInput("request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object")
    return body


async def list_clusters(request: web.Request) -> web.Response:
    return _json(request.app[CLUSTERS].ls())


async def show_cluster(request: web.Request) -> web.Response:
    return _json(request.app[CLUSTERS].show(request.match_info["name"]))


async def join_cluster(request: web.Request) -> web.Response:
    body = await _body(request)
    labels = _labels(body, "labels")
    name = body.get("name") or None
    if name is not None and not isinstance(name, str):
        raise InvalidInput("name: expected the cluster's name")
    document = body.get("kubeconfig")
    if not isinstance(document, dict):
        raise InvalidInput("kubeconfig: expected the kubeconfig document as a JSON object")
    prometheus = body.get("prometheus") or {}
    if not isinstance(prometheus, dict):
        raise InvalidInput("prometheus: expected an object with url and credentials")
    view = await request.app[CLUSTERS].join(
        document,
        source=str(body.get("source") or "kubeconfig"),
        name=name,
        labels=labels,
        prometheus=prometheus,
    )
    return _json(view, status=201)


async def set_prometheus(request: web.Request) -> web.Response:
    """PUT the cluster's own Prometheus ({url, token | username and password}); `{}`
    forgets it."""
    body = await _body(request)
    return _json(request.app[CLUSTERS].set_prometheus(request.match_info["name"], body))


async def label_cluster(request: web.Request) -> web.Response:
    body = await _body(request)
    remove = body.get("remove") or []
    if not isinstance(remove, list) or not all(isinstance(k, str) for k in remove):
        raise InvalidInput("remove: expected a list of label keys")
    view = request.app[CLUSTERS].label(request.match_info["name"], _labels(body, "add"), remove)
    return _json(view)


def _labels(body: dict[str, Any], field: str) -> dict[str, str]:
    """`field` of the body as labels: a map of strings; absent or null, none."""
    labels = body.get(field) or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidInput(f"{field}: expected a map of strings")
    return labels


async def rename_cluster(request: web.Request) -> web.Response:
    body = await _body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput("name: expected the cluster's new name")
    return _json(await request.app[CLUSTERS].rename(request.match_info["name"], name))


async def detach_cluster(request: web.Request) -> web.Response:
    """`?releases=delete|forget` says what becomes of the releases applications still
    have on the cluster; without it, a cluster that holds any is refused (409)."""
    given = request.query.get("releases", HeldReleases.REFUSE.value)
    try:
        releases = HeldReleases(given)
    except ValueError:
        raise InvalidInput(
            f"releases={given}: expected delete (delete them from the cluster, then detach) "
            "or forget (leave them running there, drop the hub's records)"
        ) from None
    name = request.match_info["name"]
    return _json(await request.app[CLUSTERS].detach(name, releases))


async def list_repositories(request: web.Request) -> web.Response:
    return _json(request.app[REPOSITORIES].ls())


async def add_repository(request: web.Request) -> web.Response:
    """{name, url, username and password | token}: registered once the repository took
    them (one request to it); the answer never holds the password or token."""
    body = await _body(request)
    fields = {}
    for field in ("name", "url", "username", "password", "token"):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{field}: expected a string")
        fields[field] = value
    name, url = fields.pop("name"), fields.pop("url")
    if not name or not url:
        raise InvalidInput("name and url: expected the repository's name and URL")
    view = await request.app[REPOSITORIES].add(name, url, **fields)
    return _json(view, status=201)


async def remove_repository(request: web.Request) -> web.Response:
    return _json(request.app[REPOSITORIES].remove(request.match_info["name"]))


def _file(body: dict[str, Any]) -> tuple[str, str, Path]:
    text, source = body.get("text"), body.get("source") or "application"
    if not isinstance(text, str):
        raise InvalidInput("text: expected the Application file's content")
    return text, str(source), Path(str(body.get("base") or "."))


async def plan_app(request: web.Request) -> web.Response:
    body = await _body(request)
    explain = body.get("explain")
    view = await request.app[APPS].plan(*_file(body), str(explain) if explain else None)
    return _json(view)


async def diff_app(request: web.Request) -> web.Response:
    """What `up` of the file (the body of a plan, and `cluster`) would change."""
    body = await _body(request)
    cluster = body.get("cluster")
    if cluster is not None and not isinstance(cluster, str):
        raise InvalidInput("cluster: expected a cluster's name")
    return _json(await request.app[APPS].diff(*_file(body), cluster))


async def app_drift(request: web.Request) -> web.Response:
    """`?revision=N&cluster=NAME`: how the clusters drifted from revision N (by default
    the application's current one)."""
    given = request.query.get("revision")
    try:
        revision = None if given is None else int(given)
    except ValueError:
        revision = 0
    if revision is not None and not 1 <= revision <= LARGEST_ID:
        raise InvalidInput(f"revision={given}: expected a revision number")
    name, cluster = request.match_info["name"], request.query.get("cluster") or None
    return _json(await request.app[APPS].drift(name, revision, cluster))


async def up_app(request: web.Request) -> web.Response:
    """`allowPrune: true` deploys a revision that would empty a release on a cluster or
    delete more than half of it; `takeOwnership: true` one whose first deploy takes fields
    over from another field manager. Without them such a revision is refused."""
    body = await _body(request)
    flags = {}
    for field in ("allowPrune", "takeOwnership"):
        flags[field] = body.get(field, False)
        if not isinstance(flags[field], bool):
            raise InvalidInput(f"{field}: expected true or false")
    result = await request.app[APPS].up(
        *_file(body), allow_prune=flags["allowPrune"], take_ownership=flags["takeOwnership"]
    )
    return _json(result, status=201 if result["created"] else 200)


async def list_apps(request: web.Request) -> web.Response:
    return _json(await request.app[APPS].ls())


async def app_status(request: web.Request) -> web.Response:
    return _json(await request.app[APPS].status(request.match_info["name"]))


async def app_history(request: web.Request) -> web.Response:
    return _json(request.app[APPS].history(request.match_info["name"]))


def _events_query(request: web.Request) -> tuple[str | None, int, int]:
    """`?app=NAME&after=ID&limit=N`: whose events, after which, how many at most."""
    query = request.query
    try:
        after = int(query.get("after", "0"))
        limit = int(query.get("limit", str(EVENTS_LIMIT)))
    except ValueError:
        raise InvalidInput("after and limit: expected whole numbers") from None
    if not 0 <= after <= LARGEST_ID or not 1 <= limit <= EVENTS_LIMIT_MAX:
        raise InvalidInput(f"after: 0 or more; limit: 1..{EVENTS_LIMIT_MAX}")
    return query.get("app") or None, after, limit


async def list_events(request: web.Request) -> web.Response:
    app, after, limit = _events_query(request)
    return _json(request.app[APPS].events(app, after=after, limit=limit))


async def stream_events(request: web.Request) -> web.StreamResponse:
    """The events after `after`, then each new one as it is recorded: one JSON object a
    line (NDJSON), and an empty line every so often so that proxies and clients know the
    stream is alive. Subscribed before the backlog is read, so nothing falls between; ended
    when the hub stops (`hub.web.lasting`)."""
    app, after, limit = _events_query(request)
    apps = request.app[APPS]
    subscription = apps.apps.changes.subscribe()
    try:
        with request.app[LASTING].held():
            backlog = apps.events(app, after=after, limit=limit)["events"]
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            for view in backlog:
                after = view["id"]
                await response.write(orjson.dumps(view) + b"\n")
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE):
                        change = await subscription.get()
                except TimeoutError:
                    await response.write(b"\n")
                    continue
                new = change.event
                if new is None or new.id <= after or (app is not None and new.app != app):
                    continue
                await response.write(orjson.dumps(event_view(new)) + b"\n")
    finally:
        subscription.close()


async def workflow_verb(request: web.Request) -> web.Response:
    name, verb = request.match_info["name"], request.match_info["verb"]
    apps = request.app[APPS]
    if verb == "resume":
        return _json(apps.resume(name))
    if verb == "suspend":
        return _json(apps.suspend(name))
    if verb == "restart":
        return _json(apps.restart(name))
    if verb == "rollback":
        body = await _body(request)
        target = body.get("revision")
        if target is not None and (
            isinstance(target, bool) or not isinstance(target, int) or not 1 <= target <= LARGEST_ID
        ):
            raise InvalidInput("revision: expected a revision number")
        return _json(await apps.rollback(name, target), status=201)
    raise web.HTTPNotFound(text=f"unknown workflow verb {verb!r}")


async def delete_app(request: web.Request) -> web.Response:
    return _json(await request.app[APPS].delete(request.match_info["name"]))


def create_metrics_app(metrics: HubMetrics, scrubber: Scrubber) -> web.Application:
    """`/metrics` alone, without the token (`serve --metrics-listen`): for a Prometheus
    that cannot send one. Nothing else is served there, since nothing else is as harmless."""
    app = web.Application(middlewares=[_errors(scrubber)])
    _add_metrics(app, metrics)
    return app


def _add_metrics(app: web.Application, metrics: HubMetrics) -> None:
    app[METRICS] = metrics
    app.router.add_get("/metrics", serve_metrics)


async def serve_metrics(request: web.Request) -> web.Response:
    """Every series of the hub, in Prometheus' text format. Read on the loop, not in a
    thread: the collector reads state that only the loop changes, and it is quick."""
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _json(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer, serialised by orjson: with many clusters the stdlib's encoder was a
    tenth of a status call, and a sixth of a `cluster list` of a thousand."""
    return web.Response(
        body=orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        headers=headers,
        content_type="application/json",
    )
