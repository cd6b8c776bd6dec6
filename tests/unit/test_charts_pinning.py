"""A revision's chart, pinned: the pin as stored, its one-line refusal, and fetching exactly
the pinned chart from a real Helm repository (a thread of this process) while the
repository publishes a newer matching version or replaces the archive under the pinned one.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chartrepo import CHARTS_DIR, ChartRepo, start_chart_repo
from hub.charts import (
    ChartCache,
    ChartPin,
    ChartPinMismatch,
    ChartRef,
    ChartRepoUnreachable,
    LoadedChart,
)
from hub.errors import Conflict
from hub.format import load_application
from hub.model.records import ClusterRecord
from hub.model.targets import TargetSpec
from hub.service.enrollment import target_record
from hub.service.planner import RevisionPins, plan

CHART = "canary-demo"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


@pytest.fixture
def repo() -> Iterator[ChartRepo]:
    """A repository of the test's own: tests publish into it and replace its archives."""
    with start_chart_repo() as served:
        yield served


def image_of(chart: LoadedChart) -> str:
    objects = chart.render({}, release_name=CHART, namespace="demo")
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def served_digest(repo: ChartRepo, version: str) -> str:
    data = (repo.directory / f"{CHART}-{version}.tgz").read_bytes()
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def pin_of(cache: ChartCache, requested: ChartRef) -> ChartPin:
    return ChartPin.of(requested, await cache.fetch(requested))


# the pin as stored


def test_pin_round_trips_through_a_stored_spec() -> None:
    pin = ChartPin(ChartRef("helm", "http://repo", CHART, "^1.0"), "1.0.0", DIGEST_A)

    spec = TargetSpec("helm", chart=pin.to_spec())

    assert spec.to_json()["chart"] == {
        "repo_type": "helm",
        "url": "http://repo",
        "chart": CHART,
        "version": "1.0.0",
        "constraint": "^1.0",
    }
    assert spec.to_json()["digest"] == DIGEST_A
    assert ChartPin.from_spec(TargetSpec.from_json(spec.to_json())) == pin
    assert pin.ref == ChartRef("helm", "http://repo", CHART, "1.0.0")


def test_no_version_written_pins_the_newest_and_keeps_none_as_the_constraint() -> None:
    pin = ChartPin(ChartRef("oci", "oci://host/charts", CHART), "2.0.0", DIGEST_A)

    assert ChartPin.from_spec(TargetSpec("helm", chart=pin.to_spec())) == pin
    assert pin.to_spec().constraint is None


@pytest.mark.parametrize(
    "spec",
    [
        {
            "type": "helm",
            "chart": {"repo_type": "helm", "url": "http://repo", "chart": CHART, "version": "^1"},
            "digest": DIGEST_A,
        },
        {"type": "k8s-objects", "objects": []},
    ],
    ids=["stored-before-pinning", "no-chart"],
)
def test_specs_without_a_pin(spec: dict[str, Any]) -> None:
    assert ChartPin.from_spec(TargetSpec.from_json(spec)) is None


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (
            ChartRef("helm", "http://user:secret@127.0.0.1:8879", CHART, "^1.0"),
            f"chart canary-demo 1.0.0 in http://127.0.0.1:8879: the repository now serves "
            f"{DIGEST_B} but revision 3 pinned {DIGEST_A}; nothing was deployed",
        ),
        (
            ChartRef("oci", "oci://127.0.0.1:5000/charts", CHART),
            f"chart canary-demo 1.0.0 in oci://127.0.0.1:5000/charts: the registry now serves "
            f"{DIGEST_B} but revision 3 pinned {DIGEST_A}; nothing was deployed",
        ),
        (
            ChartRef("local", "/src/charts", CHART, "1.0.0"),
            f"chart canary-demo 1.0.0 in /src/charts/canary-demo: the directory now hashes to "
            f"{DIGEST_B} but revision 3 pinned {DIGEST_A}; nothing was deployed; "
            "run `flotilla up` again to deploy the changed chart",
        ),
    ],
    ids=["helm", "oci", "local"],
)
def test_refusal_names_chart_version_and_both_digests(requested: ChartRef, expected: str) -> None:
    error = ChartPin(requested, "1.0.0", DIGEST_A).mismatch(DIGEST_B, revision=3)

    assert str(error) == expected
    assert isinstance(error, Conflict)


# fetching the pinned chart


async def test_newer_matching_release_changes_nothing_for_the_pin(
    repo: ChartRepo, tmp_path: Path
) -> None:
    requested = ChartRef("helm", repo.url, CHART, "^1.0")
    pin = await pin_of(ChartCache(tmp_path / "first"), requested)
    repo.publish(CHART, "1.1.0")

    resolved_now = await ChartCache(tmp_path / "now").fetch(requested)
    pinned = await ChartCache(tmp_path / "later").fetch_pinned(pin, revision=1)

    assert (pin.version, pin.digest) == ("1.0.0", served_digest(repo, "1.0.0"))
    assert resolved_now.version == "1.1.0"  # what re-resolving would deploy
    assert (pinned.version, pinned.digest) == ("1.0.0", pin.digest)
    assert image_of(pinned) == "registry.local/canary-demo:1.0.0"


async def test_pinned_digest_in_the_cache_needs_no_network(tmp_path: Path) -> None:
    with start_chart_repo() as gone:
        pin = await pin_of(ChartCache(tmp_path), ChartRef("helm", gone.url, CHART, "^1.0"))

    again = await ChartCache(tmp_path).fetch_pinned(pin, revision=1)  # as a restarted hub

    assert again.digest == pin.digest
    with pytest.raises(ChartRepoUnreachable):  # proof that the repository is gone
        await ChartCache(tmp_path / "empty").fetch_pinned(pin, revision=1)


