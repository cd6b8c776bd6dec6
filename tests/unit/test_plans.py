"""`flotilla plan -o json`: the exact values document, and provenance by JSON Pointer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusters.apply import Owned
from clusters.resources import ObjectRef
from hub.format import load_application
from hub.service.ownership import Takeover
from hub.service.planner import PlannedTarget
from hub.service.plans import plan_view
from placement.targets import resolve
from placement.topology import ClusterInfo
from placement.values import json_pointer
from tests.shapes import assert_shape

APP = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata: {name: web}
spec:
  components:
    - name: web
      type: helm
      properties:
        repoType: local
        url: ./charts
        chart: web
        values:
          podAnnotations: {prometheus.io/scrape: "true"}
          image: {tag: "${cluster.name}-build"}
  policies:
    - name: prod
      type: topology
      properties: {clusterLabelSelector: {env: prod}}
    - name: no-limits
      type: override
      properties:
        components:
          - name: web
            properties:
              values:
                resources: {limits: null}
                replicaCount: 3
"""
DEFAULTS = {"replicaCount": 1, "resources": {"limits": {"cpu": "1"}}, "podAnnotations": {}}


def _plan(explain: str | None = None) -> Any:
    app = load_application(APP, "web.yaml")
    [target] = resolve(app.to_placement(), [ClusterInfo("eu", {"env": "prod"})], {"web": DEFAULTS})
    return plan_view(app, [PlannedTarget(target, Path())], explain)


def test_values_are_the_document_helm_receives() -> None:
    view = _plan()
    assert_shape(view, "plan")
    [target] = view["steps"][0]["targets"]
    assert target["values"] == {
        "replicaCount": 3,
        "resources": {},  # emptied by a null: visible, not dropped
        "podAnnotations": {"prometheus.io/scrape": "true"},
        "image": {"tag": "eu-build"},
    }
    assert target["explain"] is None


def test_provenance_is_keyed_by_json_pointer_and_keeps_deletions() -> None:
    [target] = _plan()["steps"][0]["targets"]
    assert target["provenance"] == {
        # as Helm receives it: the placeholder filled in for this cluster
        "/image/tag": {"from": "component web", "value": "eu-build", "deleted": False},
        "/podAnnotations/prometheus.io~1scrape": {
            "from": "component web",
            "value": "true",
            "deleted": False,
        },
        "/replicaCount": {"from": "policy no-limits", "value": 3, "deleted": False},
        # the null itself, and the chart's leaf it took away
        "/resources/limits": {"from": "policy no-limits", "value": None, "deleted": True},
        "/resources/limits/cpu": {"from": "policy no-limits", "value": None, "deleted": True},
    }


def test_explain_names_every_layer_of_a_key_with_a_dot() -> None:
    [target] = _plan(r"podAnnotations.prometheus\.io/scrape")["steps"][0]["targets"]
    assert target["explain"] == {
        "/podAnnotations/prometheus.io~1scrape": {
            "layers": [{"layer": "component web", "value": "true", "deleted": False}],
            "winner": "component web",
        }
    }


def test_json_pointer_escapes_tilde_and_slash() -> None:
    assert json_pointer(("a/b", "c~d", "e.f")) == "/a~1b/c~0d/e.f"


def test_what_a_first_deploy_takes_over_is_listed_on_its_target() -> None:
    app = load_application(APP, "web.yaml")
    [target] = resolve(app.to_placement(), [ClusterInfo("eu", {"env": "prod"})], {"web": DEFAULTS})
    owned = Owned(
        ObjectRef("apps/v1", "Deployment", "default", "web"), {"helm": ("spec.replicas",)}
    )
    view = plan_view(app, [PlannedTarget(target, Path())], takeovers=[Takeover("eu", "web", owned)])
    assert_shape(view, "plan")
    [planned] = view["steps"][0]["targets"]
    assert planned["takeOver"] == ["Deployment default/web: spec.replicas owned by helm"]
    assert Takeover("eu", "web", owned).line == (
        "eu: Deployment default/web: spec.replicas owned by helm; "
        "run up --take-ownership to take them over"
    )
