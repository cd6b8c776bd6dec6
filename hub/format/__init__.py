"""The Application file: KubeVela's `core.oam.dev/v1beta1` format, read strictly.

Users bring files written for KubeVela, so the field names are KubeVela's (and, for the
`kruise-rollout` trait, both the KubeVela trait's and kruise's own Rollout names). What
Flotilla cannot honour is refused, never dropped: an unknown field, type or policy, a wrong
type or value, all come back at once, one line per problem, each naming its path:

    app.yaml: spec.components[0].traits[0].properties.canary.steps[1].weight: must be 1..100

Supported: components `helm` (HTTP repository, OCI registry or a local directory) and
`k8s-objects`; the `kruise-rollout` trait; policies `topology` and `override`; workflow steps
`deploy` and `suspend`, in `StepByStep` or `DAG` mode. Two additions to KubeVela: `repoType:
local`, and `clusters`/`clusterLabelSelector` on an override policy to apply it to some
clusters only.

What placement needs is handed over as plain data (`Application.to_placement`), so
`placement/` never sees these models.
"""

from hub.format.application import API_VERSION, PUBLISH_VERSION, Application
from hub.format.components import (
    HelmComponent,
    K8sObjectsComponent,
    component_properties,
    trait_properties,
)
from hub.format.loading import SpecError, json_schema, load_application
from hub.format.traits import (
    Canary,
    CanaryStep,
    KruiseRolloutProperties,
    RouteMatch,
)
from hub.format.types import duration_seconds
from hub.format.workflow import DeployStep, SuspendStep

__all__ = [
    "API_VERSION",
    "PUBLISH_VERSION",
    "Application",
    "Canary",
    "CanaryStep",
    "DeployStep",
    "HelmComponent",
    "K8sObjectsComponent",
    "KruiseRolloutProperties",
    "RouteMatch",
    "SpecError",
    "SuspendStep",
    "component_properties",
    "duration_seconds",
    "json_schema",
    "load_application",
    "trait_properties",
]
