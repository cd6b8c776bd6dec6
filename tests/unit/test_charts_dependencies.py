"""Charts with subcharts, rendered as Helm renders them: conditions that hold per render
(not for every later one), schemas of enabled subcharts only, and dependencies Chart.yaml
declares but `charts/` lacks, fetched (here from `file://` directories) and pinned.

Each test writes its charts under tmp_path; the repository case runs against the real
chart repository in tests/integration/test_chart_contents.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.chartrepo import CHARTS_DIR
from hub.charts import (
    ChartCache,
    ChartNotFound,
    ChartPin,
    ChartPinMismatch,
    ChartRef,
    InvalidChartRef,
    InvalidValues,
    LoadedChart,
)
from hub.model.targets import TargetSpec

UMBRELLA = "umbrella-demo"


def names(chart: LoadedChart, values: dict[str, Any], **options: Any) -> set[str]:
    objects = chart.render(values, release_name="rel", namespace="ns", **options)
    return {o["metadata"]["name"] for o in objects}


@pytest.fixture
async def umbrella(tmp_path: Path) -> LoadedChart:
    shutil.copytree(CHARTS_DIR / UMBRELLA, tmp_path / UMBRELLA)
    return await ChartCache(tmp_path / "cache").fetch(ChartRef("local", str(tmp_path), UMBRELLA))


BASE = {"rel-frontend", "rel-summary", "rel-kept", "rel-token"}


def test_a_condition_off_in_one_render_is_not_off_in_the_next(umbrella: LoadedChart) -> None:
    # Helm's render drops disabled subcharts from the chart it is given; every render here
    # starts from the chart as loaded.
    assert names(umbrella, {"worker": {"enabled": False}}) == BASE
    assert names(umbrella, {}) == BASE | {"rel-worker"}
    assert names(umbrella, {"tags": {"extras": True}}) == BASE | {"rel-worker", "rel-extras"}


def test_a_set_condition_wins_over_tags(umbrella: LoadedChart) -> None:
    assert names(umbrella, {"tags": {"backend": False}}) == BASE | {"rel-worker"}
    assert names(umbrella, {"worker": {"enabled": None}, "tags": {"backend": False}}) == BASE


def test_parent_values_win_over_imported_ones(umbrella: LoadedChart) -> None:
    objects = umbrella.render(
        {"workerSettings": {"threads": 9}}, release_name="rel", namespace="ns"
    )
    (summary,) = [o for o in objects if o["metadata"]["name"] == "rel-summary"]

    assert summary["data"]["workerThreads"] == "9"
    assert summary["data"]["queue"] == "jobs"


def test_only_enabled_subcharts_have_their_schema_checked(umbrella: LoadedChart) -> None:
    umbrella.validate({"worker": {"enabled": False, "settings": {"threads": 0}}})

    with pytest.raises(InvalidValues) as error:
        umbrella.validate({"worker": {"settings": {"threads": 0}}})

    assert str(error.value) == (
        "chart umbrella-demo 1.0.0: values do not match values.schema.json: "
        "worker.settings.threads: minimum: got 0, want 1"
    )


def test_templates_of_every_subchart_are_listed(umbrella: LoadedChart) -> None:
    assert {
        "templates/secret.yaml",
        "charts/common/templates/_labels.tpl",
        "charts/worker/templates/configmap.yaml",
    } <= set(umbrella.templates)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def parent_with(root: Path, dependencies: list[dict[str, Any]]) -> ChartRef:
    """Chart `app` under `root/charts` declaring `dependencies`, none of them packaged,
    and chart `lib` 1.0.0 beside it, which renders one ConfigMap."""
    charts = root / "charts"
    metadata = {"apiVersion": "v2", "name": "app", "version": "0.1.0"}
    write(charts / "app" / "Chart.yaml", yaml.safe_dump({**metadata, "dependencies": dependencies}))
    write(charts / "app" / "templates" / "cm.yaml", CONFIGMAP.format(name="app"))
    write(charts / "lib" / "Chart.yaml", "apiVersion: v2\nname: lib\nversion: 1.0.0\n")
    write(charts / "lib" / "templates" / "cm.yaml", CONFIGMAP.format(name="lib"))
    return ChartRef("local", str(charts), "app")


CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{{{ .Release.Name }}}}-{name}\n"


def lib(version: str = "1.0.0", repository: str = "file://../lib") -> dict[str, Any]:
    """Chart.yaml's entry for a dependency on `lib` (by default the one beside `app`)."""
    return {"name": "lib", "version": version, "repository": repository}


