"""Taking over what another tool put on a cluster: the fields of a first deploy's objects
that another field manager owns (`helm`, `kubectl-client-side-apply`, ...).

A deploy applies with `force`, so it takes every field it sets, whoever owned it. That is
right for a release Flotilla already deployed (the keeper heals drift the same way), and
wrong, unasked, for a release that `helm install` or `kubectl apply` put there: the user
would not learn that Flotilla now fights (or silently replaces) the tool that managed it.
So for each target without an inventory on its cluster, `plan` and `up` ask the cluster
with a server-side apply dry run *without* force, whose 409 names each field another
manager owns with a different value. Fields with the same value are shared without a
conflict: taking those over changes nothing.

A cluster that cannot be asked now (its prober says it is unreachable, or it does not
answer within `CHECK_TIMEOUT`) is not checked: `up` does not wait for it, and its first
deploy applies with force, as every deploy does.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from clusters.apply import Owned, owned_elsewhere
from clusters.errors import ClusterError
from hub.fleet.objects import labelled
from hub.fleet.registry import Registry
from hub.model.views import TAKE_OVER
from hub.service.planner import Inventory, PlannedTarget

log = logging.getLogger(__name__)

# How long one target's check may take: a member that has just stopped answering (and that
# its prober has not marked yet) must not hold `up` for its client's retries.
CHECK_TIMEOUT = 5.0


@dataclass(frozen=True)
class Takeover:
    """An object of a first deploy whose fields another manager owns."""

    cluster: str
    component: str
    owned: Owned

    @property
    def line(self) -> str:
        """`prod-eu: Deployment demo/web: spec.replicas owned by helm; run up ...`"""
        return f"{self.cluster}: {self.owned}; {TAKE_OVER}"


async def takeovers(
    app: str,
    planned: Sequence[PlannedTarget],
    inventory: Inventory,
    registry: Registry,
    *,
    revision: int,
) -> list[Takeover]:
    """The takeovers of every first deploy (a target with no inventory on its cluster), in
    plan order; `revision` is the number the deploy would label the objects with."""
    reachable = {c.name for c in registry.clusters() if c.health != "Unreachable"}
    first = [
        p
        for p in planned
        if p.error is None
        and (p.target.cluster, p.target.component) not in inventory
        and p.target.cluster in reachable
    ]
    found = await asyncio.gather(*(_target(app, p, registry, revision) for p in first))
    return [takeover for target in found for takeover in target]


async def _target(
    app: str, planned: PlannedTarget, registry: Registry, revision: int
) -> list[Takeover]:
    target = planned.target
    objects = labelled(copy.deepcopy(planned.objects), app, target.component, revision)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            client = await registry.client(target.cluster)
            owned = await owned_elsewhere(client, objects, default_namespace=target.namespace)
    except (ClusterError, ValueError, TimeoutError) as e:
        # Not checked: the deploy reports whatever this was, on its target.
        log.debug("ownership of %s on %s not checked: %s", target.component, target.cluster, e)
        return []
    return [Takeover(target.cluster, target.component, o) for o in owned]
