"""The Application file: KubeVela's `core.oam.dev/v1beta1` format, read strictly.

Users bring files written for KubeVela, so the field names are KubeVela's (and, for the
`kruise-rollout` trait, both the KubeVela trait's and kruise's own Rollout names). What
Flotilla cannot honour is refused, never dropped: an unknown field, type or policy, a wrong
type or value, all come back at once, one line per problem, each naming its path:

    app.yaml: spec.components[0].traits[0].properties.canary.steps[1].weight: must be 1..100

Supported: components `helm` (HTTP repository, OCI registry or a local directory) and
`k8s-objects`; the `kruise-rollout` trait; policies `topology`, `override` and
`apply-once`; workflow steps `deploy`, `suspend` and `check-metrics` (Prometheus), in
`StepByStep` or `DAG` mode.
Additions to KubeVela: `repoType: local`; `clusters`/`clusterLabelSelector` on an override
policy to apply it to some clusters only; `canary.analysis` on the `kruise-rollout` trait
(Prometheus metrics that gate each pause of a canary, counted as Argo Rollouts counts); and
`interval` on a `check-metrics` step, whose query may be measured on each cluster of the
deploy step it follows.

What placement needs is handed over as plain data (`Application.to_placement`), so
`placement/` never sees these models.
"""

from hub.format.analysis import (
    CANARY_PLACEHOLDERS,
    STEP_PLACEHOLDERS,
    CanaryAnalysis,
    CheckMetricsProperties,
    Condition,
    MetricCheck,
    MissingPlaceholder,
    cluster_values,
    expand,
    per_cluster,
    placeholders,
)
from hub.format.application import API_VERSION, PUBLISH_VERSION, Application
from hub.format.applyonce import ApplyOnce, keep_live
from hub.format.components import (
    HelmComponent,
    K8sObjectsComponent,
    component_properties,
    trait_properties,
)
from hub.format.loading import SpecError, json_schema, load_application
from hub.format.traits import (
    ROLLOUT_TRAIT,
    Canary,
    CanaryStep,
    KruiseRolloutProperties,
    RouteMatch,
)
from hub.format.types import duration_seconds
from hub.format.workflow import (
    CheckMetricsStep,
    DeployStep,
    SuspendStep,
    deploy_step_before,
    deploy_steps_before,
)

__all__ = [
    "API_VERSION",
    "CANARY_PLACEHOLDERS",
    "PUBLISH_VERSION",
    "ROLLOUT_TRAIT",
    "STEP_PLACEHOLDERS",
    "Application",
    "ApplyOnce",
    "Canary",
    "CanaryAnalysis",
    "CanaryStep",
    "CheckMetricsProperties",
    "CheckMetricsStep",
    "Condition",
    "DeployStep",
    "HelmComponent",
    "K8sObjectsComponent",
    "KruiseRolloutProperties",
    "MetricCheck",
    "MissingPlaceholder",
    "RouteMatch",
    "SpecError",
    "SuspendStep",
    "cluster_values",
    "component_properties",
    "deploy_step_before",
    "deploy_steps_before",
    "duration_seconds",
    "expand",
    "json_schema",
    "keep_live",
    "load_application",
    "per_cluster",
    "placeholders",
    "trait_properties",
]
