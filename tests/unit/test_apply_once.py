"""KubeVela's apply-once policy: which objects and fields it leaves alone, in which phase,
the live values it keeps, and how the file is read and refused."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hub.format import ApplyOnce, SpecError, json_schema, keep_live, load_application
from hub.format.applyonce import path_parts
from tests.unit.documents import edited

# KubeVela's own example (docs/examples/app-with-policy/apply-once-policy), its policy
# verbatim; the components are helm charts, as Flotilla has no `webservice` type.
KUBEVELA_EXAMPLE = """\
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: apply-once-app-2
spec:
  components:
    - name: hello-world
      type: helm
      properties: {url: "http://127.0.0.1:8879/", chart: hello}
    - name: hello-cosmos
      type: k8s-objects
      properties:
        objects:
          - {apiVersion: v1, kind: ConfigMap, metadata: {name: cosmos}}
  policies:
    - name: everywhere
      type: topology
      properties:
        clusterLabelSelector: {}
    - name: apply-once
      type: apply-once
      properties:
        enable: true
        rules:
          - selector:
              componentNames: [ "hello-cosmos" ]
              resourceTypes: [ "Deployment" ]
            strategy:
              path: [ "spec.replicas", "spec.template.spec.containers[0].resources" ]
"""
BASE: dict[str, Any] = yaml.safe_load(KUBEVELA_EXAMPLE)
POLICY = "spec.policies.1"
RULE = f"{POLICY}.properties.rules.0"
AT_RULE = "spec.policies[1].properties.rules[0]"
TYPES = {"web": "helm", "db": "helm", "setup": "k8s-objects"}


def policy(*rules: dict[str, Any], enable: bool = True) -> ApplyOnce:
    """The policy in force for an application of TYPES' components, read from the file."""
    properties: dict[str, Any] = {"enable": enable, **({"rules": list(rules)} if rules else {})}
    doc = edited(BASE, f"{POLICY}.properties", properties)
    doc["spec"]["components"] = [
        {"name": name, "type": "helm", "properties": {"url": "http://c/", "chart": name}}
        if kind == "helm"
        else {
            "name": name,
            "type": kind,
            "properties": {
                "objects": [{"apiVersion": "v1", "kind": "Job", "metadata": {"name": name}}]
            },
        }
        for name, kind in TYPES.items()
    ]
    return load_application(yaml.safe_dump(doc), "app.yaml").apply_once


def rule(path: list[str], affect: str | None = None, **selector: list[str]) -> dict[str, Any]:
    strategy: dict[str, Any] = {"path": path, **({"affect": affect} if affect else {})}
    return {"selector": selector, "strategy": strategy}


REPLICAS = ["spec.replicas"]

