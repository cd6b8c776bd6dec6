"""Override policies: per-environment changes to components, in KubeVela's format.

An override patches the components it matches (by `name`, a glob, and by `type`): its
`properties` merge into the component's, each trait patch merges into the component's trait
of that type (adding it if absent), and `disable: true` removes that trait. `selector`, when
given, limits the deploy step to the components it names.

Beyond KubeVela, an override may name `clusters` or a `clusterLabelSelector` so that it only
applies there: one `prod` environment can still give `region=eu` its own values, without a
topology policy per region.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from placement.selectors import LabelSelector
from placement.strict import StrictModel
from placement.topology import ClusterInfo


class TraitPatch(StrictModel):
    type: str
    properties: dict[str, Any] | None = None
    disable: bool = False

    @model_validator(mode="after")
    def _disable_alone(self) -> Self:
        if self.disable and self.properties is not None:
            raise PydanticCustomError(
                "trait_patch", "disable: true removes the trait, so properties would be ignored"
            )
        return self

    def layer(self) -> dict[str, Any] | None:
        """What this patch merges into the trait; `None` deletes the trait."""
        return None if self.disable else (self.properties or {})


class ComponentPatch(StrictModel):
    name: str | None = None
    """A component name or a glob (`*`, `web-*`); absent matches every component."""
    type: str | None = None
    properties: dict[str, Any] | None = None
    traits: list[TraitPatch] = Field(default_factory=list)

    def matches(self, component_name: str, component_type: str) -> bool:
        return (self.name is None or fnmatchcase(component_name, self.name)) and (
            self.type is None or self.type == component_type
        )


class Override(StrictModel):
    components: list[ComponentPatch] = Field(default_factory=list)
    selector: list[str] | None = None
    clusters: list[str] | None = None
    cluster_label_selector: LabelSelector | None = None

    @model_validator(mode="after")
    def _one_cluster_filter(self) -> Self:
        if self.clusters is not None and self.cluster_label_selector is not None:
            raise PydanticCustomError("override", "set clusters or clusterLabelSelector, not both")
        return self

    def applies_to(self, cluster: ClusterInfo) -> bool:
        if self.clusters is not None:
            return cluster.name in self.clusters
        return self.cluster_label_selector is None or self.cluster_label_selector.matches(
            cluster.labels
        )

    def deploys(self, component_name: str) -> bool:
        """Whether `selector` (KubeVela: "the components to use") keeps this component."""
        return self.selector is None or component_name in self.selector
