"""What apply sends, and how it copes with refusals, against a scripted API server."""

from __future__ import annotations

from clusters.apply import AppliedRef, apply
from tests.unit.fakeapi import FakeApi, serving


async def test_an_unpatchable_namespace_is_assumed_to_exist() -> None:
    fake = FakeApi()
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}
    async with serving(fake) as api:
        refs = await apply(api, [config], default_namespace="ns")
    assert refs == [AppliedRef("v1", "ConfigMap", "ns", "settings", uid="uid-settings")]
    assert [kind for kind, _ in fake.seen] == ["discovery", "patch namespace", "patch"]
    assert fake.seen[-1][1] == {"fieldManager": "flotilla", "force": "true"}
