"""What an offline render cannot be trusted for: templates calling `lookup`, and fields two
renders of the same values disagree on (hub.charts.offline, pure)."""

from __future__ import annotations

from typing import Any

import pytest

from hub.charts.offline import (
    Unstable,
    calls_lookup,
    lookup_templates,
    renders_alike,
    unstable_fields,
)


@pytest.mark.parametrize(
    "source",
    [
        '{{ $s := lookup "v1" "Secret" .Release.Namespace "x" }}',
        '{{- if (lookup "v1" "ConfigMap" "" "") }}x{{ end }}',
        '{{- range $i, $s := (lookup "v1" "Secret" "ns" "").items -}}{{ $s }}{{ end }}',
        '{{ "}}" }}{{ lookup "v1" "Secret" "" "" }}',
        'a: 1\n{{- /* a comment */ -}}\n{{ $x := (lookup\n  "v1" "Secret" "" "") }}',
    ],
)
def test_a_call_of_lookup_is_found(source: str) -> None:
    assert calls_lookup(source)


@pytest.mark.parametrize(
    "source",
    [
        "# lookup finds nothing offline\nkind: Secret\n",
        '{{/* lookup "v1" "Secret" */}}',
        "{{- /* keep what lookup found\n   on the cluster */ -}}",
        '{{ .Values.lookup }}{{ $lookup := 1 }}{{ include "lookupTable" . }}',
        "{{ printf \"%s\" `lookup` }}{{ 'l' }}",
        "no actions at all: lookup",
    ],
)
def test_lookup_in_a_comment_a_string_a_field_or_text_is_no_call(source: str) -> None:
    assert not calls_lookup(source)


def test_the_templates_calling_lookup_are_named_by_path() -> None:
    sources = {
        "templates/b.yaml": '{{ lookup "v1" "Secret" "" "" }}',
        "charts/db/templates/a.yaml": '{{ lookup "v1" "Secret" "" "" }}',
        "templates/c.yaml": "# lookup",
    }

    assert lookup_templates(sources) == ["charts/db/templates/a.yaml", "templates/b.yaml"]


@pytest.mark.parametrize(
    "source",
    [
        "password: {{ randAlphaNum 16 | b64enc }}",
        '{{- $ca := genCA "demo" 365 }}',
        'at: {{ now | date "2006" }}',
        "id: {{ uuidv4 }}",
        "{{ tpl .Values.extra . }}",  # the values may call any of them
        '{{ include "x" . }}{{ htpasswd "u" "p" }}',
    ],
)
def test_a_template_that_may_differ_on_every_render_is_found(source: str) -> None:
    assert not renders_alike({"templates/a.yaml": "a: 1", "templates/b.yaml": source})


@pytest.mark.parametrize(
    "source",
    [
        "{{/* randAlphaNum would differ */}}kind: Secret",
        '{{ .Values.now }}{{ $uuidv4 := 1 }}{{ include "tplHelper" . }}{{ "now" }}',
        "# now and then\nreplicas: {{ .Values.replicas }}",
        '{{ date "2006" .Values.when }}{{ lookup "v1" "Secret" "" "" }}',
    ],
)
def test_a_template_of_stable_functions_renders_alike(source: str) -> None:
    assert renders_alike({"templates/a.yaml": source})


def secret(password: str, name: str = "demo-token", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, **metadata},
        "data": {"password": password, "username": "dW1icmVsbGE="},
    }


def deployment(annotations: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "other"},
        "spec": {"template": {"metadata": {"annotations": annotations}}},
    }


def test_fields_that_differ_are_named_with_their_object() -> None:
    first = [secret("YQ=="), deployment({"rollme": "1", "checksum/config": "a"})]
    second = [secret("Yg=="), deployment({"rollme": "2", "checksum/config": "a"})]

    found = unstable_fields(first, second, "demo")

    assert found == [
        Unstable("Secret demo/demo-token", "data.password"),
        Unstable("Deployment other/web", "spec.template.metadata.annotations.rollme"),
    ]
    assert str(found[0]) == (
        "Secret demo/demo-token data.password changes on every render "
        "(randAlphaNum, uuidv4, now ...)"
    )


def test_identical_renders_warn_of_nothing() -> None:
    assert unstable_fields([secret("YQ==")], [secret("YQ==")], "demo") == []


def test_keys_with_dots_and_list_items_are_written_as_drift_paths_are() -> None:
    first = [deployment({"checksum/x.y": "a"}) | {"items": [{"v": 1}, {"v": 2}]}]
    second = [deployment({"checksum/x.y": "b"}) | {"items": [{"v": 1}, {"v": 3}]}]

    fields = [u.field for u in unstable_fields(first, second, "demo")]

    assert fields == ["items[1].v", 'spec.template.metadata.annotations["checksum/x.y"]']


def test_a_random_name_or_a_missing_object_is_the_whole_object() -> None:
    found = unstable_fields([secret("YQ==", "token-ab")], [secret("YQ==", "token-cd")], "demo")

    assert [str(u) for u in found] == [
        "Secret demo/token-ab is not rendered alike twice (its name or presence changes)"
    ]
    assert unstable_fields([secret("YQ==")], [], "demo") == [
        Unstable("Secret demo/demo-token", None)
    ]