# (why, policy, (component, kind, name), state-keep paths, new-revision paths)
MATCHES: list[tuple[str, ApplyOnce, tuple[str, str, str], tuple[str, ...], tuple[str, ...]]] = [
    ("no policy", ApplyOnce(), ("web", "Deployment", "web"), (), ()),
    (
        "enabled without rules: every object, between revisions only",
        policy(),
        ("web", "Service", "web"),
        ("*",),
        (),
    ),
    (
        "disabled, rules and all",
        policy(rule(["*"], componentNames=["web"]), enable=False),
        ("web", "Deployment", "web"),
        (),
        (),
    ),
    (
        "component name",
        policy(rule(REPLICAS, componentNames=["web"])),
        ("web", "Deployment", "web"),
        ("spec.replicas",),
        ("spec.replicas",),
    ),
    (
        "another component",
        policy(rule(REPLICAS, componentNames=["web"])),
        ("db", "Deployment", "web"),
        (),
        (),
    ),
    (
        "component type",
        policy(rule(["*"], componentTypes=["k8s-objects"])),
        ("setup", "Job", "setup"),
        ("*",),
        ("*",),
    ),
    (
        "another component type",
        policy(rule(["*"], componentTypes=["k8s-objects"])),
        ("web", "Job", "setup"),
        (),
        (),
    ),
    (
        "resource type is the kind",
        policy(rule(REPLICAS, resourceTypes=["Deployment", "StatefulSet"])),
        ("db", "StatefulSet", "db"),
        ("spec.replicas",),
        ("spec.replicas",),
    ),
    (
        "another kind",
        policy(rule(REPLICAS, resourceTypes=["Deployment"])),
        ("web", "Service", "web"),
        (),
        (),
    ),
    (
        "resource name",
        policy(rule(["data"], resourceNames=["web-config"])),
        ("web", "ConfigMap", "web-config"),
        ("data",),
        ("data",),
    ),
    (
        "every field of a selector must match: name and kind",
        policy(rule(REPLICAS, componentNames=["web"], resourceTypes=["Deployment"])),
        ("web", "Service", "web"),
        (),
        (),
    ),
    (
        "every field of a selector must match, and do",
        policy(
            rule(
                REPLICAS,
                componentNames=["web", "db"],
                componentTypes=["helm"],
                resourceTypes=["Deployment"],
                resourceNames=["web"],
            )
        ),
        ("web", "Deployment", "web"),
        ("spec.replicas",),
        ("spec.replicas",),
    ),
    (
        "the first matching rule decides",
        policy(
            rule(REPLICAS, resourceTypes=["Deployment"]),
            rule(["*"], componentNames=["web"]),
        ),
        ("web", "Deployment", "web"),
        ("spec.replicas",),
        ("spec.replicas",),
    ),
    (
        "a later rule for what the first does not match",
        policy(
            rule(REPLICAS, resourceTypes=["Deployment"]),
            rule(["*"], componentNames=["web"]),
        ),
        ("web", "Service", "web"),
        ("*",),
        ("*",),
    ),
    (
        "* among paths is the whole object",
        policy(rule(["spec.replicas", "*"], componentNames=["web"])),
        ("web", "Deployment", "web"),
        ("*",),
        ("*",),
    ),
    (
        "onStateKeep: a drift is left, a new revision applies the chart's value",
        policy(rule(REPLICAS, "onStateKeep", componentNames=["web"])),
        ("web", "Deployment", "web"),
        ("spec.replicas",),
        (),
    ),
    (
        "onUpdate: a drift is healed, a new revision keeps the live value",
        policy(rule(REPLICAS, "onUpdate", componentNames=["web"])),
        ("web", "Deployment", "web"),
        (),
        ("spec.replicas",),
    ),
    (
        "always is the default",
        policy(rule(REPLICAS, "always", componentNames=["web"])),
        ("web", "Deployment", "web"),
        ("spec.replicas",),
        ("spec.replicas",),
    ),
    (
        "a first match of the other phase still decides, as in KubeVela",
        policy(
            rule(REPLICAS, "onUpdate", resourceTypes=["Deployment"]),
            rule(["*"], componentNames=["web"]),
        ),
        ("web", "Deployment", "web"),
        (),
        ("spec.replicas",),
    ),
]


@pytest.mark.parametrize(
    ("once", "obj", "kept", "updated"),
    [case[1:] for case in MATCHES],
    ids=[case[0] for case in MATCHES],
)
def test_which_paths_of_which_objects_are_left_alone(
    once: ApplyOnce, obj: tuple[str, str, str], kept: tuple[str, ...], updated: tuple[str, ...]
) -> None:
    assert once.paths(*obj) == kept
    assert once.on_update(*obj) == updated


RESOURCES = "spec.template.spec.containers[0].resources"
LABEL = "metadata.labels[app.kubernetes.io/name]"

# (rule paths, the path of a difference, left alone?)
COVERS: list[tuple[list[str], str, bool]] = [
    (["spec.replicas"], "spec.replicas", True),
    (["spec.replicas"], "spec.replicasMax", False),
    (["spec.replicas"], "spec", False),
    (["spec"], "spec.template.spec.containers[0].image", True),
    ([RESOURCES], f"{RESOURCES}.limits.cpu", True),
    ([RESOURCES], "spec.template.spec.containers[1].resources.limits.cpu", False),
    ([RESOURCES], "spec.template.spec.containers[0].image", False),
    (["spec.template.spec.containers"], "spec.template.spec.containers[3]", True),
    ([LABEL], 'metadata.labels["app.kubernetes.io/name"]', True),
    (
        ["metadata.labels['app.kubernetes.io/name']"],
        'metadata.labels["app.kubernetes.io/name"]',
        True,
    ),
    ([LABEL], 'metadata.labels["app.kubernetes.io/part-of"]', False),
    (["data[.config.yml]"], 'data[".config.yml"]', True),
    (["*"], "metadata.annotations.note", True),
    (["spec.replicas", "data"], "data.key", True),
]


