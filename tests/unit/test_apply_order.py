"""The pure rules of apply: the order of objects, and what a new revision prunes."""

from __future__ import annotations

from typing import Any

import pytest

from clusters.apply import AppliedRef, apply_order, delete_order, phase, stale
from clusters.resources import ObjectRef


def manifest(kind: str, name: str, api_version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


# A chart as Helm renders it: alphabetical by template file, not by dependency.
CHART = [
    manifest("Ingress", "web", "networking.k8s.io/v1"),
    manifest("Deployment", "web", "apps/v1"),
    manifest("ConfigMap", "web-config"),
    manifest("Widget", "w1", "example.com/v1"),
    manifest("Service", "web"),
    manifest("HTTPRoute", "web", "gateway.networking.k8s.io/v1"),
    manifest("Secret", "web-tls"),
    manifest("Job", "migrate", "batch/v1"),
    manifest("CustomResourceDefinition", "widgets.example.com", "apiextensions.k8s.io/v1"),
    manifest("ServiceAccount", "web"),
    manifest("StatefulSet", "db", "apps/v1"),
    manifest("Namespace", "shop"),
    manifest("ConfigMap", "db-config"),
    manifest("PersistentVolumeClaim", "data"),
    manifest("Role", "web", "rbac.authorization.k8s.io/v1"),
    manifest("DaemonSet", "agent", "apps/v1"),
    manifest("Service", "db"),
    manifest("ValidatingWebhookConfiguration", "hooks", "admissionregistration.k8s.io/v1"),
]

EXPECTED = [
    ("CustomResourceDefinition", "widgets.example.com"),
    ("Namespace", "shop"),
    ("ConfigMap", "web-config"),
    ("Secret", "web-tls"),
    ("ServiceAccount", "web"),
    ("ConfigMap", "db-config"),
    ("PersistentVolumeClaim", "data"),
    ("Role", "web"),
    ("Service", "web"),
    ("Service", "db"),
    ("Deployment", "web"),
    ("Job", "migrate"),
    ("StatefulSet", "db"),
    ("DaemonSet", "agent"),
    ("Ingress", "web"),
    ("HTTPRoute", "web"),
    ("Widget", "w1"),
    ("ValidatingWebhookConfiguration", "hooks"),
]


def test_a_rendered_chart_is_applied_in_dependency_order() -> None:
    ordered = apply_order(CHART)
    assert [(o["kind"], o["metadata"]["name"]) for o in ordered] == EXPECTED


def test_apply_order_does_not_change_its_input() -> None:
    before = list(CHART)
    apply_order(CHART)
    assert before == CHART


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("Namespace", "ServiceAccount"),
        ("CustomResourceDefinition", "ConfigMap"),
        ("Secret", "Service"),
        ("PersistentVolumeClaim", "StatefulSet"),
        ("ClusterRoleBinding", "Deployment"),
        ("Service", "Deployment"),
        ("Deployment", "Ingress"),
        ("Job", "HTTPRoute"),
        ("HTTPRoute", "SomeCustomResource"),
        ("Ingress", "MutatingWebhookConfiguration"),
    ],
)
def test_phase_pairs(earlier: str, later: str) -> None:
    assert phase(earlier) < phase(later)


@pytest.mark.parametrize(
    "kinds",
    [
        ("Namespace", "CustomResourceDefinition"),
        ("ConfigMap", "Secret", "ServiceAccount", "Role", "PersistentVolumeClaim"),
        ("Deployment", "StatefulSet", "DaemonSet", "Job"),
        ("Ingress", "HTTPRoute"),
    ],
)
def test_kinds_that_share_a_phase(kinds: tuple[str, ...]) -> None:
    assert len({phase(k) for k in kinds}) == 1


def test_order_is_stable_within_a_phase() -> None:
    maps = [manifest("ConfigMap", f"cm-{i}") for i in (3, 1, 2)]
    secrets = [manifest("Secret", f"s-{i}") for i in (2, 3, 1)]
    mixed = [maps[0], secrets[0], maps[1], secrets[1], maps[2], secrets[2]]
    assert apply_order(mixed) == mixed


def test_delete_order_is_the_reverse_of_apply_order() -> None:
    refs = [
        AppliedRef(o["apiVersion"], o["kind"], "shop", o["metadata"]["name"], uid=f"uid-{i}")
        for i, o in enumerate(CHART)
    ]
    applied = apply_order(refs, lambda ref: ref.kind)
    assert delete_order(refs) == applied[::-1]
    assert [r.kind for r in delete_order(refs)][:2] == [
        "ValidatingWebhookConfiguration",
        "Widget",
    ]
    assert [r.kind for r in delete_order(refs)][-2:] == ["Namespace", "CustomResourceDefinition"]


def test_empty() -> None:
    assert apply_order([]) == []
    assert delete_order([]) == []


def test_object_ref_reads_manifests() -> None:
    cm = {**manifest("ConfigMap", "web"), "metadata": {"name": "web", "namespace": "shop"}}
    assert ObjectRef.of(cm) == ObjectRef("v1", "ConfigMap", "shop", "web")
    assert str(ObjectRef.of(cm)) == "ConfigMap shop/web"
    assert str(ObjectRef.of(manifest("Namespace", "shop"))) == "Namespace shop"


def test_stale_entries_are_those_the_new_revision_dropped() -> None:
    previous = [
        AppliedRef("apps/v1", "Deployment", "shop", "web", uid="1"),
        AppliedRef("v1", "ConfigMap", "shop", "web-config", uid="2"),
        AppliedRef("autoscaling/v2beta2", "HorizontalPodAutoscaler", "shop", "web", uid="3"),
        AppliedRef("v1", "Service", "shop", "web-canary", uid="4"),
        AppliedRef("rbac.authorization.k8s.io/v1", "ClusterRole", None, "web", uid="5"),
    ]
    current = [
        AppliedRef("apps/v1", "Deployment", "shop", "web", uid="1"),
        # Re-created by someone since: same object as far as the release is concerned.
        AppliedRef("v1", "ConfigMap", "shop", "web-config", uid="22"),
        # Same group, newer version: the same object, which must survive the upgrade.
        AppliedRef("autoscaling/v2", "HorizontalPodAutoscaler", "shop", "web", uid="3"),
        # Same name, other namespace: a different object.
        AppliedRef("v1", "Service", "other", "web-canary", uid="6"),
    ]
    assert [ref.uid for ref in stale(previous, current)] == ["4", "5"]
    assert stale(previous, previous) == []
    assert stale([], current) == []
