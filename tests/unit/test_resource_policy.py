"""Helm's `helm.sh/resource-policy: keep` as the inventory records it (hub.fleet.keep, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.resources import ObjectRef
from hub.fleet.keep import deletable, flagged, is_kept, keeps, kept, kept_message


def configmap(policy: str | None) -> dict[str, Any]:
    annotations = {} if policy is None else {"helm.sh/resource-policy": policy}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"annotations": annotations}}


@pytest.mark.parametrize(("policy", "expected"), [("keep", True), (" Keep ", True), ("", False)])
def test_keep_is_read_as_helm_reads_it(policy: str, expected: bool) -> None:
    assert keeps(configmap(policy)) is expected


def test_no_annotation_is_no_keep() -> None:
    assert not keeps(configmap(None))
    assert not keeps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})


def test_kept_entries_are_flagged_and_never_deletable() -> None:
    entry = {"apiVersion": "v1", "kind": "Secret", "namespace": "demo", "name": "x"}
    other = {**entry, "name": "y"}
    entries = [flagged(entry, configmap("keep")), flagged(other, configmap(None))]

    assert [is_kept(e) for e in entries] == [True, False]
    assert deletable(entries) == [other]
    assert kept(entries) == [ObjectRef("v1", "Secret", "demo", "x")]


def test_the_event_names_the_object_and_the_policy() -> None:
    assert kept_message(ObjectRef("v1", "Secret", "demo", "x")) == (
        "kept Secret demo/x: helm.sh/resource-policy keep"
    )
    assert kept_message(ObjectRef("v1", "Namespace", None, "demo")) == (
        "kept Namespace demo: helm.sh/resource-policy keep"
    )
