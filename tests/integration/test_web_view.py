"""The web view in a real browser (Playwright driving Debian's chromium) against a real hub
and the local clusters: signing in with the token and with a `flotilla ui` link, the
fleet and a canary's tree, a canary step that advances on the page without a reload,
and the doors that stay shut without the cookie.

`FLOTILLA_SCREENSHOT=docs/web-view.png` also writes the view of a paused canary there
(the README's picture).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from e2e.debian import ensure_installed
from e2e.hubproc import HubProcess
from tests.fleet import Fleet
from tests.integration.test_canary import _deploy_v1, _trait, _upgrade
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster

# A laptop's screen.
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
# Bounds on waiting for the page, never timings asserted, but for LIVE: a canary step
# the hub has stored shows on the page within it, pushed, without a reload.
LOAD_MS, LIVE_MS = 10_000, 2_000


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped, not session: the sync API runs an event loop in this thread while
    it lives, and every asyncio test after this module needs the thread's loop free."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's chromium: Playwright's own browser download cannot work here."""
    chromium = ensure_installed("chromium", "chromium")
    launched = playwright.chromium.launch(executable_path=str(chromium))
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookie from another test."""
    fresh = browser.new_context(viewport=VIEWPORT)
    yield fresh
    fresh.close()


def _url(hub: HubProcess) -> str:
    return str(json.loads((hub.home / "hub.json").read_text())["url"])


def _token(hub: HubProcess) -> str:
    return (hub.home / "token").read_text().strip()


def _sign_in(page: Page, hub: HubProcess, token: str | None = None) -> None:
    page.goto(_url(hub) + "/")
    expect(page).to_have_url(_url(hub) + "/signin")
    page.get_by_label("Hub token").fill(token or _token(hub))
    page.get_by_role("button", name="Sign in").click()


def _api_status(hub: HubProcess, app: str = "canary-demo") -> dict[str, Any]:
    request = urllib.request.Request(
        f"{_url(hub)}/api/v1/apps/{app}", headers={"Authorization": f"Bearer {_token(hub)}"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        status: dict[str, Any] = json.load(answer)
    return status


def _prod_steps(status: dict[str, Any]) -> set[str]:
    prod = next(s for s in status["steps"] if s["name"] == "deploy-prod")
    return {
        c["releases"][0]["rollout"]["step"] for c in prod["clusters"] if c["releases"][0]["rollout"]
    }


def test_a_canary_on_the_page_advances_live(
    fleet: Fleet, context: BrowserContext, tmp_path: Path
) -> None:
    _deploy_v1(fleet, traits=_trait())
    _upgrade(fleet, traits=_trait())  # returns paused at step 1/2 on prod-eu and prod-us
    page = context.new_page()
    _sign_in(page, fleet.hub)
    expect(page).to_have_url(_url(fleet.hub) + "/#app=canary-demo", timeout=LOAD_MS)
    expect(page.locator("#live")).to_have_text("live", timeout=LOAD_MS)

    fleet_rows = page.locator("#clusters tr")
    expect(fleet_rows).to_have_count(3, timeout=LOAD_MS)
    expect(page.locator('#clusters tr[data-cluster="prod-eu"]')).to_contain_text("region=eu")
    for name in ("dev", "prod-eu", "prod-us"):
        expect(page.locator(f'#clusters tr[data-cluster="{name}"] .health')).to_have_text("Healthy")
    expect(page.locator("#app-list a")).to_have_count(1)
    expect(page.locator("#app-list a")).to_contain_text("rev 2")

    # The tree of `status --tree`: step -> cluster -> release -> objects.
    prod = page.locator('li.step[data-step="deploy-prod"]')
    expect(prod.locator("li.cluster")).to_have_count(2)
    expect(
        page.locator('li.step[data-step="deploy-dev"] li.cluster[data-cluster="dev"]')
    ).to_be_visible()
    eu = prod.locator('li.cluster[data-cluster="prod-eu"]')
    expect(eu.locator("li.object").first).to_be_visible()
    expect(eu.locator("li.object", has_text="Deployment")).not_to_have_count(0)
    rollouts = prod.locator(".rollout .step-of")
    expect(rollouts).to_have_text(["step 1/2", "step 1/2"])
    expect(prod.locator(".rollout .bar-legend").first).to_have_text("canary 20% · stable 80%")
    expect(prod.locator(".rollout").first).to_contain_text("new pods")
    expect(page.locator("#next")).to_contain_text("workflow resume canary-demo")
    expect(page.locator("#event-list li")).not_to_have_count(0)

    # By keyboard: the application's link takes focus (visibly) and selects it.
    link = page.get_by_role("link", name="canary-demo")
    link.focus()
    page.keyboard.press("Enter")
    expect(link).to_have_attribute("aria-current", "page")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"

    page.screenshot(path=tmp_path / "web-view.png", full_page=True)
    if target := os.environ.get("FLOTILLA_SCREENSHOT"):
        page.screenshot(path=target, full_page=True)

    page.evaluate("window.notReloaded = true")
    events_before = page.locator("#event-list li").count()
    fleet.hub.ok("workflow", "resume", "canary-demo")
    deadline = time.monotonic() + 300
    while _prod_steps(_api_status(fleet.hub)) != {"2/2"}:  # stored by the hub: now the page
        assert time.monotonic() < deadline, "the canary did not reach step 2/2"
        time.sleep(0.05)
    expect(rollouts).to_have_text(["step 2/2", "step 2/2"], timeout=LIVE_MS)
    expect(prod.locator(".rollout .bar-legend").first).to_have_text(
        "canary 90% · stable 10%", timeout=LOAD_MS
    )
    assert page.evaluate("window.notReloaded") is True
    assert page.locator("#event-list li").count() > events_before
    expect(page.locator("#event-list li").first).not_to_have_text("", timeout=LOAD_MS)
    page.screenshot(path=tmp_path / "web-view-step-2.png", full_page=True)


def test_a_flotilla_ui_link_signs_in_once(
    hub: HubProcess, browser: Browser, context: BrowserContext
) -> None:
    printed = hub.ok("ui")
    link = printed.stdout.strip()
    assert link.startswith(_url(hub) + "/signin?code=") and _token(hub) not in link
    assert "valid for 60 s, once" in printed.stderr
    page = context.new_page()
    page.goto(link)
    expect(page).to_have_url(_url(hub) + "/")  # the code out of the address bar
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live", timeout=LOAD_MS)
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["flotilla_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["value"] != _token(hub)

    other = browser.new_context()  # another browser: the link was used
    try:
        again = other.new_page()
        again.goto(link)
        expect(again.get_by_role("alert")).to_contain_text("expired or was used")
        expect(again).to_have_url(link)
    finally:
        other.close()


def test_a_wrong_token_is_refused_and_nothing_opens_without_the_cookie(
    hub: HubProcess, context: BrowserContext
) -> None:
    page = context.new_page()
    _sign_in(page, hub, token="not-the-token")
    expect(page.get_by_role("alert")).to_have_text("Wrong token.")
    expect(page).to_have_url(_url(hub) + "/signin")
    assert "flotilla_session" not in {c["name"] for c in context.cookies()}

    requests = context.request
    front = requests.get(_url(hub) + "/", max_redirects=0)
    assert front.status == 303 and front.headers["location"] == "/signin"
    for path in ("/ui/stream", "/ui/stream?app=canary-demo", "/ui/static/app.js"):
        assert requests.get(_url(hub) + path).status == 401, path
    # The CLI's door is the bearer token's, as before, and the cookie opens none of it.
    _sign_in(page, hub)
    expect(page.locator("#live")).to_have_text("live", timeout=LOAD_MS)
    assert requests.get(_url(hub) + "/api/v1/apps").status == 401
    assert hub.ok("ls", "-o", "json").json() == {"applications": []}


def _measurement(**fields: Any) -> dict[str, Any]:
    return {
        "cluster": "prod-eu",
        "component": "web",
        "canaryStep": 1,
        "metric": "error-rate",
        "verdict": "running",
        "value": 0.012,
        "condition": "<0.05",
        "outcome": "pass",
        "message": "",
        "at": "2026-12-01T10:00:00Z",
        "passes": 1,
        "failures": 0,
        "errors": 0,
    } | fields


# What the cluster tests above do not reach: analysis on a canary and on a check-metrics
# step, a canary by header matches, a cluster out of reach, and text that looks like HTML.
STATUS: dict[str, Any] = {
    "name": "shop",
    "revision": 3,
    "publishVersion": "v3",
    "phase": "suspended",
    "health": "Suspended",
    "reason": "",
    "message": "step prod: canary paused at step 1/3",
    "next": "flotilla workflow resume shop",
    "steps": [
        {
            "name": "prod",
            "type": "deploy",
            "phase": "paused",
            "message": "",
            "analysis": [_measurement()],
            "health": "Suspended",
            "reason": "",
            "clusters": [
                {
                    "name": "prod-eu",
                    "labels": {"env": "prod"},
                    "reachable": False,
                    "clusterHealth": "Unreachable",
                    "lastSeen": "2026-12-01T10:00:00Z",
                    "health": "Unknown",
                    "reason": "as last seen 2026-12-01T10:00:00Z",
                    "releases": [
                        {
                            "component": "web",
                            "release": "web",
                            "namespace": "shop",
                            "chart": "web-1.0.0",
                            "phase": "paused",
                            "message": "",
                            "health": "Suspended",
                            "reason": "",
                            "rollout": {
                                "workload": "Deployment/web",
                                "step": "1/3",
                                "stage": "paused",
                                "weight": None,
                                "canary": "1/2 new pods, 2/2 available",
                                "resumeAt": None,
                            },
                            "objects": [
                                {
                                    "kind": "ConfigMap",
                                    "namespace": "shop",
                                    "name": "web",
                                    "health": "Degraded",
                                    "reason": "<img src=x onerror=alert(1)>",
                                    "sync": "Synced",
                                    "drift": None,
                                    "keep": False,
                                },
                                {
                                    "kind": "Deployment",
                                    "namespace": "shop",
                                    "name": "web",
                                    "health": "Healthy",
                                    "reason": "",
                                    "sync": "OutOfSync",
                                    "drift": {
                                        "gone": False,
                                        "fields": [
                                            {
                                                "path": "spec.template.spec.containers[0].image",
                                                "applied": "web:1",
                                                "live": "web:9",
                                                "manager": "kubectl-set",
                                            }
                                        ],
                                        "action": "healing",
                                        "since": "2026-12-01T10:00:00Z",
                                    },
                                    "keep": False,
                                },
                            ],
                            "hooks": [
                                {
                                    "event": "pre-upgrade",
                                    "kind": "Job",
                                    "namespace": "shop",
                                    "name": "web-migrate",
                                    "revision": 3,
                                    "phase": "Failed",
                                    "message": "BackoffLimitExceeded (<b>limit</b>)",
                                    "started": "2026-12-01T10:00:00Z",
                                    "finished": "2026-12-01T10:01:00Z",
                                }
                            ],
                            "crds": [
                                {
                                    "name": "widgets.shop.example.com",
                                    "phase": "Created",
                                    "message": "left as installed: crds/ objects are never "
                                    "upgraded or deleted",
                                    "at": "2026-12-01T09:00:00Z",
                                }
                            ],
                        }
                    ],
                }
            ],
        },
        {
            "name": "errors",
            "type": "check-metrics",
            "phase": "failed",
            "message": "",
            "analysis": [
                _measurement(
                    cluster=None,
                    component=None,
                    canaryStep=None,
                    metric="p99",
                    verdict="failed",
                    value=None,
                    outcome="error",
                    message="no series",
                    errors=3,
                )
            ],
            "health": "Unknown",
            "reason": "",
            "clusters": [],
        },
    ],
}


def test_the_page_draws_every_part_of_a_status(hub: HubProcess, context: BrowserContext) -> None:
    """The page's drawing of a status the clusters above do not produce, fed to it as its
    stream (a status of the shape the README documents, held to it here)."""
    assert_shape(STATUS, "status")
    page = context.new_page()
    _sign_in(page, hub)
    expect(page.locator("#live")).to_have_text("live", timeout=LOAD_MS)
    body = f"event: status\ndata: {json.dumps(STATUS)}\n\n"
    page.route(
        "**/ui/stream*",
        lambda route: route.fulfill(body=body, content_type="text/event-stream"),
    )
    page.goto(_url(hub) + "/#app=shop")
    expect(page.locator("#app-title")).to_have_text("shop", timeout=LOAD_MS)
    expect(page.locator("#next")).to_have_text("Next: flotilla workflow resume shop")
    cluster = page.locator('li.cluster[data-cluster="prod-eu"]')
    expect(cluster.locator(".unreachable")).to_contain_text("unreachable, last seen")
    expect(cluster.locator(".rollout .step-of")).to_have_text("step 1/3")
    expect(cluster.locator(".rollout")).to_contain_text("traffic by header matches")
    expect(cluster.locator(".rollout .bar-legend")).to_have_text("pods 1/2 new pods, 2/2 available")
    measured = cluster.locator("table.analysis tbody tr")
    expect(measured).to_have_count(1)
    for text in ("error-rate", "0.01200", "<0.05", "pass", "running"):
        expect(measured).to_contain_text(text)
    check = page.locator('li.step[data-step="errors"] table.analysis tbody tr')
    for text in ("(global)", "p99", "no value", "error", "failed"):
        expect(check).to_contain_text(text)
    expect(cluster.locator("li.object").first).to_contain_text("<img src=x onerror=alert(1)>")
    hook = cluster.locator("li.hook")
    expect(hook).to_have_count(1)
    for text in ("hook pre-upgrade", "Job shop/web-migrate", "Failed", "revision 3"):
        expect(hook).to_contain_text(text)
    expect(hook).to_contain_text("BackoffLimitExceeded (<b>limit</b>)")  # text, never markup
    expect(cluster.locator("li.crds")).to_contain_text(
        "widgets.shop.example.com: left as installed"
    )
    drift = cluster.locator("li.object .drift")
    expect(drift).to_have_count(1)
    for text in ("OutOfSync", "containers[0].image", '"web:9"', '(applied "web:1")', "kubectl-set"):
        expect(drift).to_contain_text(text)
    assert page.locator("li.object img").count() == 0  # shown as text, never parsed
