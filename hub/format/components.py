"""Components: `helm` (HTTP repository, OCI registry, local directory) and `k8s-objects`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from hub.format.traits import KruiseRolloutProperties, Trait
from hub.format.types import NonEmpty, type_of
from placement.names import (
    DnsLabel,
    PerClusterDnsLabel,
    PerClusterReleaseName,
)
from placement.strict import StrictModel

# --- components --------------------------------------------------------------------------------


_REPOSITORY_URLS = {
    "helm": (("http", "https"), "an http:// or https:// URL"),
    "oci": (("oci",), "an oci:// URL"),
    "local": (("", "file"), "a directory path or a file:// URL"),
}


class HelmProperties(StrictModel):
    """KubeVela's `helm` component (the fluxcd addon's), minus what only Flux can do."""

    repo_type: Literal["helm", "oci", "local"] = "helm"
    """`local`: `url` is a directory holding chart directories (a path, or `file://`)."""
    url: NonEmpty
    chart: NonEmpty
    version: NonEmpty | None = None
    """An exact version or a semver constraint; absent means the newest stable version."""
    release_name: PerClusterReleaseName | None = None
    target_namespace: PerClusterDnsLabel | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    secret_ref: NonEmpty | None = None
    """KubeVela's name for the repository's credentials: here a repository registered
    with `flotilla repo add`, which must cover `url`. Without it, a registered repository
    covering `url` is used all the same, as Helm matches credentials by URL."""

    @field_validator("url")
    @classmethod
    def _url_fits_repo_type(cls, url: str, info: ValidationInfo) -> str:
        repo_type = info.data.get("repo_type")
        if repo_type not in _REPOSITORY_URLS:  # an invalid repoType has its own problem
            return url
        schemes, wanted = _REPOSITORY_URLS[repo_type]
        if (url.partition("://")[0] if "://" in url else "") not in schemes:
            raise PydanticCustomError(
                "url",
                "repoType {repo_type} needs {wanted}",
                {"repo_type": repo_type, "wanted": wanted},
            )
        return url

    @property
    def location(self) -> str:
        """Where the chart's repository is: the URL, or for `local` the directory path."""
        return self.url.removeprefix("file://") if self.repo_type == "local" else self.url


def _manifest(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if not (
        isinstance(obj.get("apiVersion"), str)
        and isinstance(obj.get("kind"), str)
        and isinstance(metadata, dict)
        and isinstance(metadata.get("name"), str)
    ):
        raise PydanticCustomError(
            "manifest", "expected a Kubernetes object with apiVersion, kind and metadata.name"
        )
    return obj


class K8sObjectsProperties(StrictModel):
    objects: list[Annotated[dict[str, Any], AfterValidator(_manifest)]] = Field(min_length=1)


class HelmComponent(StrictModel):
    name: DnsLabel
    type: Literal["helm"]
    properties: HelmProperties
    traits: list[Trait] = Field(default_factory=list)


class K8sObjectsComponent(StrictModel):
    name: DnsLabel
    type: Literal["k8s-objects"]
    properties: K8sObjectsProperties
    traits: list[Trait] = Field(default_factory=list)


Component = Annotated[
    Annotated[HelmComponent, Tag("helm")] | Annotated[K8sObjectsComponent, Tag("k8s-objects")],
    Discriminator(type_of),
]

COMPONENT_PROPERTIES: dict[str, type[HelmProperties] | type[K8sObjectsProperties]] = {
    "helm": HelmProperties,
    "k8s-objects": K8sObjectsProperties,
}
TRAIT_PROPERTIES: dict[str, type[KruiseRolloutProperties]] = {
    "kruise-rollout": KruiseRolloutProperties
}


def component_properties(
    component_type: str, properties: Mapping[str, Any]
) -> HelmProperties | K8sObjectsProperties:
    """Typed properties of a component, e.g. of a `Target` after overrides."""
    return COMPONENT_PROPERTIES[component_type].model_validate(properties)


def trait_properties(trait_type: str, properties: Mapping[str, Any]) -> KruiseRolloutProperties:
    return TRAIT_PROPERTIES[trait_type].model_validate(properties)