@pytest.mark.parametrize(("rule_paths", "path", "left"), COVERS)
def test_a_rule_path_covers_itself_and_every_path_below_it(
    rule_paths: list[str], path: str, left: bool
) -> None:
    once = policy(rule(rule_paths, componentNames=["web"]))
    assert once.leaves_alone("web", "ConfigMap", "web", path) is left
    assert once.leaves_alone("db", "ConfigMap", "web", path) is False


def test_without_rules_every_difference_is_left_alone_but_only_between_revisions() -> None:
    once = policy()
    assert once.leaves_alone("setup", "Job", "setup", "spec.template.spec.containers[0].image")
    assert not ApplyOnce().leaves_alone("setup", "Job", "setup", "spec")


def test_several_policies_act_as_one() -> None:
    doc = edited(BASE, "spec.policies.2", {"name": "more", "type": "apply-once"})
    doc = edited(doc, f"{POLICY}.properties.enable", False)
    doc = edited(
        doc, "spec.policies.3", {"name": "on", "type": "apply-once", "properties": {"enable": True}}
    )
    doc = edited(
        doc,
        "spec.policies.4",
        {
            "name": "configs",
            "type": "apply-once",
            "properties": {"rules": [rule(["data"], resourceTypes=["ConfigMap"])]},
        },
    )
    once = load_application(yaml.safe_dump(doc), "app.yaml").apply_once
    assert once.enabled  # one policy enables them all, as KubeVela's merge does
    assert once.paths("hello-cosmos", "Deployment", "hello-cosmos") == (
        "spec.replicas",
        "spec.template.spec.containers[0].resources",
    )
    assert once.paths("hello-world", "ConfigMap", "hello") == ("data",)
    assert once.paths("hello-world", "Deployment", "hello") == ()


PARTS: list[tuple[str, tuple[str | int, ...]]] = [
    ("*", ()),
    ("spec.replicas", ("spec", "replicas")),
    (RESOURCES, ("spec", "template", "spec", "containers", 0, "resources")),
    ("spec.items[0][8]", ("spec", "items", 0, 8)),
    ("[42]", (42,)),
    (LABEL, ("metadata", "labels", "app.kubernetes.io/name")),
    ("metadata.annotations['a.b/c']", ("metadata", "annotations", "a.b/c")),
    ('metadata.labels["a.b/c"]', ("metadata", "labels", "a.b/c")),
    ('data["a\\"b"]', ("data", 'a"b')),
    ("data['0']", ("data", "0")),
    ("data.0", ("data", "0")),
    ("data[4294967296]", ("data", "4294967296")),
]


@pytest.mark.parametrize(("path", "parts"), PARTS)
def test_paths_read_as_kubevela_reads_them(path: str, parts: tuple[str | int, ...]) -> None:
    assert path_parts(path) == parts


@pytest.mark.parametrize(
    "path",
    [
        "",
        ".metadata.name",
        "metadata..name",
        "metadata.name.",
        "spec.containers[]",
        "spec.containers.[0].name",
        "spec.containers[0",
        "spec]",
        "spec.containers[0]image",
        "spec.containers[*].image",
        "spec.*",
    ],
)
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match=r"is not a field path|: \* stands alone"):
        path_parts(path)


MANIFEST: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {"name": "web", "image": "web:2", "resources": {"limits": {"cpu": "1"}}}
                ]
            }
        },
    },
}
LIVE: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "web",
        "labels": {"app": "web", "tier": "back", "owner": "kubectl"},
        "resourceVersion": "42",
        "managedFields": [{"manager": "flotilla"}],
    },
    "spec": {
        "replicas": 7,
        "paused": True,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "web:1",
                        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}},
                        "imagePullPolicy": "IfNotPresent",
                    }
                ],
                "volumes": [{"name": "cache", "emptyDir": {}}],
            }
        },
    },
    "status": {"replicas": 7},
}


def changed(path: str, value: Any) -> dict[str, Any]:
    return edited(MANIFEST, path, value)


CONTAINER = "spec.template.spec.containers.0"

