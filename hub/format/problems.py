"""Turning pydantic's errors and cross-field checks into one `Problem` per mistake, each
with the path of the field in the user's file.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Discriminator,
    Tag,
    ValidationError,
)

from hub.format.analysis import per_cluster
from hub.format.application import Application
from hub.format.components import COMPONENT_PROPERTIES, TRAIT_PROPERTIES, HelmComponent
from hub.format.workflow import (
    ApplyOncePolicy,
    CheckMetricsStep,
    DeployStep,
    OverridePolicy,
    deploy_steps_before,
)
from hub.model.records import RepositoryRecord, covering
from placement.errors import PathPart, PlacementError, Problem
from placement.overrides import Override
from placement.values import Layer, merge_layers

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


def validation_problems(
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


def semantic_problems(app: Application) -> Iterator[Problem]:
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
    yield from _check_metrics_problems(app)
    yield from _apply_once_problems(app)
    try:
        app.to_placement()
    except PlacementError as e:
        yield from (app.located(p) for p in e.problems)


def _check_metrics_problems(app: Application) -> Iterator[Problem]:
    """A check-metrics step measured on each cluster must follow exactly one deploy step:
    its clusters are the ones measured."""
    workflow = app.spec.workflow
    if workflow is None:
        return
    for index, step in enumerate(workflow.steps):
        if not isinstance(step, CheckMetricsStep) or not step.properties.measures_each_cluster:
            continue
        deploys = deploy_steps_before(workflow.steps, workflow.mode.steps, step.name)
        why = (
            "queries each cluster (its query uses ${cluster...})"
            if per_cluster(step.properties.query)
            else "asks each cluster's Prometheus (it has no metricEndpoint)"
        )
        if not deploys:
            follow = (
                "put it after a deploy step"
                if workflow.mode.steps == "StepByStep"
                else "name a deploy step in its dependsOn"
            )
            yield Problem(
                f"step {step.name!r} {why} but follows no deploy step, so it has no clusters "
                f"to measure: {follow}",
                ("spec", "workflow", "steps", index),
            )
        elif len(deploys) > 1:
            yield Problem(
                f"step {step.name!r} {why} but depends on several deploy steps "
                f"({', '.join(deploys)}); it measures the clusters of one: depend on one, "
                "with a check-metrics step for each",
                ("spec", "workflow", "steps", index, "dependsOn"),
            )


def _apply_once_problems(app: Application) -> Iterator[Problem]:
    """Selectors name components of this application, and no deploy step names an
    apply-once policy: it holds for the whole application, not for one step's clusters."""
    applied_once = set()
    for index, policy in enumerate(app.spec.policies):
        if not isinstance(policy, ApplyOncePolicy):
            continue
        applied_once.add(policy.name)
        rules = ("spec", "policies", index, "properties", "rules")
        for position, rule in enumerate(policy.properties.rules or ()):
            names = rule.selector.component_names or ()
            at = (*rules, position, "selector", "componentNames")
            yield from _unknown_components(app, names, at)
    for index, step in enumerate(app.spec.workflow.steps if app.spec.workflow else ()):
        if not isinstance(step, DeployStep):
            continue
        for position, name in enumerate(step.properties.policies):
            if name in applied_once:
                yield Problem(
                    f"{name!r} is an apply-once policy, which holds for the whole application: "
                    "a deploy step names topology and override policies",
                    ("spec", "workflow", "steps", index, "properties", "policies", position),
                )


def _unknown_components(
    app: Application, names: Sequence[str], at: tuple[PathPart, ...]
) -> Iterator[Problem]:
    known = [c.name for c in app.spec.components]
    for position, name in enumerate(names):
        if name not in known:
            yield Problem(
                f"{name!r} is not a component (components: {', '.join(known)})", (*at, position)
            )


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
    yield from _unknown_components(app, override.selector or (), (*at, "selector"))
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
        return validation_problems(e, model, at)
    return []


def repository_problems(
    app: Application, registered: Sequence[RepositoryRecord]
) -> Iterator[Problem]:
    """Every `secretRef` (of a helm component, or set by an override) names a repository
    registered with `flotilla repo add` whose URL covers the chart's `url`, and the one
    that covers it most closely: that one's credentials are what a fetch from the URL uses,
    so naming another would promise credentials that are never sent. Asked at plan, with
    the repositories registered then (the store's; this module reads none)."""
    components = app.spec.components
    for index, component in enumerate(components):
        if isinstance(component, HelmComponent) and (name := component.properties.secret_ref):
            props = component.properties
            yield from _secret_ref_problems(
                name,
                props.repo_type,
                props.url,
                registered,
                ("spec", "components", index, "properties", "secretRef"),
            )
    for index, policy in enumerate(app.spec.policies):
        if not isinstance(policy, OverridePolicy):
            continue
        for position, patch in enumerate(policy.properties.components):
            name = (patch.properties or {}).get("secretRef")
            if not isinstance(name, str) or not name:
                continue  # a wrong type is the patched component's own problem
            patched = ("spec", "policies", index, "properties", "components", position)
            for component in components:
                if not isinstance(component, HelmComponent) or not patch.matches(
                    component.name, component.type
                ):
                    continue
                merged = {**component.properties.model_dump(), **(patch.properties or {})}
                yield from _secret_ref_problems(
                    name,
                    str(merged.get("repoType") or "helm"),
                    str(merged.get("url") or ""),
                    registered,
                    (*patched, "properties", "secretRef"),
                )


def _secret_ref_problems(
    name: str,
    repo_type: str,
    url: str,
    registered: Sequence[RepositoryRecord],
    at: tuple[PathPart, ...],
) -> Iterator[Problem]:
    by_name = {record.name: record for record in registered}
    if repo_type == "local":
        yield Problem("a local chart directory needs no credentials: remove secretRef", at)
        return
    record = by_name.get(name)
    if record is None:
        known = ", ".join(sorted(by_name)) or "none"
        yield Problem(
            f"{json.dumps(name)} names no registered repository (registered: {known}); "
            f"register it: `flotilla repo add {name} --url {url} --username USER "
            "--password-stdin`",
            at,
        )
    elif not record.covers(url):
        yield Problem(
            f"repository {json.dumps(name)} is registered for {record.url}, which does not "
            f"cover url {url}",
            at,
        )
    elif (closest := covering(registered, url)) is not None and closest.name != name:
        yield Problem(
            f"url {url} is covered more closely by repository {json.dumps(closest.name)} "
            f"({closest.url}), whose credentials a fetch uses: name that one",
            at,
        )


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
