"""Server-side apply, delete and discovery against a real API server."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.config import new_client_from_config

from clusters.apply import AppliedRef, apply, delete, get
from clusters.errors import Invalid, NotFound
from clusters.resources import ObjectRef, ResourceClient
from e2e.clusters import ClusterInfo
from tests.manifests import crd

pytestmark = pytest.mark.cluster

DEADLINE = 60.0


@pytest.fixture
async def api(e2e_clusters: list[ClusterInfo]) -> AsyncIterator[ApiClient]:
    client = await new_client_from_config(config_file=str(e2e_clusters[0].kubeconfig))
    try:
        yield client
    finally:
        await client.close()


async def eventually(check: Callable[[], Any], what: str) -> None:
    """Poll `check` (a coroutine function) until it returns truthy, or fail after DEADLINE."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while not await check():
        assert loop.time() < deadline, f"not within {DEADLINE:.0f}s: {what}"
        await asyncio.sleep(0.2)


def web_release() -> list[dict[str, Any]]:
    labels = {"app": "web"}
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config", "labels": labels},
            "data": {"greeting": "hello"},
        },
    ]


async def test_apply_creates_objects_owned_by_flotilla(api: ApiClient, namespace: str) -> None:
    refs = await apply(api, web_release(), default_namespace=namespace)

    assert [(r.kind, r.namespace, r.name) for r in refs] == [
        ("Deployment", namespace, "web"),
        ("Service", namespace, "web"),
        ("ConfigMap", namespace, "web-config"),
    ]
    for ref in refs:
        live = await get(api, ref)
        assert live is not None
        assert live["metadata"]["uid"] == ref.uid
        managers = {(m["manager"], m["operation"]) for m in live["metadata"]["managedFields"]}
        assert ("flotilla", "Apply") in managers


async def test_reapply_is_a_noop(api: ApiClient, namespace: str) -> None:
    first = await apply(api, web_release(), default_namespace=namespace)
    before = [await footprint(api, ref) for ref in first]

    again = await apply(api, web_release(), default_namespace=namespace)
    after = [await footprint(api, ref) for ref in again]

    # The same objects at the same generation; a Deployment's resourceVersion moves with
    # its controller's status writes, so it is no measure of "nothing changed".
    assert [(r.kind, r.name, r.uid, r.generation) for r in again] == [
        (r.kind, r.name, r.uid, r.generation) for r in first
    ]
    assert after == before


async def footprint(api: ApiClient, ref: AppliedRef) -> tuple[Any, ...]:
    """What an apply that changed nothing must leave alone. A Deployment's
    resourceVersion also moves with its controller's status writes, so for objects
    with a generation we compare that and our own managedFields entry instead."""
    live = await get(api, ref)
    assert live is not None
    metadata = live["metadata"]
    ours = [m for m in metadata["managedFields"] if m["manager"] == "flotilla"]
    if "generation" in metadata:
        return metadata["generation"], ours
    return metadata["resourceVersion"], ours


async def test_a_changed_manifest_updates_the_object(api: ApiClient, namespace: str) -> None:
    release = web_release()
    await apply(api, release, default_namespace=namespace)
    release[2]["data"] = {"greeting": "hi"}
    [ref] = await apply(api, release[2:], default_namespace=namespace)
    assert ((await get(api, ref)) or {})["data"] == {"greeting": "hi"}


async def test_delete_is_idempotent(api: ApiClient, namespace: str) -> None:
    refs = await apply(api, web_release(), default_namespace=namespace)

    await delete(api, refs)

    async def all_gone() -> bool:
        return all([await get(api, ref) is None for ref in refs])

    await eventually(all_gone, "deleted objects disappear")
    await delete(api, refs)
    await delete(api, [ObjectRef("v1", "ConfigMap", namespace, "never-existed")])


async def test_missing_namespaces_are_created_but_not_inventoried(
    api: ApiClient, namespace: str
) -> None:
    elsewhere = f"{namespace}-extra"
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "elsewhere", "namespace": elsewhere},
    }
    try:
        refs = await apply(api, [config], default_namespace=namespace)
        assert [r.namespace for r in refs] == [elsewhere]
        assert await get(api, ObjectRef("v1", "Namespace", None, elsewhere)) is not None
    finally:
        await delete(api, [ObjectRef("v1", "Namespace", None, elsewhere)])


