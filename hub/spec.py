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

from __future__ import annotations

import json
import re
import types
from collections.abc import Hashable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hub.errors import InvalidInput
from placement.errors import PathPart, PlacementError, Problem
from placement.names import (
    DNS_LABEL_MAX,
    QUALIFIED_NAME,
    DnsLabel,
    PerClusterDnsLabel,
    PerClusterReleaseName,
)
from placement.overrides import Override
from placement.selectors import LabelKey, LabelValue
from placement.strict import StrictModel
from placement.targets import AppSpec, ComponentSpec
from placement.topology import Topology
from placement.values import Layer, merge_layers
from placement.workflow import Step, Workflow

API_VERSION = "core.oam.dev/v1beta1"
PUBLISH_VERSION = "app.oam.dev/publishVersion"
"""The annotation naming a revision; a new value publishes a new revision."""

# KubeVela's default for how many clusters one deploy step works on at once.
DEFAULT_PARALLELISM = 5


# --- scalar types ----------------------------------------------------------------------------

# Go's time.ParseDuration units (KubeVela and kruise read durations with it); two spellings
# of micro, as in Go.
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(
    r"(\d+(?:\.\d*)?|\.\d+)(" + "|".join(sorted(_UNIT_SECONDS, key=len, reverse=True)) + ")"
)
_DURATION = re.compile(f"(?:{_DURATION_PART.pattern})+")
_PERCENT = re.compile(r"(\d{1,3})%")


def _name(name: str) -> str:
    if len(name) > DNS_LABEL_MAX or not QUALIFIED_NAME.fullmatch(name):
        raise PydanticCustomError(
            "name",
            "{name} is not a valid name (letters, digits, '-', '_' and '.', starting and "
            "ending with a letter or digit, at most 63 characters)",
            {"name": repr(name)},
        )
    return name


def _non_empty(text: str) -> str:
    if not text:
        raise PydanticCustomError("empty", "must not be empty")
    return text


def _duration(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (value == "0" or _DURATION.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "duration", "expected a duration such as 30s, 5m or 1h30m, or a number of seconds"
    )


def duration_seconds(duration: int | str) -> float:
    """Seconds in a validated `Duration`: Go's `time.ParseDuration` syntax, or plain seconds."""
    if isinstance(duration, int):
        return float(duration)
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def _weight(weight: int) -> int:
    if not 1 <= weight <= 100:
        raise PydanticCustomError("weight", "must be 1..100")
    return weight


def _replicas(value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, str) and (m := _PERCENT.fullmatch(value)) and 1 <= int(m[1]) <= 100:
        return value
    raise PydanticCustomError(
        "replicas", 'expected a number of pods (at least 1) or a percentage such as "20%"'
    )


Name = Annotated[str, AfterValidator(_name)]
NonEmpty = Annotated[str, AfterValidator(_non_empty)]
Duration = Annotated[
    int | str,
    PlainValidator(_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "description": "seconds"},
                {"type": "string", "pattern": f"^(0|{_DURATION.pattern})$"},
            ]
        }
    ),
]
Weight = Annotated[
    int, AfterValidator(_weight), WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 100})
]
Replicas = Annotated[
    int | str,
    PlainValidator(_replicas),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d{1,3}%$"},
            ]
        }
    ),
]


def _type_of(value: Any) -> str | None:
    """The tag of a union chosen by `type`, so that an unknown type is refused by name."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if isinstance(kind, str) else None


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


# --- the kruise-rollout trait -------------------------------------------------------------------


class HeaderMatch(StrictModel):
    name: NonEmpty
    value: str
    type: Literal["Exact", "RegularExpression"] = "Exact"


class RouteMatch(StrictModel):
    headers: list[HeaderMatch] = Field(min_length=1)


class Pause(StrictModel):
    duration: Duration | None = None
    """Absent: wait for `flotilla workflow resume`."""


class CanaryStep(StrictModel):
    weight: Weight | None = None
    """Percent of traffic to the canary."""
    replicas: Replicas | None = None
    """Canary pods: a number or a percentage of the workload's replicas (default: weight%)."""
    pause: Pause | None = None
    """kruise's form."""
    duration: Duration | None = None
    """The KubeVela trait's form of `pause.duration`."""
    matches: list[RouteMatch] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.weight is None and self.replicas is None:
            raise PydanticCustomError("canary_step", "set weight, replicas or both")
        if self.duration is not None and self.pause is not None and self.pause.duration is not None:
            raise PydanticCustomError(
                "canary_step", "duration and pause.duration say the same thing: set one"
            )
        return self

    @property
    def pause_seconds(self) -> float | None:
        """How long to hold this step before the next; `None`: until a human resumes."""
        duration = self.duration if self.pause is None else self.pause.duration
        return None if duration is None else duration_seconds(duration)