# (why, paths, what a new revision applies)
KEPT: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("no paths", (), MANIFEST),
    ("a scalar", ("spec.replicas",), changed("spec.replicas", 7)),
    (
        "a map: the manifest's keys only, with live values",
        ("metadata.labels",),
        changed("metadata.labels", {"app": "web", "tier": "back"}),
    ),
    (
        "a list item by index",
        (f"{RESOURCES}.limits",),
        changed(f"{CONTAINER}.resources.limits", {"cpu": "2"}),
    ),
    (
        "a list, whole",
        ("spec.template.spec.containers",),
        changed("spec.template.spec.containers", LIVE["spec"]["template"]["spec"]["containers"]),
    ),
    ("a path the manifest lacks is copied", ("spec.paused",), changed("spec.paused", True)),
    (
        "a path absent in live stays",
        ("spec.strategy", "spec.replicas"),
        changed("spec.replicas", 7),
    ),
    (
        "a list item the manifest has no place for stays absent",
        ("spec.template.spec.volumes[0].name", "spec.template.spec.containers[1]"),
        MANIFEST,
    ),
    (
        "a list the manifest lacks is copied",
        ("spec.template.spec.volumes",),
        changed("spec.template.spec.volumes", [{"name": "cache", "emptyDir": {}}]),
    ),
    (
        "*: every field the manifest sets, none it does not",
        ("*",),
        edited(
            edited(changed("spec.replicas", 7), "metadata.labels.tier", "back"),
            "spec.template.spec.containers",
            LIVE["spec"]["template"]["spec"]["containers"],
        ),
    ),
]


@pytest.mark.parametrize(
    ("paths", "expected"), [case[1:] for case in KEPT], ids=[case[0] for case in KEPT]
)
def test_keep_live_takes_the_live_values_at_the_paths(
    paths: tuple[str, ...], expected: dict[str, Any]
) -> None:
    before = yaml.safe_dump([MANIFEST, LIVE])
    assert keep_live(MANIFEST, LIVE, paths) == expected
    assert yaml.safe_dump([MANIFEST, LIVE]) == before  # neither argument changed


def test_keep_live_of_a_new_object_is_the_manifest() -> None:
    assert keep_live(MANIFEST, None, ("*",)) == MANIFEST
    assert keep_live(MANIFEST, None, ("*",)) is not MANIFEST


# --- the file ---------------------------------------------------------------------------------


def test_kubevelas_example_loads_and_leaves_placement_alone() -> None:
    app = load_application(KUBEVELA_EXAMPLE, "app.yaml")
    once = app.apply_once
    assert once.paths("hello-cosmos", "Deployment", "hello-cosmos") == (
        "spec.replicas",
        "spec.template.spec.containers[0].resources",
    )
    assert once.paths("hello-world", "Deployment", "hello-world") == ()
    placed = app.to_placement()
    assert set(placed.policies) == {"everywhere"}
    assert [(s.name, s.policies) for s in placed.workflow.steps] == [
        ("deploy-everywhere", ("everywhere",))
    ]


def test_a_policy_without_properties_is_off() -> None:
    doc = edited(BASE, f"{POLICY}.properties", ...)
    assert load_application(yaml.safe_dump(doc), "app.yaml").apply_once == ApplyOnce(
        component_types={"hello-world": "helm", "hello-cosmos": "k8s-objects"}
    )


def test_a_workflow_of_its_own_deploys_beside_an_apply_once_policy() -> None:
    steps = [{"name": "all", "type": "deploy", "properties": {"policies": ["everywhere"]}}]
    app = load_application(yaml.safe_dump(edited(BASE, "spec.workflow", {"steps": steps})), "a")
    assert [s.policies for s in app.to_placement().workflow.steps] == [("everywhere",)]