async def test_a_namespace_deleted_since_an_earlier_apply_is_made_again(
    api: ApiClient, namespace: str
) -> None:
    """An apply remembers the namespaces it made sure of and skips that round trip next
    time; one deleted meanwhile is made again, not reported as the object's NotFound."""
    elsewhere = f"{namespace}-gone"
    where = ObjectRef("v1", "Namespace", None, elsewhere)
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "again", "namespace": elsewhere},
    }
    try:
        await apply(api, [config], default_namespace=namespace)
        await delete(api, [where])

        async def gone() -> bool:
            return await get(api, where) is None

        await eventually(gone, f"namespace {elsewhere} deleted")
        [ref] = await apply(api, [config], default_namespace=namespace)

        assert ref.namespace == elsewhere
        assert await get(api, ObjectRef("v1", "ConfigMap", elsewhere, "again")) is not None
    finally:
        await delete(api, [where])


async def test_cluster_scoped_objects_drop_a_templated_namespace(
    api: ApiClient, namespace: str
) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": f"{namespace}-reader", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
    }
    [ref] = await apply(api, [role], default_namespace=namespace)
    try:
        assert ref.namespace is None
        assert await get(api, ref) is not None
    finally:
        await delete(api, [ref])


async def test_namespace_scoped_credentials_apply_into_their_namespace(
    e2e_clusters: list[ClusterInfo],
) -> None:
    cluster = e2e_clusters[0]
    name = f"scoped-{secrets.token_hex(4)}"
    client = await new_client_from_config(config_file=str(cluster.restricted_kubeconfig))
    try:
        config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        [ref] = await apply(client, [config], default_namespace=cluster.restricted_namespace)
        assert ref.namespace == cluster.restricted_namespace
        await delete(client, [ref])
    finally:
        await client.close()


async def test_errors_name_the_object_and_carry_the_api_message(
    e2e_clusters: list[ClusterInfo], namespace: str
) -> None:
    cluster = e2e_clusters[0]
    bad = web_release()[0]
    bad["metadata"]["name"] = "bad"
    bad["spec"]["replicas"] = -1
    client = await new_client_from_config(config_file=str(cluster.token_kubeconfig))
    try:
        with pytest.raises(Invalid) as caught:
            await apply(client, [bad], default_namespace=namespace)
    finally:
        await client.close()
    message = str(caught.value)
    # One line from the Status' causes (issue 11): the object, the field, the reason.
    assert message == (
        f"Deployment {namespace}/bad: spec.replicas: must be greater than or equal to 0"
    )
    assert cluster.admin_token not in message


async def test_an_unknown_kind_is_reported_before_anything_is_applied(
    api: ApiClient, namespace: str
) -> None:
    gizmo = {"apiVersion": "nowhere.example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}}
    config = web_release()[2]
    with pytest.raises(NotFound, match=r"apply Gizmo g: Gizmo \(nowhere.example.com/v1\)"):
        await apply(api, [config, gizmo], default_namespace=namespace)
    assert await get(api, ObjectRef("v1", "ConfigMap", namespace, "web-config")) is None


async def test_discovery_finds_a_crd_installed_after_it_started(
    api: ApiClient, namespace: str
) -> None:
    group = f"t{secrets.token_hex(4)}.flotilla.test"
    resources = ResourceClient(api)
    assert (await resources.resolve("apps/v1", "Deployment")).plural == "deployments"
    with pytest.raises(NotFound):
        await resources.resolve(f"{group}/v1", "Widget")

    [applied] = await apply(api, [crd(group)], default_namespace=namespace)
    try:

        async def served() -> bool:
            try:
                widget = await resources.resolve(f"{group}/v1", "Widget")
            except NotFound:
                return False
            return widget.plural == "widgets" and widget.namespaced

        await eventually(served, "the new kind is discovered")
    finally:
        await delete(api, [applied])


async def test_a_crd_and_its_resources_apply_in_one_call(api: ApiClient, namespace: str) -> None:
    group = f"t{secrets.token_hex(4)}.flotilla.test"
    widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}}
    refs: list[AppliedRef] = []
    try:
        refs = await apply(api, [widget, crd(group)], default_namespace=namespace)
        assert [(r.kind, r.namespace) for r in refs] == [
            ("Widget", namespace),
            ("CustomResourceDefinition", None),
        ]
        assert await get(api, refs[0]) is not None
    finally:
        await delete(api, refs)
