"""Would a server-side apply change the pod template? Judged against live objects shaped
like what the API server returns after our apply: defaults added, quantities in canonical
form, and managedFields of our field manager and of others."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clusters.fields import FIELD_MANAGER, POD_TEMPLATE, changes, covers, owned_fields

Manifest = dict[str, Any]


def manifest(version: str = "1.0.0", **container: Any) -> Manifest:
    """The Deployment as a chart renders it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": version}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": f"shop/web:{version}",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "envFrom": [{"configMapRef": {"name": "web"}}],
                            "resources": {"requests": {"cpu": "0.1", "memory": "64Mi"}},
                            **container,
                        },
                        {"name": "proxy", "image": "envoy:1.30"},
                    ],
                },
            },
        },
    }


OWNED_WEB: Manifest = {
    ".": {},
    "f:name": {},
    "f:image": {},
    "f:envFrom": {},
    "f:ports": {
        'k:{"containerPort":8080,"protocol":"TCP"}': {
            ".": {},
            "f:containerPort": {},
            "f:name": {},
        }
    },
    "f:resources": {"f:requests": {"f:cpu": {}, "f:memory": {}}},
}


def live(env: list[dict[str, str]] | None = None) -> Manifest:
    """`manifest()` (with `env` on the web container) as the API server returns it."""
    obj = manifest(env=env) if env else manifest()
    web, proxy = obj["spec"]["template"]["spec"]["containers"]
    for container in (web, proxy):
        container |= {
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "resources": container.get("resources") or {},
        }
    web["ports"][0]["protocol"] = "TCP"
    web["resources"]["requests"]["cpu"] = "100m"
    obj["spec"]["template"]["metadata"]["creationTimestamp"] = None
    obj["spec"]["template"]["spec"] |= {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    }
    obj["spec"] |= {"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}
    owned_web = copy.deepcopy(OWNED_WEB)
    if env:
        owned_web["f:env"] = {
            f'k:{{"name":"{e["name"]}"}}': {".": {}, "f:name": {}, "f:value": {}} for e in env
        }
    obj["metadata"] |= {
        "uid": "0b5d3c4e",
        "generation": 1,
        "resourceVersion": "4711",
        "managedFields": [
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "subresource": "status",
                "fieldsV1": {"f:status": {"f:replicas": {}}},
            },
            {
                "manager": FIELD_MANAGER,
                "operation": "Apply",
                "fieldsV1": {
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}, "f:version": {}}},
                            "f:spec": {
                                "f:containers": {
                                    'k:{"name":"web"}': owned_web,
                                    'k:{"name":"proxy"}': {".": {}, "f:name": {}, "f:image": {}},
                                }
                            },
                        },
                    }
                },
            },
        ],
    }
    return obj


def edited(obj: Manifest, **container: Any) -> Manifest:
    """`obj` with fields of the web container set."""
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"][0] |= container
    return out


def without(obj: Manifest, field: str) -> Manifest:
    """`obj` without one field of the web container."""
    out = copy.deepcopy(obj)
    del out["spec"]["template"]["spec"]["containers"][0][field]
    return out


def reordered(obj: Manifest) -> Manifest:
    out = copy.deepcopy(obj)
    out["spec"]["template"]["spec"]["containers"].reverse()
    return out


def scaled(obj: Manifest, replicas: int) -> Manifest:
    out = copy.deepcopy(obj)
    out["spec"]["replicas"] = replicas
    return out


DEBUG = [{"name": "LOG_LEVEL", "value": "debug"}]
HTTP = {"name": "http", "containerPort": 8080}


@pytest.mark.parametrize(
    ("before", "after", "changed"),
    [
        pytest.param(live(), manifest(), False, id="the same manifest again"),
        pytest.param(live(), manifest("2.0.0"), True, id="a new image and version label"),
        pytest.param(live(), scaled(manifest(), 9), False, id="a change outside the template"),
        pytest.param(
            live(),
            edited(manifest(), resources={"requests": {"cpu": "100m", "memory": "65536Ki"}}),
            False,
            id="quantities compare by value",
        ),
        pytest.param(
            live(),
            edited(manifest(), resources={"requests": {"cpu": "200m", "memory": "64Mi"}}),
            True,
            id="a quantity that differs",
        ),
        pytest.param(
            live(),
            edited(manifest(), stdin=False, args=[], workingDir=""),
            False,
            id="omitempty: false and empty values equal absent ones",
        ),
        pytest.param(
            live(),
            edited(manifest(), ports=[{**HTTP, "protocol": "TCP"}]),
            False,
            id="a defaulted key field, spelled out",
        ),
        pytest.param(
            live(),
            edited(manifest(), ports=[{**HTTP, "protocol": "UDP"}]),
            True,
            id="a port of another protocol",
        ),
        pytest.param(live(), reordered(manifest()), False, id="containers matched by name"),
        pytest.param(live(), edited(manifest(), env=DEBUG), True, id="an env var added"),
        pytest.param(
            live(DEBUG),
            edited(manifest(), env=[{**DEBUG[0], "value": "info"}]),
            True,
            id="an env var changed",
        ),
        pytest.param(live(DEBUG), manifest(), True, id="an env var we applied, dropped"),
        pytest.param(
            live(), without(manifest(), "envFrom"), True, id="a field we applied, dropped"
        ),
    ],
)
def test_changes(before: Manifest, after: Manifest, changed: bool) -> None:
    assert changes(before, after, at=POD_TEMPLATE) is changed


