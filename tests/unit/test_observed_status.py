"""`status` on a hub that does not drive the application (issue 15 §2: "Status stays
instant from any replica"): what the driving hub observes is built from its watch caches
and drift keeper alone (`observed_record`), and a hub answering from that stored record
shows the same tree, watching and reading no member cluster. Both stores keep the record:
tests/integration/test_store_contract.py; the task that writes it:
tests/unit/test_app_health_store.py."""

from __future__ import annotations

from pathlib import Path

from hub.model.records import ObservedObject, ObservedRecord
from hub.model.views import StatusView
from hub.service.applications import Applications
from hub.service.status import (
    NOT_OBSERVED,
    STORED_VALUE_MAX,
    cached_objects,
    observed_record,
    status_tree,
)
from tests.unit.hubparts import Drifts, applications_of
from tests.unit.test_metrics import hub

APPS = ("shop", "gone", "blog", "web")
"""test_metrics' `hub`: shop (x, y on edge), gone (z, deleted from edge), blog (failed on
spare, which does not answer), web (a canary paused on edge, nothing applied)."""


async def _status(applications: Applications, drifts: Drifts, app: str, owned: bool) -> StatusView:
    tree = await status_tree(
        applications.apps,
        applications.registry,
        applications.analyses,
        drifts,
        app,
        owned=owned,
    )
    return tree.view


def _observe(applications: Applications, drifts: Drifts, app: str) -> ObservedRecord:
    """What the hub driving `app` observes of it now."""
    apps = applications.apps
    record = apps.app(app)
    targets = apps.targets(app, record.revision)
    return observed_record(
        drifts, record, cached_objects(applications.registry, targets, apps.inventory(app))
    )


def _objects(status: StatusView) -> dict[str, tuple[str, str, str]]:
    """name -> (health, reason, sync) of every object of the tree."""
    return {
        o["name"]: (o["health"], o["reason"], o["sync"])
        for step in status["steps"]
        for cluster in step["clusters"]
        for release in cluster["releases"]
        for o in release["objects"]
    }


async def test_the_record_holds_what_the_caches_and_the_keeper_show(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        drifts = Drifts()
        drifts.edit("shop", "edge", "x")
        shop = _observe(h.applications, drifts, "shop")
        [(release, objects)] = shop.releases.items()
        assert release == ("edge", "web")
        assert [(o.kind, o.namespace, o.name, o.health) for o in objects] == [
            ("ConfigMap", "ns", "x", "Healthy"),
            ("ConfigMap", "ns", "y", "Healthy"),
        ]
        x, y = objects
        assert x.drift is not None and y.drift is None
        assert x.drift["fields"] == [
            {"path": "data.k", "applied": "1", "live": "2", "manager": "kubectl"}
        ]
        assert x.drift["action"] == "healing"
        [z] = _observe(h.applications, drifts, "gone").releases["edge", "web"]
        assert (z.name, z.health) == ("z", "Missing")
        # spare's cache never listed: nothing of it is observed, rather than guessed.
        assert _observe(h.applications, drifts, "blog").releases == {("spare", "web"): ()}
        assert _observe(h.applications, Drifts(), "shop") != shop, "drift is observed"
        assert _observe(h.applications, drifts, "shop") == shop, "`at` is no part of it"


async def test_a_drifted_value_too_long_for_the_store_is_kept_as_its_size(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        drifts = Drifts()
        drifts.edit("shop", "edge", "x", live="v" * STORED_VALUE_MAX)
        [x, _] = _observe(h.applications, drifts, "shop").releases["edge", "web"]
        assert x.drift is not None
        [field] = x.drift["fields"]
        assert (field["applied"], field["live"]) == (
            "1",
            f"({STORED_VALUE_MAX + 2} bytes, too long to keep in the store)",
        )


async def test_a_hub_that_does_not_drive_an_application_shows_its_drivers_tree(
    tmp_path: Path,
) -> None:
    async with hub(tmp_path) as h:
        drifts = Drifts()
        drifts.edit("shop", "edge", "y")
        for app in APPS:
            driver = await _status(h.applications, drifts, app, owned=True)
            h.applications.apps.set_observed(app, _observe(h.applications, drifts, app))
            assert await _status(h.applications, Drifts(), app, owned=False) == driver, app


async def test_a_hub_that_does_not_drive_it_watches_and_reads_no_cluster(tmp_path: Path) -> None:
    async with hub(tmp_path) as h:
        registry, apps = h.applications.registry, h.applications.apps
        await registry.observer.forget("edge")
        elsewhere = applications_of(registry, tmp_path, owns=lambda app: False)
        assert _objects(await elsewhere.status("shop")) == {
            "x": ("Unknown", NOT_OBSERVED, "Synced"),
            "y": ("Unknown", NOT_OBSERVED, "Synced"),
        }
        # What the driver stored, though the cluster says otherwise: nobody asked it.
        stored = ObservedObject("v1", "ConfigMap", "ns", "x", "Degraded", "as stored")
        apps.set_observed("shop", ObservedRecord({("edge", "web"): (stored,)}))
        assert _objects(await elsewhere.status("shop")) == {
            "x": ("Degraded", "as stored", "Synced"),
            "y": ("Unknown", NOT_OBSERVED, "Synced"),
        }
        assert registry.observer.health("edge").state == "not watched"
        await h.applications.status("shop")  # the driver of it watches
        assert registry.observer.health("edge").state != "not watched"