class IngressRef(StrictModel):
    name: NonEmpty | None = None
    class_type: Literal["nginx"] = "nginx"


class GatewayRef(StrictModel):
    http_route_name: NonEmpty


class TrafficRouting(StrictModel):
    """Where canary traffic is split: an nginx Ingress or a Gateway API HTTPRoute.

    Written as kruise does (`ingress: {name}`, `gateway: {httpRouteName}`), as the KubeVela
    trait does (`type: ingress|gateway`, `ingressName`, `gatewayHTTPRouteName`), or shortly
    as `type: nginx|gateway`. Names default to the workload's.
    """

    type: Literal["nginx", "ingress", "gateway"] | None = None
    service: NonEmpty | None = None
    grace_period_seconds: int | None = Field(default=None, ge=0)
    ingress: IngressRef | None = None
    gateway: GatewayRef | None = None
    ingress_name: NonEmpty | None = None
    gateway_http_route_name: NonEmpty | None = Field(default=None, alias="gatewayHTTPRouteName")

    @model_validator(mode="after")
    def _one_provider(self) -> Self:
        nginx = self.ingress is not None or self.ingress_name is not None
        gateway = self.gateway is not None or self.gateway_http_route_name is not None
        if (
            (nginx and gateway)
            or (self.type == "gateway" and nginx)
            or (self.type in ("nginx", "ingress") and gateway)
        ):
            raise PydanticCustomError(
                "traffic_routing",
                "mixes an nginx Ingress and a Gateway API route: use one per trafficRoutings entry",
            )
        if self.ingress is not None and self.ingress_name is not None:
            raise PydanticCustomError(
                "traffic_routing", "set ingress.name or ingressName, not both"
            )
        if self.gateway is not None and self.gateway_http_route_name is not None:
            raise PydanticCustomError(
                "traffic_routing",
                "set gateway.httpRouteName or gatewayHTTPRouteName, not both",
            )
        return self

    @property
    def provider(self) -> Literal["nginx", "gateway"]:
        gateway = self.gateway is not None or self.gateway_http_route_name is not None
        return "gateway" if self.type == "gateway" or gateway else "nginx"

    @property
    def route_name(self) -> str | None:
        """The Ingress or HTTPRoute to split; `None`: the one named like the workload."""
        if self.gateway is not None:
            return self.gateway.http_route_name
        if self.ingress is not None and self.ingress.name is not None:
            return self.ingress.name
        return self.gateway_http_route_name or self.ingress_name


class Canary(StrictModel):
    steps: list[CanaryStep] = Field(min_length=1)
    traffic_routings: list[TrafficRouting] = Field(default_factory=list)

    @model_validator(mode="after")
    def _growing(self) -> Self:
        weights = [(i, s.weight) for i, s in enumerate(self.steps) if s.weight is not None]
        for (before, low), (after, high) in pairwise(weights):
            if high < low:
                raise PydanticCustomError(
                    "canary",
                    "steps[{after}].weight {high} is below steps[{before}].weight {low}: "
                    "a canary only grows",
                    {"after": after, "high": high, "before": before, "low": low},
                )
        return self


class WorkloadRef(StrictModel):
    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["Deployment", "StatefulSet"]


class KruiseRolloutProperties(StrictModel):
    canary: Canary
    auto: bool = False
    """KubeVela: run every step without pausing."""
    release_mode: Literal["canary"] = "canary"
    workload_type: WorkloadRef | None = None
    """Which workloads to roll out; absent: every Deployment and StatefulSet in the release."""


class KruiseRolloutTrait(StrictModel):
    type: Literal["kruise-rollout"]
    properties: KruiseRolloutProperties


Trait = Annotated[Annotated[KruiseRolloutTrait, Tag("kruise-rollout")], Discriminator(_type_of)]


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
    Discriminator(_type_of),
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


