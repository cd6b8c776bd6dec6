"""A chart's `kubeVersion` against a cluster's version, by Helm's (Masterminds') rules.

Every case here gave the same answer from Masterminds/semver v3.5.0 (the version Helm v4
uses) when this was written.
"""

from __future__ import annotations

import pytest

from hub.charts.kubeversion import InvalidConstraint, satisfies

CASES = [
    # plain comparisons, `v` or not
    (">=1.20.0", "v1.34.4", True),
    (">= 1.20", "1.34.4", True),
    ("<1.30.0", "v1.34.4", False),
    (">=1.20.0, <1.35.0", "v1.34.4", True),
    (">=1.20.0 <1.34.0", "v1.34.4", False),
    ("=1.34.4", "v1.34.4", True),
    ("1.34.4", "v1.34.4+build.7", True),
    ("!=1.34.4", "v1.34.4", False),
    (">1.34", "v1.34.9", False),
    (">1.33", "v1.34.0", True),
    (">1", "v1.99.0", False),
    ("<=1.34", "v1.34.9", True),
    ("<=1.33", "v1.34.0", False),
    # or-groups, wildcards, hyphen ranges, tilde and caret
    ("<1.20.0 || >=1.30.0", "v1.34.4", True),
    ("1.34.x", "v1.34.4", True),
    ("1.33.x", "v1.34.4", False),
    ("1.x", "v1.34.4", True),
    ("*", "v1.34.4", True),
    ("1.30 - 1.34", "v1.34.4", True),
    ("1.30.0 - 1.34.0", "v1.34.4", False),
    ("~1.34.0", "v1.34.4", True),
    ("~1.33.0", "v1.34.4", False),
    ("~>1.34", "v1.34.4", True),
    ("^1.20.0", "v1.34.4", True),
    ("^0.2.3", "0.2.9", True),
    ("^0.2.3", "0.3.0", False),
    ("^0.0.3", "0.0.4", False),
    ("!=1.34.x", "v1.34.4", False),
    ("!=1.33.x", "v1.34.4", True),
    # pre-releases: only an AND group that has one admits them, whatever the patch
    (">=1.20.0", "v1.33.4-gke.1245000", False),
    (">=1.20.0-0", "v1.33.4-gke.1245000", True),
    (">=1.20.0-0, <1.34.0", "v1.33.4-gke.1245000", True),
    (">=1.20.0 || >=1.30.0-0", "v1.33.4-gke.1245000", True),
    (">=1.34.0-0", "v1.34.0-rc.1", True),
    (">=1.34.0-rc.2", "v1.34.0-rc.10", True),
    (">=1.34.0", "v1.34.0-rc.1", False),
    (">=1.99.0-0", "v1.34.4", False),
    # Masterminds' own corners, checked against github.com/Masterminds/semver/v3 v3.5.0
    ("^*", "v1.2.3", False),
    ("!=*", "v1.2.3", True),
    (">*", "v1.2.3", True),
    ("<=*", "v1.2.3", False),
    ("~0", "v0.5.0", True),
    ("~0.0", "v0.0.5", True),
    ("~0.0", "v0.1.0", False),
    ("^0.x", "v0.3.0", True),
    (">=1.0.0-0 <2", "v1.5.0-rc.1", True),
    ("1.2 - 1.4.5", "1.4.6", False),
    ("=1.34", "v1.34.9", True),
    ("!=1.34", "v1.34.9", False),
    ("!=1.34.4-rc.1", "v1.34.4-rc.1", False),
    (">1.x", "1.9.0", False),
    # a version that is none matches nothing
    (">=1.0.0", "not-a-version", False),
]


@pytest.mark.parametrize(("constraint", "version", "expected"), CASES)
def test_satisfies_as_helm_decides(constraint: str, version: str, expected: bool) -> None:
    assert satisfies(constraint, version) is expected


@pytest.mark.parametrize("constraint", ["", "not a range", ">=1.2.3 ||", ">=1.2.3<2", ">>1"])
def test_a_constraint_that_is_none_is_refused_by_name(constraint: str) -> None:
    with pytest.raises(InvalidConstraint, match=r"kubeVersion .* is not a semver constraint"):
        satisfies(constraint, "v1.34.4")
