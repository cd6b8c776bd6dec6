"""An API server's refusal of an object in one line: kind namespace/name, field path, reason.

The Status documents are what the real kube-apiserver of e2e/ answered (captured from
server-side applies: an immutable Job template, a Service's clusterIP, a Deployment with
three invalid fields, and a field another manager owns); the rejected values they embed
(a whole pod template, for the Job) must never reach the line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from clusters.apply import Owned, apply, owned_elsewhere
from clusters.errors import Cause, Conflict, Invalid, causes_of, refusal
from clusters.resources import ObjectRef
from tests.unit.fakeapi import FakeApi, serving

STATUSES: dict[str, Any] = json.loads(
    (Path(__file__).parent / "refusals" / "statuses.json").read_text()
)
CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web"}, "data": {"a": "b"}}


@pytest.mark.parametrize(
    ("status", "line"),
    [
        ("job_immutable", "Job demo/canary-demo-pre-install: spec.template: field is immutable"),
        ("service_cluster_ip", "Service demo/web: spec.clusterIPs[0]: may not change once set"),
        (
            "deployment_several",
            "Deployment demo/web: spec.replicas: must be greater than or equal to 0; "
            "spec.template.metadata.labels: `selector` does not match template `labels`; "
            "spec.template.spec.containers[0].image: Required value",
        ),
        (
            "configmap_conflict",
            'ConfigMap demo/web: data.GREETING: conflict with "kubectl-client-side-apply" using v1',
        ),
    ],
)
def test_a_refusal_is_one_line_of_fields_and_reasons(status: str, line: str) -> None:
    document = STATUSES[status]
    assert refusal(line.split(":")[0], causes_of(document)) == line


def test_the_rejected_value_is_left_out_however_it_is_written() -> None:
    assert Cause("spec.a", 'Invalid value: "a: b": must not contain ": "').why == (
        'must not contain ": "'
    )
    assert Cause("spec.b", 'Unsupported value: "X": supported values: "A", "B"').why == (
        'supported values: "A", "B"'
    )
    assert Cause("spec.c", 'Invalid value: core.PodSpec{Name:"x"}').why == "Invalid value"
    assert Cause("spec.d", "Forbidden: may not be set").why == "may not be set"
    assert Cause("spec.e", "something else entirely").why == "something else entirely"


def test_a_conflict_names_the_manager_of_each_field() -> None:
    causes = causes_of(STATUSES["configmap_conflict"])
    assert [c.manager for c in causes] == ["kubectl-client-side-apply"]
    assert [c.manager for c in causes_of(STATUSES["job_immutable"])] == [None]
    owned = Owned.of(
        ObjectRef("apps/v1", "Deployment", "demo", "web"),
        [
            Cause(".spec.replicas", 'conflict with "helm" using apps/v1', "FieldManagerConflict"),
            Cause(
                '.spec.template.spec.containers[name="web"].image',
                'conflict with "helm" using apps/v1',
                "FieldManagerConflict",
            ),
            Cause(
                ".spec.template.metadata.labels.x",
                'conflict with "helm" using apps/v1',
                "FieldManagerConflict",
            ),
            Cause(
                ".metadata.labels.team",
                'conflict with "kubectl" using apps/v1',
                "FieldManagerConflict",
            ),
        ],
    )
    assert str(owned) == (
        "Deployment demo/web: spec.replicas, spec.template owned by helm; "
        "metadata.labels owned by kubectl"
    )


class RefusingApi(FakeApi):
    """Answers every apply of a ConfigMap with one recorded Status."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__()
        self.status = status

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_get("/api/v1/namespaces/{name}", self._namespace)
        return app

    async def _namespace(self, request: web.Request) -> web.StreamResponse:
        """A dry run asks whether the namespace exists: it does."""
        name = request.match_info["name"]
        return web.json_response({"kind": "Namespace", "metadata": {"name": name}})

    async def _patch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(("patch", dict(request.query)))
        return web.json_response(self.status, status=self.status["code"])


async def test_apply_raises_the_one_line_and_logs_the_whole_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    status = STATUSES["job_immutable"]
    caplog.set_level(logging.DEBUG, logger="clusters.apply")
    async with serving(RefusingApi(status)) as api:
        with pytest.raises(Invalid) as raised:
            await apply(api, [CONFIG], default_namespace="ns")
    assert str(raised.value) == "ConfigMap ns/web: spec.template: field is immutable"
    assert raised.value.status == 422
    assert status["message"] in caplog.text


async def test_owned_elsewhere_collects_conflicts_instead_of_failing() -> None:
    fake = RefusingApi(STATUSES["configmap_conflict"])
    async with serving(fake) as api:
        [owned] = await owned_elsewhere(api, [CONFIG], default_namespace="ns")
        with pytest.raises(Conflict) as raised:
            await apply(api, [CONFIG], default_namespace="ns", force=False)
    assert str(owned) == "ConfigMap ns/web: data.GREETING owned by kubectl-client-side-apply"
    dry_run, _ = [query for kind, query in fake.seen if kind == "patch"]
    assert dry_run == {"fieldManager": "flotilla", "force": "false", "dryRun": "All"}
    assert str(raised.value).startswith("ConfigMap ns/web: data.GREETING: conflict with")
