"""Loading and rendering local charts with Helm's engine: what comes out, and how it fails.

Each test writes a small chart of its own, so every rule is visible next to its assertion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hub.charts import (
    ChartCache,
    ChartNotFound,
    ChartRef,
    ChartRenderError,
    InvalidChart,
    InvalidChartRef,
    InvalidValues,
    LoadedChart,
)
from hub.charts import render as render_module

CHART_YAML = "apiVersion: v2\nname: app\nversion: 1.2.3\nappVersion: '4.5'\n"
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Values.suffix }}
data:
  revision: {{ .Release.Revision | quote }}
  upgrade: {{ .Release.IsUpgrade | quote }}
"""


def write_chart(root: Path, files: dict[str, str]) -> Path:
    """Chart `app` under `root`, from paths relative to the chart; returns `root`."""
    defaults = {"Chart.yaml": CHART_YAML, "values.yaml": "suffix: config\n"}
    for name, text in {**defaults, **files}.items():
        path = root / "app" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def load(root: Path, version: str | None = None) -> LoadedChart:
    return await ChartCache(root / "cache").fetch(ChartRef("local", str(root), "app", version))


def render(chart: LoadedChart, values: dict[str, Any] | None = None, revision: int = 1) -> Any:
    return chart.render(values or {}, release_name="rel", namespace="ns", revision=revision)


async def test_templates_come_by_path_and_crds_apart(tmp_path: Path) -> None:
    object_yaml = "apiVersion: {}\nkind: {}\nmetadata:\n  name: x\n"
    test_hook = object_yaml.format("v1", "Pod") + "  annotations:\n    helm.sh/hook: test\n"
    chart = await load(
        write_chart(
            tmp_path,
            {
                "templates/b.yaml": CONFIGMAP,
                "templates/a.yaml": "---\n# nothing\n---\n" + object_yaml.format("v1", "Secret"),
                "templates/_helpers.tpl": '{{- define "x" }}y{{ end }}',
                "templates/NOTES.txt": "Thanks for installing {{ .Release.Name }}",
                "templates/test.yaml": test_hook,
                "crds/foo.yaml": object_yaml.format(
                    "apiextensions.k8s.io/v1", "CustomResourceDefinition"
                ),
            },
        )
    )

    kinds = [obj["kind"] for obj in render(chart)]

    assert kinds == ["Secret", "ConfigMap"]
    assert [obj["kind"] for obj in chart.crds] == ["CustomResourceDefinition"]


async def test_chart_identity_defaults_and_schema(tmp_path: Path) -> None:
    schema = '{"type": "object", "properties": {"suffix": {"type": "string"}}}'
    chart = await load(
        write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP, "values.schema.json": schema})
    )

    assert (chart.name, chart.version, chart.app_version) == ("app", "1.2.3", "4.5")
    assert chart.default_values == {"suffix": "config"}
    assert chart.schema == {"type": "object", "properties": {"suffix": {"type": "string"}}}
    assert chart.digest.startswith("sha256:")


async def test_revision_renders_install_then_upgrade(tmp_path: Path) -> None:
    chart = await load(write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP}))

    (first,) = render(chart, revision=1)
    (second,) = render(chart, revision=2)

    assert first["data"] == {"revision": "1", "upgrade": "false"}
    assert second["data"] == {"revision": "2", "upgrade": "true"}


async def test_one_set_of_values_renders_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = await load(write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP}))
    calls = []
    original = render_module._helm_render

    def counting(*args: Any) -> dict[str, str]:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(render_module, "_helm_render", counting)

    first = render(chart, {"suffix": "x", "extra": {"b": 1, "a": 2}})
    first[0]["metadata"]["name"] = "edited by the caller"
    second = render(chart, {"extra": {"a": 2, "b": 1}, "suffix": "x"})
    render(chart, {"suffix": "y"})

    assert len(calls) == 2
    assert second[0]["metadata"]["name"] == "rel-x"


async def test_a_manifest_rendered_alike_for_another_namespace_is_parsed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Targets of a plan mostly differ by namespace only, which charts rarely write into
    their manifests: the same text is parsed once, and each caller still gets objects of
    its own to edit, the first caller's edits reaching no later render."""
    chart = await load(write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP}))
    parsed: list[str] = []
    original = LoadedChart._parse

    def counting(self: LoadedChart, path: str, text: str) -> Any:
        parsed.append(path)
        return original(self, path, text)

    monkeypatch.setattr(LoadedChart, "_parse", counting)
    first = chart.render({}, release_name="rel", namespace="a")
    first[0]["data"]["revision"] = "edited by the caller"
    second = chart.render({}, release_name="rel", namespace="b")
    renamed = chart.render({}, release_name="other", namespace="b")

    assert parsed == ["app/templates/cm.yaml", "app/templates/cm.yaml"]
    assert second[0]["data"]["revision"] == "1"
    assert renamed[0]["metadata"]["name"] == "other-config"


