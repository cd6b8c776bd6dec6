"""Fetching and rendering charts against a real Helm repository and a real OCI registry.

No Kubernetes is involved, so these run in seconds; they are integration tests because the
servers are real processes and sockets.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.chartrepo import CHARTS_DIR, ChartRepo, OciRegistry, start_chart_repo
from hub.charts import (
    ChartCache,
    ChartError,
    ChartNotFound,
    ChartRef,
    ChartRepoUnreachable,
    InvalidValues,
    LoadedChart,
    RepoType,
)


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [obj for obj in objects if obj["kind"] == kind]
    return found


def image_of(objects: list[dict[str, Any]]) -> str:
    image: str = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    return image


def render(chart: LoadedChart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return chart.render(values or {}, release_name="canary-demo", namespace="demo")


def one_line(error: pytest.ExceptionInfo[ChartError]) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
async def test_http_repo_chart_renders_its_version(
    chart_repo: ChartRepo, chart_cache: ChartCache, version: str
) -> None:
    chart = await chart_cache.fetch(ChartRef("helm", chart_repo.url, "canary-demo", version))

    assert (chart.name, chart.version, chart.app_version) == ("canary-demo", version, version)
    assert chart.digest.startswith("sha256:")
    objects = render(chart)
    assert only(objects, "Deployment")["spec"]["replicas"] == 5
    assert image_of(objects) == f"registry.local/canary-demo:{version}"


async def test_second_fetch_needs_no_server(tmp_path: Path) -> None:
    ref_version = "1.0.0"
    with start_chart_repo() as repo:
        ref = ChartRef("helm", repo.url, "canary-demo", ref_version)
        first = await ChartCache(tmp_path).fetch(ref)

    again = await ChartCache(tmp_path).fetch(ref)  # a new process would start like this

    assert again.digest == first.digest
    assert image_of(render(again)) == f"registry.local/canary-demo:{ref_version}"


async def test_corrupt_cached_archive_is_fetched_again(tmp_path: Path) -> None:
    with start_chart_repo() as repo:
        ref = ChartRef("helm", repo.url, "canary-demo", "1.0.0")
        first = await ChartCache(tmp_path).fetch(ref)
        (archive,) = (tmp_path / "archives").glob("*.tgz")
        archive.write_bytes(b"not a chart")

        again = await ChartCache(tmp_path).fetch(ref)

    assert again.digest == first.digest
    assert archive.read_bytes() != b"not a chart"


@pytest.mark.parametrize(
    ("requested", "resolved"),
    [(None, "2.0.0"), ("^1", "1.0.0"), (">= 1.0.0, < 2.0.0", "1.0.0"), ("~2.0", "2.0.0")],
)
async def test_versions_resolve_like_helm(
    chart_repo: ChartRepo, chart_cache: ChartCache, requested: str | None, resolved: str
) -> None:
    chart = await chart_cache.fetch(ChartRef("helm", chart_repo.url, "canary-demo", requested))

    assert chart.version == resolved


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
async def test_oci_chart_renders_its_version(
    oci_registry: OciRegistry, chart_cache: ChartCache, version: str
) -> None:
    ref = ChartRef("oci", oci_registry.url, "canary-demo-sts", version)

    chart = await chart_cache.fetch(ref)

    objects = render(chart)
    statefulset = only(objects, "StatefulSet")
    assert statefulset["spec"]["template"]["spec"]["containers"][0]["image"] == (
        f"registry.local/canary-demo:{version}"
    )
    assert (await chart_cache.fetch(ref)) is chart


async def test_oci_latest_is_the_newest_tag(
    oci_registry: OciRegistry, chart_cache: ChartCache
) -> None:
    chart = await chart_cache.fetch(ChartRef("oci", oci_registry.url, "canary-demo"))

    assert chart.version == "2.0.0"


async def test_local_directory_is_read_afresh(tmp_path: Path, chart_cache: ChartCache) -> None:
    shutil.copytree(CHARTS_DIR / "canary-demo", tmp_path / "canary-demo")
    ref = ChartRef("local", str(tmp_path), "canary-demo")
    before = await chart_cache.fetch(ref)
    values = tmp_path / "canary-demo" / "values.yaml"
    values.write_text(values.read_text().replace("replicaCount: 5", "replicaCount: 7"))

    after = await chart_cache.fetch(ref)

    assert only(render(before), "Deployment")["spec"]["replicas"] == 5
    assert only(render(after), "Deployment")["spec"]["replicas"] == 7
    assert after.digest != before.digest


async def test_demo_chart_objects_and_toggles(
    chart_repo: ChartRepo, chart_cache: ChartCache
) -> None:
    chart = await chart_cache.fetch(ChartRef("helm", chart_repo.url, "canary-demo", "1.0.0"))

    objects = render(chart)
    no_ingress = render(chart, {"ingress": {"enabled": False}})
    new_config = render(chart, {"config": {"GREETING": "bonjour"}})

    assert [obj["kind"] for obj in objects] == ["ConfigMap", "Deployment", "Ingress", "Service"]
    ingress = only(objects, "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["rules"][0]["host"] == "canary-demo.com"
    assert only(objects, "Service")["spec"]["ports"][0]["port"] == 80
    assert "Ingress" not in [obj["kind"] for obj in no_ingress]
    changed = [new["kind"] for new, old in zip(new_config, objects, strict=True) if new != old]
    assert changed == ["ConfigMap"]


async def test_gateway_variant_routes_to_the_named_gateway(
    chart_repo: ChartRepo, chart_cache: ChartCache
) -> None:
    chart = await chart_cache.fetch(ChartRef("helm", chart_repo.url, "canary-demo-gateway"))

    route = only(render(chart, {"gateway": {"name": "edge"}}), "HTTPRoute")

    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "edge"}]
    assert route["spec"]["rules"][0]["backendRefs"][0]["port"] == 80


async def test_schema_violation_names_the_key(
    chart_repo: ChartRepo, chart_cache: ChartCache
) -> None:
    chart = await chart_cache.fetch(ChartRef("helm", chart_repo.url, "canary-demo", "1.0.0"))

    with pytest.raises(InvalidValues) as validated:
        chart.validate({"replicaCount": -1})
    with pytest.raises(InvalidValues) as rendered:
        render(chart, {"image": {"tag": 2}})

    assert one_line(validated).startswith("chart canary-demo 1.0.0: ")
    assert "replicaCount: minimum: got -1, want 0" in one_line(validated)
    assert "image.tag: got number, want string" in one_line(rendered)


async def test_unknown_chart_names_what_the_repo_has(
    chart_repo: ChartRepo, chart_cache: ChartCache
) -> None:
    with pytest.raises(ChartNotFound) as error:
        await chart_cache.fetch(ChartRef("helm", chart_repo.url, "nginx", "1.0.0"))

    # Every chart of e2e/charts is published; the message names the first ten.
    published = sorted(path.parent.name for path in CHARTS_DIR.glob("*/Chart.yaml"))[:10]
    assert one_line(error) == (
        f"chart nginx 1.0.0: no chart nginx in {chart_repo.url}; it has {', '.join(published)}"
    )


@pytest.mark.parametrize("repo_type", ["helm", "oci"])
async def test_unknown_version_names_the_versions_that_exist(
    chart_repo: ChartRepo,
    oci_registry: OciRegistry,
    chart_cache: ChartCache,
    repo_type: RepoType,
) -> None:
    url = chart_repo.url if repo_type == "helm" else oci_registry.url

    with pytest.raises(ChartNotFound) as error:
        await chart_cache.fetch(ChartRef(repo_type, url, "canary-demo", "9.9.9"))

    assert one_line(error) == (
        f"chart canary-demo 9.9.9: no such version in {url}; it has 2.0.0, 1.0.0"
    )


async def test_unknown_oci_chart(oci_registry: OciRegistry, chart_cache: ChartCache) -> None:
    with pytest.raises(ChartNotFound) as error:
        await chart_cache.fetch(ChartRef("oci", oci_registry.url, "nginx", "1.0.0"))

    assert one_line(error) == f"chart nginx 1.0.0: no chart nginx in {oci_registry.url}"


@pytest.mark.parametrize(("repo_type", "scheme"), [("helm", "http"), ("oci", "oci")])
async def test_refused_connection_fails_at_once_without_credentials(
    chart_cache: ChartCache, closed_port: int, repo_type: RepoType, scheme: str
) -> None:
    url = f"{scheme}://flotilla:s3cret@127.0.0.1:{closed_port}"

    with pytest.raises(ChartRepoUnreachable) as error:
        await chart_cache.fetch(ChartRef(repo_type, url, "x", "1.0.0"))

    assert one_line(error).startswith("chart x 1.0.0: cannot reach ")
    assert f"{scheme}://127.0.0.1:{closed_port}" in one_line(error)
    assert "s3cret" not in one_line(error)


async def test_silent_repo_times_out(tmp_path: Path, silent_port: int) -> None:
    cache = ChartCache(tmp_path, timeout=0.3)
    started = time.monotonic()

    with pytest.raises(ChartRepoUnreachable) as error:
        await cache.fetch(ChartRef("helm", f"http://127.0.0.1:{silent_port}", "x", "1.0.0"))

    assert time.monotonic() - started < 2
    assert one_line(error) == (
        f"chart x 1.0.0: http://127.0.0.1:{silent_port}/index.yaml did not answer within 0.3s"
    )