async def test_archive_replaced_under_the_pinned_version_is_refused_and_not_kept(
    repo: ChartRepo, tmp_path: Path
) -> None:
    pinned_cache = ChartCache(tmp_path / "pinned")
    pin = await pin_of(pinned_cache, ChartRef("helm", repo.url, CHART, "^1.0"))
    repo.publish(CHART, "1.0.0", app_version="1.0.0-rebuilt")
    fresh = tmp_path / "fresh"

    with pytest.raises(ChartPinMismatch) as refused:
        await ChartCache(fresh).fetch_pinned(pin, revision=4)
    held = await ChartCache(tmp_path / "pinned").fetch_pinned(pin, revision=4)

    assert str(refused.value) == (
        f"chart canary-demo 1.0.0 in {repo.url}: the repository now serves "
        f"{served_digest(repo, '1.0.0')} but revision 4 pinned {pin.digest}; nothing was deployed"
    )
    assert not list(fresh.glob("archives/*.tgz"))
    assert image_of(held) == "registry.local/canary-demo:1.0.0"  # the cache had the pinned bytes


async def test_changed_local_directory_is_refused(tmp_path: Path) -> None:
    shutil.copytree(CHARTS_DIR / CHART, tmp_path / CHART)
    cache = ChartCache(tmp_path / "cache")
    pin = await pin_of(cache, ChartRef("local", str(tmp_path), CHART))
    unchanged = await cache.fetch_pinned(pin, revision=2)
    values = tmp_path / CHART / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 5", "replicaCount: 7"))

    with pytest.raises(ChartPinMismatch) as refused:
        await cache.fetch_pinned(pin, revision=2)

    assert unchanged.digest == pin.digest
    message = str(refused.value)
    assert message.startswith(f"chart canary-demo 1.0.0 in {tmp_path / CHART}: ")
    assert f"but revision 2 pinned {pin.digest}" in message
    assert message.endswith("run `flotilla up` again to deploy the changed chart")


# the planner, and the chart a deploy fetches for a stored spec


def application(url: str, version: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "core.oam.dev/v1beta1",
            "kind": "Application",
            "metadata": {"name": CHART},
            "spec": {
                "components": [
                    {
                        "name": CHART,
                        "type": "helm",
                        "properties": {
                            "repoType": "helm",
                            "url": url,
                            "chart": CHART,
                            "version": version,
                        },
                    }
                ],
                "policies": [
                    {
                        "name": "dev",
                        "type": "topology",
                        "properties": {"clusterLabelSelector": {"env": "dev"}, "namespace": "d"},
                    }
                ],
                "workflow": {
                    "steps": [
                        {"name": "deploy", "type": "deploy", "properties": {"policies": ["dev"]}}
                    ]
                },
            },
        }
    )


CLUSTERS = [
    ClusterRecord(name, "https://127.0.0.1:1", {}, "token", {"env": "dev"}) for name in ("a", "b")
]


async def test_plan_pins_every_target_and_a_replan_from_pins_keeps_them(
    repo: ChartRepo, tmp_path: Path
) -> None:
    app = load_application(application(repo.url, "^1.0"), "app.yaml")
    cache = ChartCache(tmp_path / "cache")
    first = await plan(app, "app.yaml", CLUSTERS, cache, base=tmp_path)
    repo.publish(CHART, "1.1.0")

    fresh = await plan(app, "app.yaml", CLUSTERS, cache, base=tmp_path)
    pins = RevisionPins.of(1, [target_record(CHART, 1, p) for p in first])
    again = await plan(app, "revision 1", CLUSTERS, cache, base=tmp_path, pins=pins)

    digest = served_digest(repo, "1.0.0")
    for planned in first:
        assert planned.chart_label == "canary-demo 1.0.0"
        chart = planned.spec.chart
        assert chart is not None
        assert (chart.version, chart.constraint, chart.digest) == (
            "1.0.0",
            "^1.0",
            digest,
        )
    assert {p.chart_label for p in fresh} == {"canary-demo 1.1.0"}
    assert [p.spec for p in again] == [p.spec for p in first]


async def test_replan_from_pins_refuses_a_replaced_archive(repo: ChartRepo, tmp_path: Path) -> None:
    app = load_application(application(repo.url, "^1.0"), "app.yaml")
    first = await plan(app, "app.yaml", CLUSTERS, ChartCache(tmp_path / "a"), base=tmp_path)
    repo.publish(CHART, "1.0.0", app_version="1.0.0-rebuilt")
    pins = RevisionPins.of(1, [target_record(CHART, 1, p) for p in first])

    with pytest.raises(ChartPinMismatch, match="but revision 1 pinned"):
        await plan(
            app, "revision 1", CLUSTERS, ChartCache(tmp_path / "b"), base=tmp_path, pins=pins
        )


async def test_stored_spec_deploys_its_pin_and_an_older_one_resolves_as_before(
    repo: ChartRepo, tmp_path: Path
) -> None:
    app = load_application(application(repo.url, "^1.0"), "app.yaml")
    (planned, _) = await plan(app, "app.yaml", CLUSTERS, ChartCache(tmp_path / "a"), base=tmp_path)
    pinned = planned.spec
    stored_before = pinned.to_json()  # as stored before pinning: the constraint, no pin
    stored_before["chart"]["version"] = stored_before["chart"].pop("constraint")
    unpinned = TargetSpec.from_json(stored_before)
    repo.publish(CHART, "1.1.0")
    cache = ChartCache(tmp_path / "hub")

    assert image_of(await cache.fetch_stored(pinned, revision=3)) == (
        "registry.local/canary-demo:1.0.0"
    )
    assert image_of(await cache.fetch_stored(unpinned, revision=3)) == (
        "registry.local/canary-demo:1.1.0"
    )
