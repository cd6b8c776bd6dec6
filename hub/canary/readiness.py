"""How far a workload's new pods have come, read from its live status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --- readiness ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryStatus:
    """How far the new pods of a workload have come, from its live status.

    Works for a canary Deployment, for the stable Deployment once released, and for a
    StatefulSet whose partition leaves `replicas - partition` pods to update. Pods count
    when *available* (ready for `minReadySeconds`), which is what users set to slow a
    canary down.
    """

    desired: int
    """Pods that must run the new template."""
    updated: int
    """Pods that do."""
    available: int
    """Available pods, of either template."""
    replicas: int
    """Pods the workload should have."""
    existing: int
    """Pods it has: a Deployment that still has pods of an older template has more."""
    current: bool
    """The controller has seen the latest spec (`observedGeneration`)."""

    @classmethod
    def of(cls, live: Mapping[str, Any]) -> CanaryStatus:
        spec, status = live.get("spec") or {}, live.get("status") or {}
        replicas = int(spec.get("replicas", 1))
        desired = replicas
        if live.get("kind") == "StatefulSet":
            rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
            desired = max(replicas - int(rolling.get("partition", 0)), 0)
        generation = int(live.get("metadata", {}).get("generation", 0))
        return cls(
            desired=desired,
            updated=int(status.get("updatedReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            replicas=replicas,
            existing=int(status.get("replicas", 0)),
            current=int(status.get("observedGeneration", 0)) >= generation,
        )

    @property
    def ready(self) -> bool:
        """The step may go on: every new pod runs, and every pod is available."""
        return (
            self.current
            and self.updated >= self.desired
            and self.available >= self.replicas
            and self.existing <= self.replicas
        )

    def __str__(self) -> str:
        text = f"{min(self.updated, self.desired)}/{self.desired} new pods, "
        text += f"{self.available}/{self.replicas} available"
        return text if self.current else text + ", the latest spec not yet observed"
