"""A cluster's identity through rename and detach, at the service and the HTTP API: what
moves, what stops and starts again, what is refused and what each flag does. The same
against real clusters and a real canary: tests/integration/test_cluster_identity.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hub.api import create_app
from hub.errors import ClusterUnavailable, Conflict, NotFound
from hub.fleet.registry import Registry
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.service.clusters import Clusters, HeldReleases
from hub.state.store import SqliteStore
from hub.tasks import Supervisor
from hub.workflow.engine import RUNNER
from tests.unit.fakeapi import FakeApi, address, started
from tests.unit.hubparts import applications_of, deploy, observing, store_on

TOKEN = "test-token"


@dataclass
class Hub:
    store: SqliteStore
    registry: Registry
    applications: Applications
    clusters: Clusters
    supervisor: Supervisor
    calls: list[str]


@asynccontextmanager
async def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Hub]:
    """Clusters `edge` (a scripted API server) and `spare`; application `shop` deployed to
    edge (two objects), `blog` targeting edge but not deployed yet. The engine's runners
    and the deletes on the cluster are recorded instead of run."""
    fake, supervisor = FakeApi(), Supervisor()
    async with started(fake) as server:
        store = store_on(tmp_path / "db", address(server), "edge", "spare")
        async with observing(store, tmp_path, supervisor) as registry:
            applications = applications_of(registry, tmp_path)
            apps = applications.apps
            deploy(apps, "shop", "edge")
            deploy(apps, "blog", "edge", objects=())
            calls: list[str] = []

            async def cancel(app: str) -> None:
                calls.append(f"cancel {app} (targets on {_where(applications, app)})")
                await supervisor.cancel(RUNNER + app)

            def kick(app: str) -> None:
                calls.append(f"kick {app} (targets on {_where(applications, app)})")

            async def remove(app: str, cluster: str, component: str) -> None:
                calls.append(f"delete {app}/{component} from {cluster}")
                apps.drop_inventory(app, cluster, component)

            monkeypatch.setattr(applications.engine, "cancel", cancel)
            monkeypatch.setattr(applications.engine, "kick", kick)
            monkeypatch.setattr(applications.deployer, "remove", remove)
            yield Hub(
                store, registry, applications, Clusters(registry, applications), supervisor, calls
            )


def _where(applications: Applications, app: str) -> str:
    return ",".join(sorted({t.cluster for t in applications.apps.targets(app, 1)}))


def _runner(hub: Hub, app: str) -> None:
    """A runner of `app` in the middle of a step, as the engine's would be."""

    async def deploying() -> None:
        await asyncio.Event().wait()

    hub.supervisor.spawn(RUNNER + app, deploying)


async def test_rename_keeps_the_uid_and_restarts_the_runners_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        uid = h.store.cluster("edge").uid
        _runner(h, "shop")  # blog waits for nobody: it has no runner to stop
        await asyncio.sleep(0)
        view = await h.clusters.rename("edge", "edge-2")
        assert (view["name"], view["uid"]) == ("edge-2", uid)
        # stopped before the rows moved, started again after
        assert h.calls == ["cancel shop (targets on edge)", "kick shop (targets on edge-2)"]
        assert {(h.app, tuple(h.components)) for h in h.applications.apps.holdings("edge-2")} == {
            ("shop", ("web",)),
            ("blog", ()),
        }
        assert h.applications.apps.holdings("edge") == []
        assert "cluster edge renamed to edge-2" in h.applications.apps.events("shop")[-1].message
        assert h.supervisor.running("observe:edge-2")
        assert not h.supervisor.running("observe:edge")


async def test_a_rename_that_cannot_be_done_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        _runner(h, "shop")
        with pytest.raises(Conflict, match="cluster 'spare' is already registered"):
            await h.clusters.rename("edge", "spare")
        with pytest.raises(NotFound, match="cluster 'nope' is not registered"):
            await h.clusters.rename("nope", "other")
        assert h.calls == [] and h.supervisor.running(RUNNER + "shop")