# --- policies and workflow -----------------------------------------------------------------------


class TopologyPolicy(StrictModel):
    name: Name
    type: Literal["topology"]
    properties: Topology


class OverridePolicy(StrictModel):
    name: Name
    type: Literal["override"]
    properties: Override


Policy = Annotated[
    Annotated[TopologyPolicy, Tag("topology")] | Annotated[OverridePolicy, Tag("override")],
    Discriminator(_type_of),
]


class DeployProperties(StrictModel):
    policies: list[str] = Field(default_factory=list)
    parallelism: int = Field(default=DEFAULT_PARALLELISM, ge=1)
    """How many clusters of this step are worked on at once."""
    auto: bool = True
    """`false`: wait for `flotilla workflow resume` before deploying."""


class SuspendProperties(StrictModel):
    duration: Duration | None = None
    """Resume by itself after this long; absent: wait for `flotilla workflow resume`."""
    message: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else duration_seconds(self.duration)


class DeployStep(StrictModel):
    name: Name
    type: Literal["deploy"]
    properties: DeployProperties = Field(default_factory=DeployProperties)
    depends_on: list[str] = Field(default_factory=list)


class SuspendStep(StrictModel):
    name: Name
    type: Literal["suspend"]
    properties: SuspendProperties = Field(default_factory=SuspendProperties)
    depends_on: list[str] = Field(default_factory=list)


WorkflowStep = Annotated[
    Annotated[DeployStep, Tag("deploy")] | Annotated[SuspendStep, Tag("suspend")],
    Discriminator(_type_of),
]


class WorkflowMode(StrictModel):
    steps: Literal["StepByStep", "DAG"] = "StepByStep"


class WorkflowSpec(StrictModel):
    steps: list[WorkflowStep] = Field(min_length=1)
    mode: WorkflowMode = Field(default_factory=WorkflowMode)


# --- the application -----------------------------------------------------------------------------


class Metadata(StrictModel):
    name: DnsLabel
    namespace: DnsLabel | None = None
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    annotations: dict[LabelKey, str] = Field(default_factory=dict)


class ApplicationSpec(StrictModel):
    components: list[Component] = Field(min_length=1)
    policies: list[Policy] = Field(default_factory=list)
    workflow: WorkflowSpec | None = None
    """Absent: KubeVela's default, one deploy step per topology policy."""


class Application(StrictModel):
    api_version: Literal["core.oam.dev/v1beta1"]
    kind: Literal["Application"]
    metadata: Metadata
    spec: ApplicationSpec

    @property
    def publish_version(self) -> str | None:
        return self.metadata.annotations.get(PUBLISH_VERSION)

    def to_placement(self) -> AppSpec:
        """The application as placement's plain data. Raises `PlacementError` (paths relative
        to `spec`) if the workflow does not fit the policies; `load_application` checked that."""
        policies = {policy.name: policy.properties for policy in self.spec.policies}
        workflow = self.spec.workflow
        if workflow is None:
            checked = Workflow.default(policies)
        else:
            steps = [
                Step(
                    step.name,
                    tuple(step.depends_on),
                    tuple(step.properties.policies) if isinstance(step, DeployStep) else None,
                )
                for step in workflow.steps
            ]
            checked = Workflow(steps, policies, workflow.mode.steps)
        components = tuple(
            ComponentSpec(
                c.name,
                c.type,
                c.properties.model_dump(exclude_unset=True),
                {t.type: t.properties.model_dump(exclude_unset=True) for t in c.traits},
            )
            for c in self.spec.components
        )
        return AppSpec(self.metadata.name, self.metadata.namespace, components, policies, checked)


# --- reading a file ------------------------------------------------------------------------------


