"""The harness' state file, without a cluster: what a state file written by an older harness
still means."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.clusters import ClusterRecord

RECORD: dict[str, Any] = {
    "name": "e2e-1",
    "port": 6443,
    "admin_token": "a",
    "restricted_token": "r",
    "processes": {},
}


def test_a_record_keeps_its_kubelet_metrics_port() -> None:
    record = ClusterRecord.from_json({**RECORD, "metrics_port": 9100})
    assert ClusterRecord.from_json(record.to_json()) == record
    assert record.info().metrics_url == "http://127.0.0.1:9100/metrics"


def test_a_record_from_before_metrics_ports_loads_and_asks_for_up() -> None:
    record = ClusterRecord.from_json(RECORD)
    assert record.metrics_port is None
    with pytest.raises(RuntimeError, match="run `up`"):
        record.info()
