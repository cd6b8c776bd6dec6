"""The app metrics the simulated kubelet serves for its pods, without a cluster."""

from __future__ import annotations

import math
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from e2e.appmetrics import (
    DEFAULT_LATENCY_MS,
    REQUESTS_PER_SECOND,
    Behaviour,
    Served,
    behaviour,
    exposition,
    pod_labels,
    requests,
    serves,
    started_at,
)

NODE = "e2e-1-node"
# 2026-01-01T00:00:00Z, the startTime of `pod()`.
START = 1767225600.0


def pod(
    *images: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-5d9c-x",
            "namespace": "ns",
            "uid": "u-1",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": f"c{i}", "image": i} for i in images or ("nginx:1.27",)],
        },
        "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z"},
    }


@pytest.mark.parametrize(
    ("images", "annotations", "expected"),
    [
        (("nginx:1.27",), {}, Behaviour(0, DEFAULT_LATENCY_MS)),
        (("ghcr.io/x/app:2.0.0-errors-30",), {}, Behaviour(30, DEFAULT_LATENCY_MS)),
        (("ghcr.io/x/app:2.0.0-slow-250",), {}, Behaviour(0, 250)),
        (("app:errors-5-slow-100",), {}, Behaviour(5, 100)),
        (("nginx:1.27", "sidecar:1-errors-40", "app:errors-10"), {}, Behaviour(40, 20)),
        (("app:errors-250",), {}, Behaviour(100, DEFAULT_LATENCY_MS)),
        # A registry port or a repository path is no tag.
        (("registry.local:5000/errors-30/app:1.0.0",), {}, Behaviour(0, DEFAULT_LATENCY_MS)),
        (
            ("app:1",),
            {"e2e.flotilla.dev/error-percent": "12", "e2e.flotilla.dev/latency-ms": "0"},
            Behaviour(12, 0),
        ),
        # The annotation wins over the tag; a value that is no whole number is ignored.
        (("app:errors-30",), {"e2e.flotilla.dev/error-percent": "2"}, Behaviour(2, 20)),
        (("app:errors-30",), {"e2e.flotilla.dev/error-percent": "2.5"}, Behaviour(30, 20)),
        (("app:slow-80",), {"e2e.flotilla.dev/latency-ms": "fast"}, Behaviour(0, 80)),
    ],
)
def test_errors_and_latency_come_from_tags_and_annotations(
    images: tuple[str, ...], annotations: dict[str, str], expected: Behaviour
) -> None:
    assert behaviour(pod(*images, annotations=annotations)) == expected


def test_counters_grow_with_time_and_split_by_the_error_share() -> None:
    asked = Behaviour(error_percent=30, latency_ms=20)
    assert requests(asked, 0) == {"200": 0, "500": 0}
    assert requests(asked, -5) == {"200": 0, "500": 0}
    assert requests(asked, 10) == {"200": 70, "500": 30}
    assert requests(asked, 10.05) == requests(asked, 10)
    previous = {"200": 0, "500": 0}
    for tenth in range(1, 300):
        now = requests(asked, tenth / 10)
        assert all(now[code] >= previous[code] for code in now)
        assert sum(now.values()) == math.floor(REQUESTS_PER_SECOND * tenth / 10)
        previous = now
    assert requests(Behaviour(0, 20), 60) == {"200": 60 * REQUESTS_PER_SECOND, "500": 0}


def test_traffic_starts_at_the_start_time_or_when_first_seen() -> None:
    assert started_at(Served(pod(), first_seen=START + 99)) == START
    unstarted = pod()
    del unstarted["status"]["startTime"]
    assert started_at(Served(unstarted, first_seen=START + 99)) == START + 99


def test_labels_name_the_app_the_canary_and_the_template_hash() -> None:
    stable = pod(
        labels={"app.kubernetes.io/name": "web", "app": "other", "pod-template-hash": "5d9c"}
    )
    assert pod_labels(stable) == {
        "namespace": "ns",
        "pod": "web-5d9c-x",
        "app": "web",
        "canary": "false",
        "pod_template_hash": "5d9c",
    }
    canary = pod(labels={"app": "web", "flotilla.dev/canary": "true"})
    assert pod_labels(canary) == {
        "namespace": "ns",
        "pod": "web-5d9c-x",
        "app": "web",
        "canary": "true",
        "pod_template_hash": "",
    }
    assert pod_labels(pod())["app"] == ""


@pytest.mark.parametrize(
    ("change", "serving"),
    [
        ({}, True),
        ({"status": {"phase": "Pending"}}, False),
        ({"status": {"phase": "Succeeded"}}, False),
        ({"spec": {"nodeName": "elsewhere"}}, False),
        ({"metadata": {"deletionTimestamp": "2026-01-01T00:01:00Z"}}, False),
    ],
)
def test_only_running_pods_of_the_node_that_are_not_terminating_serve(
    change: dict[str, dict[str, str]], serving: bool
) -> None:
    subject = pod()
    for key, value in change.items():
        subject[key] |= value
    assert serves(subject, NODE) is serving


def samples(text: str) -> dict[str, list[Sample]]:
    """Every sample of an exposition by family name, as Prometheus' text parser reads them."""
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_exposition_parses_with_a_counter_and_a_histogram_per_code() -> None:
    labels = {"app": "web", "pod-template-hash": "5d9c", "flotilla.dev/canary": "true"}
    served = Served(pod("app:2.0.0-errors-30-slow-60", labels=labels), first_seen=START)
    parsed = samples(exposition([served], now=START + 20).decode())

    counts = {s.labels["code"]: s.value for s in parsed["http_requests"]}
    assert counts == {"200": 140, "500": 60}
    for sample in parsed["http_requests"]:
        assert sample.name == "http_requests_total"
        assert sample.labels == {
            "namespace": "ns",
            "pod": "web-5d9c-x",
            "app": "web",
            "canary": "true",
            "pod_template_hash": "5d9c",
            "code": sample.labels["code"],
        }

    histogram = parsed["http_request_duration_seconds"]
    errors = [s for s in histogram if s.labels["code"] == "500"]
    buckets = {s.labels["le"]: s.value for s in errors if s.name.endswith("_bucket")}
    assert buckets["0.05"] == 0
    assert buckets["0.075"] == buckets["10.0"] == buckets["+Inf"] == 60
    by_name = {s.name: s.value for s in errors if not s.name.endswith("_bucket")}
    assert by_name["http_request_duration_seconds_count"] == 60
    assert by_name["http_request_duration_seconds_sum"] == pytest.approx(60 * 0.06)


def test_a_healthy_pod_reports_zero_errors_and_no_pods_report_nothing() -> None:
    parsed = samples(exposition([Served(pod(), first_seen=START)], now=START + 3).decode())
    assert {s.labels["code"]: s.value for s in parsed["http_requests"]} == {"200": 30, "500": 0}
    assert not any(f.samples for f in text_string_to_metric_families(exposition([], 0).decode()))