class SpecError(InvalidInput):
    """An Application file was refused; `problems` lists each, the message one per line."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(
            "\n".join(
                f"{source}: {format_location(p.path)}: {p.message}"
                if p.path
                else f"{source}: {p.message}"
                for p in self.problems
            )
        )


def load_application(text: str, source: str) -> Application:
    """Parse and check an Application file; `source` names it in messages (a path, `-`)."""
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise SpecError(source, [Problem(_yaml_message(e))]) from e
    if not isinstance(data, dict):
        raise SpecError(
            source,
            [Problem("expected an Application: a map with apiVersion, kind, metadata, spec")],
        )
    try:
        app = Application.model_validate(data)
    except ValidationError as e:
        raise SpecError(source, _validation_problems(e, Application)) from e
    problems = list(dict.fromkeys(_semantic_problems(app)))
    if problems:
        raise SpecError(source, problems)
    return app


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the file, for editors (`flotilla schema`)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Application.model_json_schema(by_alias=True),
        "title": f"Flotilla Application ({API_VERSION})",
    }


def format_location(path: Sequence[PathPart]) -> str:
    """`spec.components[0].properties.values["app.kubernetes.io/name"]`"""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][-A-Za-z0-9_]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


class _Loader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: a duplicate key is an error (not "last one wins"), and a
    date stays the string it was written as."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_message(error: yaml.YAMLError) -> str:
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        problem = f"{error.context}, {error.problem}" if error.context else error.problem
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"not valid YAML: {error}"


# --- problems ----------------------------------------------------------------------------------

_TYPE_MESSAGES = {
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "dict_type": "expected a map",
    "model_type": "expected a map",
    "model_attributes_type": "expected a map",
    "list_type": "expected a list",
    "missing": "required",
}


def _validation_problems(
    error: ValidationError, root: type[BaseModel], prefix: tuple[PathPart, ...] = ()
) -> list[Problem]:
    """pydantic's errors as the file's paths and plain messages."""
    problems = []
    for detail in error.errors():
        path, owner = _location(root, detail["loc"])
        kind, ctx, value = detail["type"], detail.get("ctx", {}), detail["input"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            if not isinstance(value, dict):
                message = "expected a map"
            else:
                path.append("type")
                message = (
                    f"{json.dumps(ctx['tag'])} is not supported (supported: "
                    f"{ctx['expected_tags'].replace(chr(39), '')})"
                    if kind == "union_tag_invalid"
                    else "required"
                    if "type" not in value
                    else "expected a string"
                )
        elif kind == "literal_error":
            supported = ctx["expected"].replace("'", "").replace(" or ", ", ")
            message = f"{json.dumps(value)} is not supported (supported: {supported})"
        elif kind == "extra_forbidden":
            fields = sorted(f.alias or n for n, f in owner.model_fields.items()) if owner else []
            message = f"field not supported (supported: {', '.join(fields)})"
        elif (
            kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool)
        ):
            message = "expected a string (put numbers such as versions in quotes)"
        elif kind == "value_error":
            message = str(ctx["error"])
        elif kind == "too_short":
            message = "must not be empty" if ctx["min_length"] == 1 else detail["msg"]
        elif kind == "greater_than_equal":
            message = f"must be at least {ctx['ge']}"
        else:
            message = _TYPE_MESSAGES.get(kind, detail["msg"])
        problems.append(Problem(message, (*prefix, *path)))
    return problems


def _location(
    root: Any, loc: tuple[int | str, ...]
) -> tuple[list[PathPart], type[BaseModel] | None]:
    """Turn pydantic's `loc` into the file's path, and find the model holding its last field.

    pydantic puts the tag of a tagged union (`helm`) into `loc` and a dict key's own error
    ends in `[key]`; neither is part of the file.
    """
    path: list[PathPart] = []
    owner: type[BaseModel] | None = None
    annotation: Any = root
    for part in loc:
        if part == "[key]":  # pydantic's mark for an error in the key just named
            continue
        annotation, tags = _unwrap(annotation)
        if tags is not None:
            annotation = tags.get(str(part))
            continue
        owner = None
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            owner = annotation
            fields = {(f.alias or n): f for n, f in annotation.model_fields.items()}
            field = fields.get(str(part))
            annotation = field.annotation if field else None
        elif origin is list:
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            annotation = None
        path.append(part)
    return path, owner


def _unwrap(annotation: Any) -> tuple[Any, dict[str, Any] | None]:
    """Strip `Annotated` and `| None`; for a tagged union, return its members by tag."""
    while True:
        if get_origin(annotation) is Annotated:
            base, *metadata = get_args(annotation)
            if any(isinstance(m, Discriminator) for m in metadata):
                if get_origin(base) in (Union, types.UnionType):
                    members = [get_args(member) for member in get_args(base)]
                else:  # a union of one collapses into its only member
                    members = [(base, *metadata)]
                return None, {
                    tag.tag: model
                    for model, *extra in members
                    for tag in extra
                    if isinstance(tag, Tag)
                }
            annotation = base
        elif get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation, None
            annotation = members[0]
        else:
            return annotation, None


def _semantic_problems(app: Application) -> Iterator[Problem]:
    """What no single field shows: names used twice, references, overrides that fit nothing."""
    spec = app.spec
    yield from _twice([c.name for c in spec.components], ("spec", "components"), "name")
    yield from _twice([p.name for p in spec.policies], ("spec", "policies"), "name")
    for index, component in enumerate(spec.components):
        traits = [t.type for t in component.traits]
        yield from _twice(traits, ("spec", "components", index, "traits"), "type")
    for index, policy in enumerate(spec.policies):
        if isinstance(policy, OverridePolicy):
            yield from _override_problems(
                app, policy.properties, ("spec", "policies", index, "properties")
            )
    try:
        app.to_placement()
    except PlacementError as e:
        yield from (Problem(p.message, ("spec", *p.path)) for p in e.problems)


def _twice(names: Sequence[str], at: tuple[PathPart, ...], field: str) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for index, name in enumerate(names):
        earlier = first.setdefault(name, index)
        if earlier != index:
            where = format_location((*at, earlier))
            yield Problem(f"{name!r} is already used by {where}", (*at, index, field))


def _override_problems(
    app: Application, override: Override, at: tuple[PathPart, ...]
) -> Iterator[Problem]:
    """Every patch must fit a component, and the component it patches must stay valid."""
    components = app.spec.components
    names = ", ".join(c.name for c in components)
    for position, name in enumerate(override.selector or ()):
        if name not in {c.name for c in components}:
            yield Problem(
                f"{name!r} is not a component (components: {names})", (*at, "selector", position)
            )
    for index, patch in enumerate(override.components):
        where = (*at, "components", index)
        if patch.type is not None and patch.type not in COMPONENT_PROPERTIES:
            supported = ", ".join(COMPONENT_PROPERTIES)
            yield Problem(
                f"{json.dumps(patch.type)} is not supported (supported: {supported})",
                (*where, "type"),
            )
            continue
        matched = [c for c in components if patch.matches(c.name, c.type)]
        if not matched:
            wanted = " ".join(
                f"{field} {value!r}"
                for field, value in (("name", patch.name), ("type", patch.type))
                if value
            )
            yield Problem(f"{wanted} matches no component (components: {names})", where)
            continue
        for component in matched:
            if patch.properties is not None:
                model = COMPONENT_PROPERTIES[component.type]
                yield from _patched_problems(
                    model,
                    component.properties.model_dump(exclude_unset=True),
                    patch.properties,
                    (*where, "properties"),
                )
        for position, trait in enumerate(patch.traits):
            trait_at = (*where, "traits", position)
            if trait.type not in TRAIT_PROPERTIES:
                supported = ", ".join(TRAIT_PROPERTIES)
                yield Problem(
                    f"{json.dumps(trait.type)} is not supported (supported: {supported})",
                    (*trait_at, "type"),
                )
                continue
            existing = [
                next(
                    (
                        t.properties.model_dump(exclude_unset=True)
                        for t in c.traits
                        if t.type == trait.type
                    ),
                    None,
                )
                for c in matched
            ]
            if trait.disable:
                if all(e is None for e in existing):
                    yield Problem(
                        f"no component it matches has a {trait.type} trait to disable",
                        (*trait_at, "disable"),
                    )
                continue
            for base in existing:
                yield from _patched_problems(
                    TRAIT_PROPERTIES[trait.type],
                    base or {},
                    trait.properties or {},
                    (*trait_at, "properties"),
                )


def _patched_problems(
    model: type[BaseModel],
    base: Mapping[str, Any],
    patch: Mapping[str, Any],
    at: tuple[PathPart, ...],
) -> list[Problem]:
    """Problems of `base` once `patch` is merged into it, located in the patch."""
    merged = merge_layers([Layer("base", base), Layer("patch", patch)]).values
    try:
        model.model_validate(merged)
    except ValidationError as e:
        return _validation_problems(e, model, at)
    return []
