"""Which rendered objects are Helm hooks, and the order Helm runs them in (hub.charts.hooks)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.charts.hooks import DeletePolicy, HookEvent, Operation, classify


def hook(
    kind: str, name: str, events: str, weight: str | None = None, policy: str | None = None
) -> dict[str, Any]:
    annotations = {"helm.sh/hook": events}
    if weight is not None:
        annotations["helm.sh/hook-weight"] = weight
    if policy is not None:
        annotations["helm.sh/hook-delete-policy"] = policy
    return {
        "apiVersion": "v1",
        "kind": kind,
        "metadata": {"name": name, "annotations": annotations},
    }


def test_objects_without_the_hook_annotation_are_the_release() -> None:
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}}
    job = hook("Job", "migrate", "pre-upgrade")

    split = classify([plain, job])

    assert split.release == [plain]
    assert [h.name for h in split.hooks] == ["migrate"]


@pytest.mark.parametrize(
    ("annotation", "events"),
    [
        ("pre-install", {HookEvent.PRE_INSTALL}),
        ("pre-install,pre-upgrade", {HookEvent.PRE_INSTALL, HookEvent.PRE_UPGRADE}),
        (" Post-Upgrade , post-rollback ", {HookEvent.POST_UPGRADE, HookEvent.POST_ROLLBACK}),
        ("pre-install,crd-install", {HookEvent.PRE_INSTALL}),  # Helm 2's, ignored
        ("nonsense", set()),  # a hook that never runs, and no release object either
    ],
)
def test_hook_events_are_read_as_helm_reads_them(annotation: str, events: set[HookEvent]) -> None:
    (found,) = classify([hook("Job", "j", annotation)]).hooks
    assert found.events == events


@pytest.mark.parametrize(
    ("weight", "expected"), [(None, 0), ("5", 5), (" -3 ", -3), ("heavy", 0), ("1.5", 0)]
)
def test_weight_is_an_integer_or_zero(weight: str | None, expected: int) -> None:
    (found,) = classify([hook("Job", "j", "pre-install", weight=weight)]).hooks
    assert found.weight == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, {DeletePolicy.BEFORE_HOOK_CREATION}),
        ("hook-succeeded", {DeletePolicy.HOOK_SUCCEEDED}),
        (
            "hook-succeeded, hook-failed",
            {DeletePolicy.HOOK_SUCCEEDED, DeletePolicy.HOOK_FAILED},
        ),
        ("unknown", {DeletePolicy.BEFORE_HOOK_CREATION}),
    ],
)
def test_delete_policy_defaults_to_before_hook_creation(
    policy: str | None, expected: set[DeletePolicy]
) -> None:
    (found,) = classify([hook("Job", "j", "pre-install", policy=policy)]).hooks
    assert found.delete_policies == expected


def test_hooks_of_an_event_run_by_weight_then_name_then_kind() -> None:
    split = classify(
        [
            hook("Job", "b", "pre-upgrade", weight="1"),
            hook("Job", "a", "pre-upgrade", weight="1"),
            hook("Job", "z", "pre-upgrade", weight="-5"),
            hook("Job", "same", "pre-upgrade"),
            hook("ConfigMap", "same", "pre-upgrade"),
            hook("Job", "other-event", "post-upgrade", weight="-100"),
        ]
    )

    order = [(h.kind, h.name) for h in split.hooks_for(HookEvent.PRE_UPGRADE)]

    assert order == [
        ("Job", "z"),
        ("ConfigMap", "same"),
        ("Job", "same"),
        ("Job", "a"),
        ("Job", "b"),
    ]
    assert split.hooks_for(HookEvent.PRE_DELETE) == []


def test_a_crd_hook_is_never_deleted() -> None:
    crd = hook("CustomResourceDefinition", "widgets", "pre-install", policy="hook-succeeded")
    job = hook("Job", "j", "pre-install", policy="hook-succeeded")
    found_crd, found_job = classify([crd, job]).hooks
    assert not found_crd.deletes(DeletePolicy.HOOK_SUCCEEDED)
    assert found_job.deletes(DeletePolicy.HOOK_SUCCEEDED)
    assert not found_job.deletes(DeletePolicy.BEFORE_HOOK_CREATION)


@pytest.mark.parametrize(
    ("operation", "before", "after"),
    [
        (Operation.INSTALL, HookEvent.PRE_INSTALL, HookEvent.POST_INSTALL),
        (Operation.UPGRADE, HookEvent.PRE_UPGRADE, HookEvent.POST_UPGRADE),
        (Operation.ROLLBACK, HookEvent.PRE_ROLLBACK, HookEvent.POST_ROLLBACK),
        (Operation.DELETE, HookEvent.PRE_DELETE, HookEvent.POST_DELETE),
    ],
)
def test_each_operation_has_its_pair_of_events(
    operation: Operation, before: HookEvent, after: HookEvent
) -> None:
    assert (operation.before, operation.after) == (before, after)