def test_fields_others_added_are_no_change() -> None:
    before = live()
    before["spec"]["template"]["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"
    }
    assert not changes(before, manifest(), at=POD_TEMPLATE)


def test_only_the_given_managers_fields_can_be_dropped() -> None:
    dropped = without(manifest(), "envFrom")
    assert not changes(live(), dropped, at=POD_TEMPLATE, manager="helm")
    bare = live()
    del bare["metadata"]["managedFields"]
    assert not changes(bare, dropped, at=POD_TEMPLATE)


def test_any_path_to_a_pod_template() -> None:
    def cronjob(obj: Manifest) -> Manifest:
        template = {"metadata": obj["metadata"], "spec": {"template": obj["spec"]["template"]}}
        return {**obj, "kind": "CronJob", "spec": {"jobTemplate": template}}

    at = ("spec", "jobTemplate", "spec", "template")
    before = cronjob(live())
    before["metadata"]["managedFields"][1]["fieldsV1"] = {
        "f:spec": {
            "f:jobTemplate": {
                "f:spec": live()["metadata"]["managedFields"][1]["fieldsV1"]["f:spec"]
            }
        }
    }
    assert not changes(before, cronjob(manifest()), at=at)
    assert changes(before, cronjob(manifest("2.0.0")), at=at)
    assert changes(before, cronjob(without(manifest(), "envFrom")), at=at)


@pytest.mark.parametrize(
    ("before", "after", "covered"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 2}, False),
        (None, {"a": 0, "b": False, "c": "", "d": [], "e": {}}, True),
        (None, {"a": 1}, False),
        ({"a": 1}, {"a": None}, True),
        ({"a": "x"}, {"a": {"b": 1}}, False),
        ({"a": {"b": 1}}, {"a": ["b"]}, False),
        ({"args": ["a", "b"]}, {"args": ["b", "a"]}, False),
        ({"args": ["a", "b"]}, {"args": ["a"]}, False),
        ({"env": [{"name": "A", "value": "1"}, {"name": "B"}]}, {"env": [{"name": "B"}]}, True),
        ({"env": [{"name": "A"}]}, {"env": [{"name": "B"}]}, False),
        ({"env": [{"name": "A"}]}, {"env": ["A"]}, False),
        ({"requests": {"cpu": "500m"}}, {"requests": {"cpu": 0.5}}, True),
        ({"limits": {"memory": "1Gi"}}, {"limits": {"memory": "1024Mi"}}, True),
        ({"overhead": {"cpu": "1"}}, {"overhead": {"cpu": "1001m"}}, False),
        ({"emptyDir": {"sizeLimit": "1Gi"}}, {"emptyDir": {"sizeLimit": "1073741824"}}, True),
        ({"requests": {"gpu": "lots"}}, {"requests": {"gpu": "lots"}}, True),
        ({"requests": {"gpu": "lots"}}, {"requests": {"gpu": "many"}}, False),
        ({"image": "1Gi"}, {"image": "1024Mi"}, False),
    ],
)
def test_covers(before: Any, after: Any, covered: bool) -> None:
    assert covers(before, after) is covered


def test_owned_fields_are_those_of_the_managers_apply_of_the_object() -> None:
    obj = live()
    entries = obj["metadata"]["managedFields"]
    ours = entries[1]["fieldsV1"]
    status_apply = {
        "manager": FIELD_MANAGER,
        "operation": "Apply",
        "subresource": "status",
        "fieldsV1": {"f:status": {}},
    }
    update = {"manager": FIELD_MANAGER, "operation": "Update", "fieldsV1": {"f:spec": {}}}
    obj["metadata"]["managedFields"] = [status_apply, update, *entries]
    assert owned_fields(obj) == ours
    assert owned_fields(obj, "kube-controller-manager") is None
    assert owned_fields({"metadata": {}}) is None
