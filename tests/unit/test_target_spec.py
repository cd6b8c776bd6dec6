"""A target's spec as the store keeps it: typed, frozen, read back unchanged, and specs
stored before charts were pinned still readable."""

from __future__ import annotations

import dataclasses

import pytest

from hub.model.targets import ChartSpec, TargetSpec

CHART = ChartSpec("helm", "http://repo", "web", "1.2.0", constraint="^1.0", digest="sha256:ab")


def test_a_helm_spec_round_trips() -> None:
    spec = TargetSpec(
        "helm",
        chart=CHART,
        values={"replicaCount": 3, "image": {"tag": "eu"}},
        traits={"kruise-rollout": {"canary": {"steps": [{"weight": 20}]}}},
    )
    assert TargetSpec.from_json(spec.to_json()) == spec
    assert spec.trait("kruise-rollout") == {"canary": {"steps": [{"weight": 20}]}}
    assert spec.trait("other") is None


def test_an_objects_spec_round_trips() -> None:
    spec = TargetSpec("k8s-objects", objects=({"kind": "ConfigMap"},))
    assert TargetSpec.from_json(spec.to_json()) == spec


def test_a_spec_stored_before_pinning_reads_as_unpinned() -> None:
    old = {
        "type": "helm",
        "chart": {"repo_type": "helm", "url": "http://repo", "chart": "web", "version": "^1.0"},
        "digest": "",
        "values": {},
    }
    chart = TargetSpec.from_json(old).chart
    assert chart is not None
    assert (chart.pinned, chart.version, chart.constraint) == (False, "^1.0", "^1.0")


def test_a_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TargetSpec("helm", chart=CHART).type = "k8s-objects"  # type: ignore[misc]
