"""Version resolution: which chart version a KubeVela `version` field selects, as Helm would."""

from __future__ import annotations

import pytest

from hub.charts import ChartNotFound, ChartRef, InvalidChartRef, resolve_version

AVAILABLE = ["1.0.0", "1.2.3", "1.10.0", "2.0.0-rc.1", "v2.1.0", "0.9.0"]


def ref(version: str | None) -> ChartRef:
    return ChartRef("helm", "https://charts.example.com", "app", version)


@pytest.mark.parametrize(
    ("requested", "resolved"),
    [
        (None, "v2.1.0"),  # newest stable, the leading v does not matter
        ("", "v2.1.0"),
        ("*", "v2.1.0"),
        ("1.2.3", "1.2.3"),
        ("2.1.0", "v2.1.0"),
        ("2.0.0-rc.1", "2.0.0-rc.1"),  # a prerelease only when asked for by name
        ("^1", "1.10.0"),  # numeric, not string, order
        ("~1.2", "1.2.3"),
        (">= 1.0.0, < 1.5.0", "1.2.3"),  # Masterminds: comma means and, spaces allowed
        ("=> 1.0.0, =< 1.2.3", "1.2.3"),
        ("< 1.0.0 || >= 2.1.0", "v2.1.0"),
        ("1.x", "1.10.0"),
        ("1.0.0 - 1.2.3", "1.2.3"),
    ],
)
def test_resolves_like_helm(requested: str | None, resolved: str) -> None:
    assert resolve_version(ref(requested), AVAILABLE) == resolved


def test_no_match_lists_versions_newest_first() -> None:
    with pytest.raises(ChartNotFound) as error:
        resolve_version(ref("^3"), AVAILABLE)

    assert str(error.value) == (
        "chart app ^3: no such version in https://charts.example.com; "
        "it has v2.1.0, 2.0.0-rc.1, 1.10.0, 1.2.3, 1.0.0, 0.9.0"
    )


def test_long_version_lists_are_cut() -> None:
    many = [f"1.0.{patch}" for patch in range(15)]

    with pytest.raises(ChartNotFound) as error:
        resolve_version(ref("9.9.9"), many)

    assert str(error.value).endswith(
        "it has 1.0.14, 1.0.13, 1.0.12, 1.0.11, 1.0.10, 1.0.9, "
        "1.0.8, 1.0.7, 1.0.6, 1.0.5 and 5 more"
    )


def test_only_prereleases_is_no_latest() -> None:
    with pytest.raises(ChartNotFound, match=r"it has 1\.0\.0-beta$"):
        resolve_version(ref(None), ["1.0.0-beta"])


def test_garbage_constraint_is_invalid_input() -> None:
    with pytest.raises(InvalidChartRef, match="chart app latest: not a version or a semver"):
        resolve_version(ref("latest"), AVAILABLE)