async def test_detach_of_a_cluster_that_holds_applications_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        with pytest.raises(Conflict) as refused:
            await h.clusters.detach("edge", HeldReleases.REFUSE)
        message = str(refused.value)
        assert message.startswith(
            "cluster 'edge' still holds applications blog (not deployed yet), shop (2 objects);"
            " nothing was detached."
        )
        assert "--delete-releases" in message and "--forget-releases" in message
        assert refused.value.exit_code == 4
        assert h.store.cluster("edge") and len(h.applications.apps.holdings("edge")) == 2
        assert h.calls == []
        # A cluster that holds nothing goes as it is.
        answer = await h.clusters.detach("spare", HeldReleases.REFUSE)
        assert (answer["releases"], answer["applications"]) == (None, [])


async def test_forget_releases_drops_the_records_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        _runner(h, "shop")
        await asyncio.sleep(0)
        answer = await h.clusters.detach("edge", HeldReleases.FORGET)
        assert answer["releases"] == "forget"
        assert answer["applications"] == [
            {"name": "blog", "components": [], "objects": 0},
            {"name": "shop", "components": ["web"], "objects": 2},
        ]
        assert h.calls == ["cancel shop (targets on edge)", "kick shop (targets on )"]
        with pytest.raises(NotFound):
            h.store.cluster("edge")
        apps = h.applications.apps
        assert apps.inventory("shop") == {} and apps.targets("shop", 1) == []
        assert "2 object(s) forgotten, left running on it" in apps.events("shop")[-1].message
        assert not h.supervisor.running("observe:edge")


async def test_delete_releases_deletes_every_component_then_detaches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        answer = await h.clusters.detach("edge", HeldReleases.DELETE)
        assert answer["releases"] == "delete"
        assert h.calls == ["delete shop/web from edge"]
        with pytest.raises(NotFound):
            h.store.cluster("edge")
        assert "2 object(s) deleted from it" in h.applications.apps.events("shop")[-1].message


async def test_a_delete_that_fails_detaches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:

        async def unreachable(app: str, cluster: str, component: str) -> None:
            raise ClusterUnavailable("cannot connect to https://edge:6443")

        monkeypatch.setattr(h.applications.deployer, "remove", unreachable)
        with pytest.raises(ClusterUnavailable) as failed:
            await h.clusters.detach("edge", HeldReleases.DELETE)
        assert str(failed.value).startswith(
            "cluster 'edge': could not delete shop/web from it (cannot connect to "
            "https://edge:6443); nothing was detached."
        )
        assert h.store.cluster("edge") and len(h.applications.apps.holdings("edge")) == 2


async def test_the_api_takes_the_choice_as_a_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with hub(tmp_path, monkeypatch) as h:
        api = create_app(h.registry, h.applications, Scrubber(), TOKEN)
        async with TestClient(TestServer(api)) as client:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            shown = await (await client.get("/api/v1/clusters/edge", headers=headers)).json()
            assert shown["uid"] == h.store.cluster("edge").uid
            assert set(shown["watch"]) == {"state", "error", "restarts", "lastError", "lastErrorAt"}
            refused = await client.delete("/api/v1/clusters/edge", headers=headers)
            assert refused.status == 409 and (await refused.json())["exit_code"] == 4
            wrong = await client.delete("/api/v1/clusters/edge?releases=keep", headers=headers)
            body = await wrong.json()
            assert wrong.status == 422 and body["error"].startswith("releases=keep: expected")
            done = await client.delete("/api/v1/clusters/edge?releases=forget", headers=headers)
            assert done.status == 200 and (await done.json())["detached"] == "edge"
            listed = await (await client.get("/api/v1/clusters", headers=headers)).json()
            assert [c["name"] for c in listed["clusters"]] == ["spare"]
            assert set(listed["prober"]) == {"running", "restarts", "lastError", "lastErrorAt"}
