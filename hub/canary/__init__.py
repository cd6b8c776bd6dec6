"""The canary of one workload, as kruise-rollout runs it, computed as objects to apply.

kruise-rollout runs canaries from a controller inside the cluster; Flotilla runs them from
the hub, so every move has to be an object the hub can server-side apply (or delete) and a
condition it can wait for. This module computes those objects and nothing else: no I/O, no
asyncio, no Kubernetes client, no clock. The engine persists a `CanaryState`, asks for the
`Phase`s of its stage, runs them in order, and calls `advance`. Every object is a pure
function of the manifests and the state, so running a phase twice (after a crash, on
resume) applies the same objects again and changes nothing.

What kruise-rollout does, and so what happens here, for a Deployment (canary style, with an
extra workload):

- the stable Deployment gets the new spec with `spec.paused: true`: it does not roll, and
  its pods keep running the old template for the whole canary;
- a canary Deployment `<name>-canary` runs the new template with ceil(weight% x replicas)
  pods. Its selector and pods carry `flotilla.dev/canary`, so its selector never takes
  stable pods; the stable Deployment's selector is immutable and does match canary pods,
  but ReplicaSets only adopt pods of their own `pod-template-hash`, so it leaves them be;
- the stable Service's selector is pinned to the stable ReplicaSet's `pod-template-hash`
  (Service selectors cannot say "without label X"), and a canary Service `<svc>-canary`
  selects the canary label: the two Services never share a pod;
- nginx: a canary Ingress `<ingress>-canary` copies the rules that reach the stable
  Service, points them at the canary Service and carries ingress-nginx's `canary`,
  `canary-weight` (and `canary-by-header[-value|-pattern]`, `canary-by-cookie`)
  annotations; Gateway API: the HTTPRoute's rules get weighted backendRefs, and header
  matches become extra rules that send matching requests to the canary Service.

Finalising follows kruise's order on success: restore the stable Service's selector, send
all traffic back to it, remove the canary Service, release the stable Deployment, remove
the canary Deployment. The selector is restored *before* the stable Deployment rolls
because a Service pinned to the old ReplicaSet would lose every endpoint as the rollout
scales that ReplicaSet to zero; unpinned, it selects old, new and canary pods alike, all
of which may serve by then. A rollback first routes all traffic to the (pinned) stable
pods, then re-applies the previous spec unpaused (its template is what the stable pods run,
so none restarts), removes the canary pods, and only then unpins the Service, which would
otherwise select canary pods again.

A StatefulSet has no extra workload: `updateStrategy.rollingUpdate.partition` keeps the
lowest ordinals on the old template and updates the rest. Its traffic is split by pods
only: no canary Service or route is made, a step's weight only sizes the partition, and a
step with header matches is refused (nothing could honour it).
"""

from hub.canary.objects import (
    CANARY_LABEL,
    CANARY_OF,
    POD_TEMPLATE_HASH,
    SERVICE_NAME_MAX,
    WORKLOAD_KINDS,
    canary_ingress,
    canary_name,
    canary_replicas,
    stable_pod_template_hash,
    template_changed,
)
from hub.canary.plan import CanaryPlan
from hub.canary.readiness import CanaryStatus
from hub.canary.state import CanaryError, CanaryState, Event, Phase, Wait, advance
from hub.model.phases import Stage

__all__ = [
    "CANARY_LABEL",
    "CANARY_OF",
    "POD_TEMPLATE_HASH",
    "SERVICE_NAME_MAX",
    "WORKLOAD_KINDS",
    "CanaryError",
    "CanaryPlan",
    "CanaryState",
    "CanaryStatus",
    "Event",
    "Phase",
    "Stage",
    "Wait",
    "advance",
    "canary_ingress",
    "canary_name",
    "canary_replicas",
    "stable_pod_template_hash",
    "template_changed",
]
