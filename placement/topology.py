"""Topology policies: which member clusters an environment is, with KubeVela's semantics.

`clusters` names clusters explicitly and wins over any selector; every name must be a
registered cluster, since a typo would otherwise shrink a production rollout silently. A
`clusterLabelSelector` that matches nothing is an error unless `allowEmpty` says an empty
environment is expected. `namespace` overrides where the environment's releases go.

KubeVela falls back to its own control-plane cluster, `local`, when a topology names no
cluster (and a deploy step names no topology). Flotilla's hub is not a cluster, so the member
registered under the name `local` plays that part; without one, that fallback is refused
with what to do about it (`local_cluster`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from placement.errors import PathPart, PlacementError, Problem
from placement.names import DnsLabel
from placement.selectors import LabelSelector
from placement.strict import StrictModel

LOCAL_CLUSTER = "local"
"""KubeVela's name for its hub cluster: where it deploys what no topology places elsewhere."""
JOIN_LOCAL = f"join one under that name (flotilla cluster join KUBECONFIG --name {LOCAL_CLUSTER})"

# A message listing the registered clusters shows this many: enough to spot a typo.
CLUSTERS_SHOWN = 10


@dataclass(frozen=True)
class ClusterInfo:
    """A registered member cluster as placement sees it: a name and its labels."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


class Topology(StrictModel):
    clusters: list[str] | None = None
    cluster_label_selector: LabelSelector | None = None
    cluster_selector: LabelSelector | None = None
    """KubeVela's deprecated name for `clusterLabelSelector`, still accepted by KubeVela."""
    namespace: DnsLabel | None = None
    allow_empty: bool = False

    @model_validator(mode="after")
    def _names_clusters(self) -> Self:
        if self.cluster_label_selector is not None and self.cluster_selector is not None:
            raise PydanticCustomError(
                "topology",
                "clusterSelector is the deprecated name of clusterLabelSelector: set only one",
            )
        if self.clusters is not None and not self.clusters:
            raise PydanticCustomError("topology", "clusters is empty: name at least one cluster")
        if self.clusters is not None and len(set(self.clusters)) < len(self.clusters):
            raise PydanticCustomError("topology", "clusters names a cluster twice")
        return self

    @property
    def selector(self) -> LabelSelector | None:
        if self.cluster_label_selector is not None:
            return self.cluster_label_selector
        return self.cluster_selector

    def select(self, name: str, registered: Mapping[str, ClusterInfo]) -> list[ClusterInfo]:
        """The clusters this topology (called `name` in messages) places on, in a stable order.

        Explicit clusters keep the order they are listed in; selected ones are sorted by name.
        Neither: KubeVela's `local` cluster. Problems' paths start at the policy
        (`("policies", name, "properties", ...)`); the hub turns the name into its index.
        """
        selector = self.selector
        at: tuple[PathPart, ...] = ("policies", name, "properties")
        if self.clusters is not None:
            check_registered(f"topology {name!r}", self.clusters, registered, (*at, "clusters"))
            return [registered[c] for c in self.clusters]
        if selector is None:
            fallback = f"topology {name!r} names no cluster, so it means {LOCAL_CLUSTER!r}"
            return [local_cluster(fallback, registered, at, "or name clusters")]
        chosen = [
            registered[c] for c in sorted(registered) if selector.matches(registered[c].labels)
        ]
        if not chosen and not self.allow_empty:
            raise PlacementError(
                f"topology {name!r}: no registered cluster matches {selector} "
                "(set allowEmpty: true if an empty environment is expected)"
            )
        return chosen


def local_cluster(
    why: str, registered: Mapping[str, ClusterInfo], at: tuple[PathPart, ...], instead: str
) -> ClusterInfo:
    """The member playing KubeVela's `local` cluster, which `why` falls back to; refused,
    at `at`, with what to do (join one, or `instead`), when none is registered as `local`."""
    if LOCAL_CLUSTER not in registered:
        raise PlacementError(
            [
                Problem(
                    f"{why}, but no cluster is registered as {LOCAL_CLUSTER!r} (KubeVela's hub "
                    f"cluster): {JOIN_LOCAL} {instead}",
                    at,
                )
            ]
        )
    return registered[LOCAL_CLUSTER]


def check_registered(
    owner: str,
    names: Iterable[str],
    registered: Mapping[str, Any],
    at: tuple[PathPart, ...] = (),
) -> None:
    """Refuse names that are not registered clusters, naming `owner` (a policy) and them;
    `at` is the path of the list of names. A missing `local` says how to register one."""
    missing = [repr(name) for name in names if name not in registered]
    if missing:
        known = [repr(name) for name in sorted(registered)[:CLUSTERS_SHOWN]]
        if len(registered) > CLUSTERS_SHOWN:
            known.append(f"and {len(registered) - CLUSTERS_SHOWN} more")
        message = (
            f"{owner}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a "
            f"registered cluster (registered: {', '.join(known) or 'none'})"
        )
        if repr(LOCAL_CLUSTER) in missing:
            message += f"; {LOCAL_CLUSTER!r} is KubeVela's hub cluster: {JOIN_LOCAL}"
        raise PlacementError([Problem(message, at)])