REFUSALS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "oamTypes",
        edited(BASE, f"{RULE}.selector.oamTypes", ["COMPONENT"]),
        [
            f"{AT_RULE}.selector.oamTypes: field not supported (supported: componentNames, "
            "componentTypes, resourceNames, resourceTypes)"
        ],
    ),
    (
        "traitTypes",
        edited(BASE, f"{RULE}.selector", {"traitTypes": ["scaler"]}),
        [
            f"{AT_RULE}.selector.traitTypes: field not supported (supported: componentNames, "
            "componentTypes, resourceNames, resourceTypes)"
        ],
    ),
    (
        "a selector selecting nothing",
        edited(BASE, f"{RULE}.selector", {}),
        [
            f"{AT_RULE}.selector: selects nothing: give at least one of componentNames, "
            "componentTypes, resourceTypes, resourceNames"
        ],
    ),
    ("no selector", edited(BASE, f"{RULE}.selector", ...), [f"{AT_RULE}.selector: required"]),
    (
        "an empty list in a selector",
        edited(BASE, f"{RULE}.selector.resourceTypes", []),
        [f"{AT_RULE}.selector.resourceTypes: must not be empty"],
    ),
    (
        "a component not in the application",
        edited(BASE, f"{RULE}.selector.componentNames", ["hello-cosmos", "hello-mars"]),
        [
            f"{AT_RULE}.selector.componentNames[1]: 'hello-mars' is not a component "
            "(components: hello-world, hello-cosmos)"
        ],
    ),
    (
        "a component type Flotilla does not have",
        edited(BASE, f"{RULE}.selector.componentTypes", ["webservice"]),
        [
            f'{AT_RULE}.selector.componentTypes[0]: "webservice" is not supported '
            "(supported: helm, k8s-objects)"
        ],
    ),
    (
        "a resource type that is not a kind",
        edited(BASE, f"{RULE}.selector.resourceTypes", ["deployments"]),
        [
            f"{AT_RULE}.selector.resourceTypes[0]: 'deployments' is not a kind: resourceTypes "
            "match an object's kind as it is written, such as Deployment or ConfigMap"
        ],
    ),
    (
        "path beside strategy, as an old KubeVela page writes it",
        edited(BASE, f"{RULE}.path", ["spec.replicas"]),
        [f"{AT_RULE}.path: field not supported (supported: selector, strategy)"],
    ),
    ("no strategy", edited(BASE, f"{RULE}.strategy", ...), [f"{AT_RULE}.strategy: required"]),
    (
        "no paths",
        edited(BASE, f"{RULE}.strategy.path", []),
        [f"{AT_RULE}.strategy.path: must not be empty"],
    ),
    (
        "a malformed path",
        edited(BASE, f"{RULE}.strategy.path.1", "spec.template.spec.containers[*].image"),
        [
            f"{AT_RULE}.strategy.path[1]: 'spec.template.spec.containers[*].image': * stands "
            "alone, for the whole object"
        ],
    ),
    (
        "an affect KubeVela does not have",
        edited(BASE, f"{RULE}.strategy.affect", "onCreate"),
        [
            f'{AT_RULE}.strategy.affect: "onCreate" is not supported (supported: onUpdate, '
            "onStateKeep, always)"
        ],
    ),
    (
        "enable as text",
        edited(BASE, f"{POLICY}.properties.enable", "yes"),
        ["spec.policies[1].properties.enable: expected true or false"],
    ),
    (
        "rules empty",
        edited(BASE, f"{POLICY}.properties.rules", []),
        [
            "spec.policies[1].properties.rules: must not be empty: leave rules out to leave "
            "every object alone, or add a rule"
        ],
    ),
    (
        "a deploy step naming the policy",
        edited(
            BASE,
            "spec.workflow",
            {
                "steps": [
                    {
                        "name": "all",
                        "type": "deploy",
                        "properties": {"policies": ["apply-once", "everywhere"]},
                    }
                ]
            },
        ),
        [
            "spec.workflow.steps[0].properties.policies[0]: 'apply-once' is an apply-once "
            "policy, which holds for the whole application: a deploy step names topology and "
            "override policies"
        ],
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_refusals_name_the_field(document: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(SpecError) as raised:
        load_application(yaml.safe_dump(document), "app.yaml")
    assert str(raised.value).splitlines() == [f"app.yaml: {line}" for line in expected]


def test_the_schema_describes_apply_once_for_editors() -> None:
    defs = json_schema()["$defs"]
    policy_types = [
        defs[ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"]
        for ref in defs["ApplicationSpec"]["properties"]["policies"]["items"]["oneOf"]
    ]
    assert policy_types == ["topology", "override", "apply-once"]
    selector = defs["ApplyOnceSelector"]["properties"]
    assert set(selector) == {"componentNames", "componentTypes", "resourceTypes", "resourceNames"}
    assert all(field["description"] for field in selector.values())
    strategy = defs["ApplyOnceStrategy"]["properties"]
    assert strategy["affect"]["enum"] == ["onUpdate", "onStateKeep", "always"]
    assert strategy["affect"]["default"] == "always"
    assert "`*` is the whole object" in strategy["path"]["description"]
    assert defs["ApplyOnceProperties"]["properties"]["enable"]["default"] is False