async def test_a_file_dependency_is_built_in_and_pinned(tmp_path: Path) -> None:
    ref = parent_with(tmp_path, [lib("^1")])
    cache = ChartCache(tmp_path / "cache")

    chart = await cache.fetch(ref)

    assert names(chart, {}) == {"rel-app", "rel-lib"}
    (dependency,) = ChartPin.of(ref, chart).dependencies
    assert (dependency.requested, dependency.version) == (
        ChartRef("local", str(tmp_path / "charts"), "lib", "^1"),
        "1.0.0",
    )
    assert dependency.digest.startswith("sha256:")


async def test_the_dependency_pins_round_trip_through_a_stored_spec(tmp_path: Path) -> None:
    ref = parent_with(tmp_path, [lib()])
    cache = ChartCache(tmp_path / "cache")
    pin = ChartPin.of(ref, await cache.fetch(ref))
    spec = TargetSpec("helm", chart=pin.to_spec())

    stored = TargetSpec.from_json(spec.to_json())

    assert ChartPin.from_spec(stored) == pin
    assert names(await cache.fetch_stored(stored, revision=3), {}) == {"rel-app", "rel-lib"}


async def test_a_changed_dependency_is_refused_for_the_revision_that_pinned_it(
    tmp_path: Path,
) -> None:
    ref = parent_with(tmp_path, [lib()])
    cache = ChartCache(tmp_path / "cache")
    pin = ChartPin.of(ref, await cache.fetch(ref))
    write(tmp_path / "charts" / "lib" / "templates" / "more.yaml", CONFIGMAP.format(name="more"))

    with pytest.raises(ChartPinMismatch) as error:
        await cache.fetch_pinned(pin, revision=2)

    assert str(error.value).startswith(
        "chart app 0.1.0: dependency lib: chart lib 1.0.0 in "
        f"{tmp_path / 'charts' / 'lib'}: the directory now hashes to "
    )
    assert names(await cache.fetch(ref), {}) == {"rel-app", "rel-lib", "rel-more"}


async def test_renders_of_the_same_chart_with_other_dependencies_are_not_mixed_up(
    tmp_path: Path,
) -> None:
    ref = parent_with(tmp_path, [lib()])
    cache = ChartCache(tmp_path / "cache")
    before = await cache.fetch(ref)
    assert names(before, {}) == {"rel-app", "rel-lib"}
    write(tmp_path / "charts" / "lib" / "templates" / "more.yaml", CONFIGMAP.format(name="more"))

    after = await cache.fetch(ref)

    assert after.digest == before.digest, "the parent's own files did not change"
    assert names(after, {}) == {"rel-app", "rel-lib", "rel-more"}


@pytest.mark.parametrize(
    ("repository", "error", "message"),
    [
        (
            "",
            ChartNotFound,
            "chart app 0.1.0: dependency lib is not in its charts/ directory and names no "
            "repository",
        ),
        (
            "@stable",
            InvalidChartRef,
            "chart app 0.1.0: dependency lib: repository @stable is a name `helm repo add` "
            "gave; write its URL",
        ),
    ],
)
async def test_a_dependency_that_cannot_be_fetched_is_one_line(
    tmp_path: Path, repository: str, error: type[Exception], message: str
) -> None:
    ref = parent_with(tmp_path, [lib(repository=repository)])

    with pytest.raises(error) as raised:
        await ChartCache(tmp_path / "cache").fetch(ref)

    assert str(raised.value) == message


async def test_a_file_dependency_of_another_version_names_parent_and_dependency(
    tmp_path: Path,
) -> None:
    ref = parent_with(tmp_path, [lib("2.0.0")])

    with pytest.raises(ChartNotFound) as raised:
        await ChartCache(tmp_path / "cache").fetch(ref)

    assert str(raised.value) == (
        f"chart app 0.1.0: dependency lib: chart lib 2.0.0: no such version in "
        f"{tmp_path / 'charts'}; it has 1.0.0"
    )
