"""Topology policies: which member clusters an environment is, with KubeVela's semantics.

`clusters` names clusters explicitly and wins over any selector; every name must be a
registered cluster, since a typo would otherwise shrink a production rollout silently. A
`clusterLabelSelector` that matches nothing is an error unless `allowEmpty` says an empty
environment is expected. `namespace` overrides where the environment's releases go.

KubeVela falls back to its own control-plane cluster ("local") when a topology names no
cluster; Flotilla's hub is not a cluster, so that case is refused when the file is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from placement.errors import PlacementError
from placement.names import DnsLabel
from placement.selectors import LabelSelector
from placement.strict import StrictModel

NO_LOCAL_CLUSTER = (
    'the hub is not a cluster, so there is no "local" cluster to fall back to as KubeVela does'
)

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
        if self.clusters is None and self.selector is None:
            raise PydanticCustomError(
                "topology",
                "set clusters or clusterLabelSelector ({reason})",
                {"reason": NO_LOCAL_CLUSTER},
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
        """
        selector = self.selector
        if self.clusters is not None or selector is None:  # never neither: see the validator
            named = self.clusters or []
            check_registered(f"topology {name!r}", named, registered)
            return [registered[c] for c in named]
        chosen = [
            registered[c] for c in sorted(registered) if selector.matches(registered[c].labels)
        ]
        if not chosen and not self.allow_empty:
            raise PlacementError(
                f"topology {name!r}: no registered cluster matches {selector} "
                "(set allowEmpty: true if an empty environment is expected)"
            )
        return chosen


def check_registered(owner: str, names: Iterable[str], registered: Mapping[str, Any]) -> None:
    """Refuse names that are not registered clusters, naming `owner` (a policy) and them."""
    missing = [repr(name) for name in names if name not in registered]
    if missing:
        known = [repr(name) for name in sorted(registered)[:CLUSTERS_SHOWN]]
        if len(registered) > CLUSTERS_SHOWN:
            known.append(f"and {len(registered) - CLUSTERS_SHOWN} more")
        raise PlacementError(
            f"{owner}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a "
            f"registered cluster (registered: {', '.join(known) or 'none'})"
        )
