"""Whether a cluster's version satisfies a chart's `kubeVersion`, exactly as Helm decides.

Helm checks Chart.yaml's `kubeVersion` with Masterminds semver (`chartutil.IsCompatibleRange`
against the live server's gitVersion), whose ranges read like npm's but whose pre-release
rule does not: a version with a pre-release (`v1.33.4-gke.1245000`, `v1.34.0-rc.1`) matches
an AND group only if some comparator of that group has a pre-release itself, whatever its
major.minor.patch — hence the `>=1.20.0-0` idiom of public charts. npm (and so
`semantic_version.NpmSpec`, which `refs` uses for chart versions) admits it only for the same
major.minor.patch, so a GKE cluster would fail a chart Helm installs there. Hence this small
checker of Helm's own rules; versions compare by semver 2 precedence (build metadata ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hub.charts.errors import ChartError
from hub.errors import InvalidInput

_X = frozenset({"x", "X", "*"})
_PART = r"(?:\d+|[xX*])"
_IDENTS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = rf"v?({_PART})(?:\.({_PART}))?(?:\.({_PART}))?(?:-({_IDENTS}))?(?:\+{_IDENTS})?"
_OPERATOR = r"!=|>=|=>|<=|=<|~>|[=<>~^]|"
_COMPARATOR = re.compile(rf"({_OPERATOR})\s*{_VERSION}")
_GROUP = re.compile(
    rf"\s*(?:{_OPERATOR})\s*{_VERSION}(?:(?:\s+|,\s*)(?:{_OPERATOR})\s*{_VERSION})*\s*"
)
_RANGE_END = rf"v?{_PART}(?:\.{_PART}){{0,2}}(?:-{_IDENTS})?(?:\+{_IDENTS})?"
_HYPHEN_RANGE = re.compile(rf"({_RANGE_END})\s+-\s+({_RANGE_END})")
_ALIASES = {"=>": ">=", "=<": "<=", "~>": "~", "": "="}


class InvalidConstraint(ChartError, InvalidInput):
    """A chart's `kubeVersion` that is no semver range."""


class IncompatibleCluster(ChartError, InvalidInput):
    """The cluster's version is outside the chart's `kubeVersion`: Helm would not install
    the chart there, so its target fails, and only its target."""


@dataclass(frozen=True, order=True)
class _Version:
    """A version by semver 2 precedence: a release above its pre-releases, pre-release
    identifiers numeric below alphanumeric, a longer list above its prefix."""

    key: tuple[Any, ...] = field(init=False, repr=False)
    major: int = field(compare=False)
    minor: int = field(compare=False)
    patch: int = field(compare=False)
    prerelease: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        identifiers = tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in self.prerelease)
        release = (self.major, self.minor, self.patch)
        object.__setattr__(self, "key", (*release, 0 if self.prerelease else 1, identifiers))


@dataclass(frozen=True)
class _Comparator:
    operator: str
    version: _Version
    """The version written, with wildcards as 0."""
    wildcard: int | None
    """The first part written as a wildcard or left out (0 major, 1 minor, 2 patch)."""


def satisfies(constraint: str, version: str) -> bool:
    """Whether `version` (a server's gitVersion) is in `constraint` (Masterminds syntax:
    `||` of AND groups, comparators separated by spaces or commas, `A - B` ranges, `~`,
    `^`, wildcards). Raises InvalidConstraint for a constraint that is none."""
    groups = [_parse_group(part, constraint) for part in _hyphens(constraint).split("||")]
    parsed = _version(version)
    if parsed is None:
        return False  # Helm: a version it cannot parse is compatible with nothing
    for group in groups:
        if parsed.prerelease and not any(c.version.prerelease for c in group):
            continue
        if all(_holds(c, parsed) for c in group):
            return True
    return False


def _hyphens(constraint: str) -> str:
    return _HYPHEN_RANGE.sub(r">= \1, <= \2", constraint)


def _parse_group(text: str, constraint: str) -> list[_Comparator]:
    if _GROUP.fullmatch(text) is None:
        raise InvalidConstraint(f"kubeVersion {constraint!r} is not a semver constraint")
    return [_comparator(match) for match in _COMPARATOR.finditer(text)]


def _comparator(match: re.Match[str]) -> _Comparator:
    operator, *parts, prerelease = match.groups()
    wildcard = next((i for i, p in enumerate(parts) if p is None or p in _X), None)
    numbers = [
        int(p) if i < (wildcard if wildcard is not None else 3) else 0 for i, p in enumerate(parts)
    ]
    version = _Version(
        major=numbers[0],
        minor=numbers[1],
        patch=numbers[2],
        prerelease=tuple(prerelease.split(".")) if prerelease else (),
    )
    return _Comparator(_ALIASES.get(operator, operator), version, wildcard)


def _version(text: str) -> _Version | None:
    match = re.fullmatch(rf"\s*{_VERSION}\s*", text)
    if match is None or any(p in _X for p in match.groups()[:3] if p):
        return None
    major, minor, patch, prerelease = match.groups()
    return _Version(
        major=int(major),
        minor=int(minor or 0),
        patch=int(patch or 0),
        prerelease=tuple(prerelease.split(".")) if prerelease else (),
    )


def _holds(c: _Comparator, v: _Version) -> bool:
    """One comparator, Masterminds' way: a wildcard widens `=` and `!=` to the range it
    leaves open, and `>`/`<=` compare only the parts that were written."""
    con, wild = c.version, c.wildcard
    if c.operator == "=":
        return _tilde(c, v) if wild is not None else v == con
    if c.operator == "!=":
        return _differs(c, v)
    if c.operator == ">":
        if wild is None or v.major != con.major:
            return v > con if wild is None else v.major > con.major
        return v > con if wild == 0 else wild == 2 and v.minor > con.minor
    if c.operator == "<":
        return v < con
    if c.operator == ">=":
        return v >= con
    if c.operator == "<=":
        if wild is None:
            return v <= con
        return v.major < con.major or (v.major == con.major and (wild == 1 or v.minor <= con.minor))
    if c.operator == "~":
        return _tilde(c, v)
    return _caret(c, v)


def _differs(c: _Comparator, v: _Version) -> bool:
    con, wild = c.version, c.wildcard
    if wild is not None:
        if v.major != con.major:
            return True
        if wild == 1:
            return False
        if v.minor != con.minor:
            return True
        if wild == 2:
            return v.prerelease != con.prerelease
    return v != con


def _tilde(c: _Comparator, v: _Version) -> bool:
    """`~1.2.3` is >=1.2.3 <1.3.0; `~1` (and `1.x`) is >=1.0.0 <2.0.0; `~*` is anything."""
    con = c.version
    if v < con:
        return False
    if (con.major, con.minor, con.patch) == (0, 0, 0) and c.wildcard not in (1, 2):
        return True
    return v.major == con.major and (c.wildcard == 1 or v.minor == con.minor)


def _caret(c: _Comparator, v: _Version) -> bool:
    """`^1.2.3` is >=1.2.3 <2.0.0; `^0.2.3` is >=0.2.3 <0.3.0; `^0.0.3` is =0.0.3."""
    con = c.version
    if v < con:
        return False
    if con.major > 0 or c.wildcard == 1:
        return v.major == con.major
    if v.major > 0:
        return False
    if con.minor > 0 or c.wildcard == 2:
        return v.minor == con.minor
    return v.minor == 0 and v.patch == con.patch