async def test_values_found_valid_are_not_checked_again_and_invalid_ones_always_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = '{"type": "object", "properties": {"suffix": {"type": "string"}}}'
    chart = await load(
        write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP, "values.schema.json": schema})
    )
    checked: list[Any] = []
    handle = chart._handle
    original = handle.validate_schema

    def counting(values: Any) -> Any:
        checked.append(values)
        return original(values)

    monkeypatch.setattr(handle, "validate_schema", counting)

    for _ in range(2):
        chart.validate({"suffix": "x"})
        with pytest.raises(InvalidValues, match="suffix: got number, want string"):
            chart.validate({"suffix": 5})

    assert len(checked) == 3


async def test_timestamps_stay_strings(tmp_path: Path) -> None:
    """Kubernetes gets what Helm sends: an unquoted date is a string, not a YAML timestamp."""
    dated = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n"
    dated += "data:\n  since: {{ .Values.since }}\n"
    chart = await load(write_chart(tmp_path, {"templates/dated.yaml": dated}))

    (configmap,) = render(chart, {"since": "2024-01-01"})

    assert configmap["data"] == {"since": "2024-01-01"}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        (
            "{{ .Values.missing.deeper }}",
            "chart app 1.2.3: app/templates/bad.yaml:1:10 executing",
        ),
        ("a: [unclosed", "chart app 1.2.3: app/templates/bad.yaml renders invalid YAML: "),
        ("- just\n- a list\n", "chart app 1.2.3: app/templates/bad.yaml document 1 is not a"),
        ("kind: NoApiVersion\n", "chart app 1.2.3: app/templates/bad.yaml document 1 is not a"),
    ],
)
async def test_render_errors_are_one_line_naming_chart_and_template(
    tmp_path: Path, template: str, message: str
) -> None:
    chart = await load(write_chart(tmp_path, {"templates/bad.yaml": template}))

    with pytest.raises(ChartRenderError) as error:
        render(chart)

    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


async def test_values_must_be_json(tmp_path: Path) -> None:
    chart = await load(write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP}))

    with pytest.raises(InvalidValues, match=r"chart app 1\.2\.3: values must be plain JSON data"):
        render(chart, {"when": object()})


async def test_subchart_schema_keys_are_prefixed(tmp_path: Path) -> None:
    root = write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP})
    sub = root / "app" / "charts" / "sub"
    (sub / "templates").mkdir(parents=True)
    (sub / "Chart.yaml").write_text("apiVersion: v2\nname: sub\nversion: 0.1.0\n")
    (sub / "values.yaml").write_text("port: 80\n")
    (sub / "values.schema.json").write_text(
        '{"type": "object", "properties": {"port": {"type": "integer"}}}'
    )
    chart = await load(root)

    with pytest.raises(InvalidValues) as error:
        chart.validate({"sub": {"port": "eighty"}})

    assert str(error.value) == (
        "chart app 1.2.3: values do not match values.schema.json: "
        "sub.port: got string, want integer"
    )


async def test_missing_directory_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ChartNotFound) as error:
        await load(tmp_path)

    assert str(error.value) == f"chart app (latest): no chart directory at {tmp_path / 'app'}"


async def test_pinned_version_must_match_the_directory(tmp_path: Path) -> None:
    root = write_chart(tmp_path, {"templates/cm.yaml": CONFIGMAP})

    with pytest.raises(ChartNotFound) as error:
        await load(root, "2.0.0")

    assert str(error.value) == f"chart app 2.0.0: no such version in {root}; it has 1.2.3"
    assert (await load(root, "^1.2")).version == "1.2.3"


async def test_broken_chart_is_invalid(tmp_path: Path) -> None:
    root = write_chart(tmp_path, {"Chart.yaml": "name: [unclosed\n"})

    with pytest.raises(InvalidChart) as error:
        await load(root)

    assert str(error.value).startswith(f"chart app (latest): {root / 'app'}: ")
    assert "\n" not in str(error.value)


async def test_unsupported_repo_type_is_invalid_input(tmp_path: Path) -> None:
    ref = ChartRef("git", "https://example.com/repo.git", "app", "1.0.0")  # type: ignore[arg-type]

    with pytest.raises(InvalidChartRef) as error:
        await ChartCache(tmp_path).fetch(ref)

    assert str(error.value) == "chart app 1.0.0: repoType 'git' is not one of helm, oci, local"
