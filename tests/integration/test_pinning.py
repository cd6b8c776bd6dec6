"""A revision deploys the chart it pinned at `up`, on real clusters from a real Helm
repository that, meanwhile, publishes a newer version matching the constraint or replaces
the archive under the pinned version. What was deployed is read from the clusters' own
Deployments, never from Flotilla's report.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.chartrepo import CHARTS_DIR, ChartRepo, start_chart_repo
from tests.fleet import Fleet, phase, until

pytestmark = pytest.mark.cluster

CHART = "canary-demo"
CLUSTERS = ("dev", "prod-eu", "prod-us")
PROD = ("prod-eu", "prod-us")
PINNED = ("registry.local/canary-demo:1.0.0", "canary-demo-1.0.0")
NEWER = ("registry.local/canary-demo:1.1.0", "canary-demo-1.1.0")


@pytest.fixture
def chart_repo() -> Iterator[ChartRepo]:
    """A repository of the test's own in place of the session's: these tests publish into
    it and replace its archives, which no other test may see."""
    with start_chart_repo() as repo:
        yield repo


def deployed(fleet: Fleet, cluster: str) -> tuple[str, str, str] | None:
    """(image, chart label, Flotilla revision) of the Deployment as the cluster holds it."""
    deployment = fleet.deployment(cluster)
    if deployment is None:
        return None
    labels = deployment["metadata"]["labels"]
    image = fleet.image(cluster)
    assert image is not None
    return image, labels["helm.sh/chart"], labels["flotilla.dev/revision"]


def assert_deployed(fleet: Fleet, chart: tuple[str, str], revision: int, *clusters: str) -> None:
    for cluster in clusters or CLUSTERS:
        assert deployed(fleet, cluster) == (*chart, str(revision)), cluster


def digest(repo: ChartRepo, version: str) -> str:
    data = (repo.directory / f"{CHART}-{version}.tgz").read_bytes()
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def restart_hub_without_charts(fleet: Fleet) -> None:
    """A restarted hub with an empty chart cache: its next deploy must download the chart."""
    fleet.hub.stop()
    shutil.rmtree(fleet.hub.home / "charts")
    fleet.hub.start()


def refused_message(repo: ChartRepo, served: str, pinned: str, revision: int) -> str:
    return (
        f"chart canary-demo 1.0.0 in {repo.url}: the repository now serves {served} "
        f"but revision {revision} pinned {pinned}; nothing was deployed"
    )


def prod_messages(fleet: Fleet) -> dict[str, str]:
    (prod,) = [s for s in fleet.status()["steps"] if s["name"] == "deploy-prod"]
    return {c["name"]: c["releases"][0]["message"] for c in prod["clusters"]}


def events_with(fleet: Fleet, text: str) -> int:
    """Targets failed with `text`: events of a cluster and component that say it (the
    enrollment pass, which also cannot plan the revision, says it once for the app)."""
    events = fleet.hub.ok("history", CHART, "-o", "json").json()["events"]
    return sum(bool(e["cluster"]) and text in e["message"] for e in events)


def resource_versions(fleet: Fleet) -> dict[str, str | None]:
    return {
        cluster: (d["metadata"]["resourceVersion"] if (d := fleet.deployment(cluster)) else None)
        for cluster in CLUSTERS
    }


def test_resume_after_a_newer_matching_release_deploys_the_pinned_version(
    fleet: Fleet, chart_repo: ChartRepo
) -> None:
    path = fleet.app(version="^1.0", suspend=True)
    assert (result := fleet.up(path, "--wait")).code == 0, result.stderr
    assert phase(fleet) == "suspended"
    assert_deployed(fleet, PINNED, 1, "dev")
    chart_repo.publish(CHART, "1.1.0")
    planned = fleet.hub.ok("plan", "-f", str(path), "-o", "json").json()
    # What resolving the constraint again would deploy:
    assert {t["chart"] for s in planned["steps"] for t in s["targets"]} == {"canary-demo 1.1.0"}
    restart_hub_without_charts(fleet)

    fleet.hub.ok("workflow", "resume", CHART)

    until(lambda: phase(fleet) == "succeeded", what="prod deployed")
    assert_deployed(fleet, PINNED, 1)


def test_rollback_deploys_the_pinned_version_not_the_newest_match(
    fleet: Fleet, chart_repo: ChartRepo
) -> None:
    assert (first := fleet.up(fleet.app(version="^1.0"), "--wait")).code == 0, first.stderr
    assert_deployed(fleet, PINNED, 1)
    chart_repo.publish(CHART, "1.1.0")
    newer = fleet.up(fleet.app(version="^1.0", publish="v2"), "--wait")
    assert newer.code == 0, newer.stderr
    assert_deployed(fleet, NEWER, 2)  # a new revision does pick the newer release

    back = fleet.hub.cli("workflow", "rollback", CHART, "--revision", "1", "--wait")

    assert back.code == 0, back.stderr
    assert_deployed(fleet, PINNED, 3)


def test_replaced_archive_fails_the_target_until_the_pinned_bytes_return(
    fleet: Fleet, chart_repo: ChartRepo
) -> None:
    result = fleet.up(fleet.app(version="^1.0", suspend=True), "--wait")
    assert result.code == 0, result.stderr
    archive = chart_repo.directory / f"{CHART}-1.0.0.tgz"
    pinned, pinned_bytes = digest(chart_repo, "1.0.0"), archive.read_bytes()
    chart_repo.publish(CHART, "1.1.0")
    chart_repo.publish(CHART, "1.0.0", app_version="1.0.0-rebuilt")
    expected = refused_message(chart_repo, digest(chart_repo, "1.0.0"), pinned, 1)
    before = resource_versions(fleet)
    restart_hub_without_charts(fleet)

    fleet.hub.ok("workflow", "resume", CHART)
    until(lambda: phase(fleet) == "failed", what="prod refused")
    assert prod_messages(fleet) == dict.fromkeys(PROD, expected)
    fleet.hub.ok("workflow", "restart", CHART)
    until(
        lambda: phase(fleet) == "failed" and events_with(fleet, expected) == 2 * len(PROD),
        what="the restart refused on every prod cluster too",
    )

    assert prod_messages(fleet) == dict.fromkeys(PROD, expected)
    assert resource_versions(fleet) == before  # nothing changed, prod has nothing at all
    assert before["prod-eu"] is None and before["prod-us"] is None

    archive.write_bytes(pinned_bytes)
    chart_repo.reindex()
    fleet.hub.ok("workflow", "restart", CHART)
    until(lambda: phase(fleet) == "succeeded", what="prod deployed from the pinned bytes")
    assert_deployed(fleet, PINNED, 1)  # not the rebuilt 1.0.0, not 1.1.0
    assert resource_versions(fleet)["dev"] == before["dev"]


def test_rollback_to_a_replaced_archive_is_refused(fleet: Fleet, chart_repo: ChartRepo) -> None:
    assert (result := fleet.up(fleet.app(version="^1.0"), "--wait")).code == 0, result.stderr
    pinned = digest(chart_repo, "1.0.0")
    chart_repo.publish(CHART, "1.0.0", app_version="1.0.0-rebuilt")
    before = resource_versions(fleet)
    restart_hub_without_charts(fleet)

    back = fleet.hub.cli("workflow", "rollback", CHART, "--revision", "1", "--wait")

    assert back.code == 4, back.stderr
    assert back.stderr.strip().endswith(
        refused_message(chart_repo, digest(chart_repo, "1.0.0"), pinned, 1)
    )
    revisions = fleet.hub.ok("history", CHART, "-o", "json").json()["revisions"]
    assert [r["revision"] for r in revisions] == [1]
    assert resource_versions(fleet) == before


def local_app(fleet: Fleet, charts: Path) -> Path:
    """The three-environment application with its chart in `charts`, a local directory."""
    path = fleet.app(suspend=True)
    document = yaml.safe_load(path.read_text())
    document["spec"]["components"][0]["properties"].update(
        {"repoType": "local", "url": str(charts), "version": "^1.0"}
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_changed_local_chart_is_refused_until_up_again(fleet: Fleet, tmp_path: Path) -> None:
    charts = tmp_path / "charts-src"
    shutil.copytree(CHARTS_DIR / CHART, charts / CHART)  # links resolved
    path = local_app(fleet, charts)
    assert (result := fleet.up(path, "--wait")).code == 0, result.stderr
    assert_deployed(fleet, PINNED, 1, "dev")
    values = charts / CHART / "values.yaml"
    values.write_text(values.read_text().replace('tag: ""', 'tag: "edited"'))

    fleet.hub.ok("workflow", "resume", CHART)

    until(lambda: phase(fleet) == "failed", what="prod refused")
    for message in prod_messages(fleet).values():
        assert message.startswith(f"chart canary-demo 1.0.0 in {charts / CHART}: the directory")
        assert message.endswith("run `flotilla up` again to deploy the changed chart")
    assert [deployed(fleet, cluster) for cluster in PROD] == [None, None]
    assert (again := fleet.up(path, "--wait")).code == 0, again.stderr
    assert fleet.status()["revision"] == 2
    assert deployed(fleet, "dev") == ("registry.local/canary-demo:edited", PINNED[1], "2")
