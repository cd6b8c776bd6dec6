"""The metrics a real app would expose, for the simulated kubelet's pods: pure.

Canary analysis asks Prometheus how the new pods behave next to the old ones, so the simulated
pods must serve traffic that Prometheus can measure. No container runs; instead the kubelet
serves on `/metrics`, for every pod of its node that is Running and not terminating, the
series an instrumented HTTP app would expose. They are a deterministic function of the pod
and of the time since it started, so counters only grow, a restarted kubelet picks up where
the last one left off, and `rate()` measures exactly what the pod was asked to do.

Series, per pod and per `code`, "200" and "500" (both always present, so that the error ratio
of a healthy pod is 0 rather than no data at all):

    http_requests_total{namespace, pod, app, canary, pod_template_hash, code}     counter
    http_request_duration_seconds_bucket{namespace, ..., code, le}, _sum, _count  histogram

`app` is the pod's label `app.kubernetes.io/name` (else `app`, else ""); `canary` is "true" when
its label `flotilla.dev/canary` is "true" and "false" otherwise; `pod_template_hash` is its
`pod-template-hash` label (else ""). There is no `cluster` label: Prometheus adds one per
scrape target, as it would for a real fleet.

Traffic: REQUESTS_PER_SECOND requests a second from the pod's `status.startTime` on (from when
the kubelet first saw it running if it has none), every one of them answered, on request:

- with errors: a container whose image tag contains `errors-N` (`app:2.0.0-errors-30`), or the
  pod annotation `e2e.flotilla.dev/error-percent: "N"`, answers N% of requests with 500;
- slowly: a tag containing `slow-MS` (`app:2.0.0-slow-250`), or the annotation
  `e2e.flotilla.dev/latency-ms: "MS"`, makes every request take MS milliseconds (default
  DEFAULT_LATENCY_MS), so a histogram holds all of a pod's requests in one bucket and below.

N and MS are whole numbers (N at most 100). An annotation wins over tags, and the largest value
among a pod's containers' tags wins over the others; an annotation that is no whole number is
ignored, as a misspelt annotation would be by a real app.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

from e2e.podstatus import image_tag

ERROR_PERCENT_ANNOTATION = "e2e.flotilla.dev/error-percent"
LATENCY_ANNOTATION = "e2e.flotilla.dev/latency-ms"
ERRORS_MARK = re.compile(r"errors-(\d+)")
SLOW_MARK = re.compile(r"slow-(\d+)")
# Fast enough that a 10 s rate() window holds ~100 requests, so a percentage of errors shows
# to within about one point; slow enough that counters stay small numbers.
REQUESTS_PER_SECOND = 10
DEFAULT_LATENCY_MS = 20
# The client library's default bucket bounds, which most instrumented apps keep; +Inf follows.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CANARY_LABEL = "flotilla.dev/canary"
POD_TEMPLATE_HASH = "pod-template-hash"
APP_LABELS = ("app.kubernetes.io/name", "app")
LABELS = ("namespace", "pod", "app", "canary", "pod_template_hash", "code")
# The text format Prometheus 2.42 parses; the library's latest is a newer one.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Pod = Mapping[str, Any]


@dataclass(frozen=True)
class Behaviour:
    """What a pod was asked to do with its requests."""

    error_percent: int
    latency_ms: int

    @property
    def latency_seconds(self) -> float:
        return self.latency_ms / 1000


@dataclass(frozen=True)
class Served:
    """A pod whose metrics the kubelet serves, and when it first saw the pod running (epoch
    seconds): the start of its traffic when the pod reports no `startTime`."""

    pod: Pod
    first_seen: float


def _meta(pod: Pod) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def serves(pod: Pod, node: str) -> bool:
    """Whether a pod on `node` answers requests: Running there and not terminating."""
    return (
        (pod.get("spec") or {}).get("nodeName") == node
        and (pod.get("status") or {}).get("phase") == "Running"
        and not _meta(pod).get("deletionTimestamp")
    )


def pod_labels(pod: Pod) -> dict[str, str]:
    """The labels of a pod's series, all but `code`."""
    meta = _meta(pod)
    labels: Mapping[str, str] = meta.get("labels") or {}
    return {
        "namespace": str(meta.get("namespace", "")),
        "pod": str(meta.get("name", "")),
        "app": next((labels[k] for k in APP_LABELS if k in labels), ""),
        "canary": "true" if labels.get(CANARY_LABEL) == "true" else "false",
        "pod_template_hash": labels.get(POD_TEMPLATE_HASH, ""),
    }


def _asked(pod: Pod, annotation: str, mark: re.Pattern[str]) -> int | None:
    """The whole number the annotation or, failing that, the containers' tags ask for."""
    value = str((_meta(pod).get("annotations") or {}).get(annotation, ""))
    if value.isdigit():
        return int(value)
    found = [
        int(match.group(1))
        for container in (pod.get("spec") or {}).get("containers") or []
        if (match := mark.search(image_tag(container.get("image", ""))))
    ]
    return max(found, default=None)


def behaviour(pod: Pod) -> Behaviour:
    errors = _asked(pod, ERROR_PERCENT_ANNOTATION, ERRORS_MARK)
    latency = _asked(pod, LATENCY_ANNOTATION, SLOW_MARK)
    return Behaviour(
        error_percent=min(errors or 0, 100),
        latency_ms=DEFAULT_LATENCY_MS if latency is None else latency,
    )


def started_at(served: Served) -> float:
    """When the pod's traffic began, in epoch seconds."""
    text = (served.pod.get("status") or {}).get("startTime")
    try:
        return datetime.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return served.first_seen


def requests(asked: Behaviour, elapsed: float) -> dict[str, int]:
    """Requests answered in the first `elapsed` seconds of a pod, by status code: whole
    requests only, and errors a whole share of them, so both counters only ever grow."""
    total = math.floor(REQUESTS_PER_SECOND * max(elapsed, 0.0))
    errors = total * asked.error_percent // 100
    return {"200": total - errors, "500": errors}


def families(pods: Iterable[Served], now: float) -> list[Metric]:
    """The metric families of `pods` at epoch time `now`."""
    counter = CounterMetricFamily(
        "http_requests_total", "HTTP requests answered, by status code.", labels=LABELS
    )
    histogram = HistogramMetricFamily(
        "http_request_duration_seconds", "Time to answer an HTTP request.", labels=LABELS
    )
    for served in pods:
        asked = behaviour(served.pod)
        labels = pod_labels(served.pod)
        base = [labels[name] for name in LABELS if name != "code"]
        for code, count in requests(asked, now - started_at(served)).items():
            counter.add_metric([*base, code], count)
            within = [count if asked.latency_seconds <= bound else 0 for bound in BUCKETS]
            buckets = [*zip(map(str, BUCKETS), within, strict=True), ("+Inf", count)]
            histogram.add_metric(
                [*base, code], buckets=buckets, sum_value=count * asked.latency_seconds
            )
    return [counter, histogram]


@dataclass(frozen=True)
class _Snapshot:
    """The families of one scrape, in the shape the library's text writer reads."""

    metrics: list[Metric]

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def exposition(pods: Iterable[Served], now: float) -> bytes:
    """The body of a `/metrics` answer (CONTENT_TYPE) for `pods` at epoch time `now`."""
    return generate_latest(_Snapshot(families(pods, now)))
