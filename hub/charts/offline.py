"""What a render made offline cannot be trusted for, where `helm upgrade` renders live.

Flotilla renders with Helm's engine but never against a member cluster (one render serves
many, and a plan must not depend on reaching a member), as `helm template` does. Two kinds
of template come out differently from what `helm upgrade --install` would apply:

- `lookup` finds nothing, so a chart that reads a live object (typically to keep a
  password it generated once) takes its "not there yet" branch on every render;
- templates that draw random values or read the clock (`randAlphaNum`, `uuidv4`, `now`,
  `genCA` ...) differ on every render, and a field that differs looks changed to every
  later comparison. A second render shows them; a chart none of whose templates calls
  such a function (`renders_alike`) is not rendered twice.

The planner names both, so that a user learns it from `plan` and not from a Secret that
changes under their application. Pure: this reads template sources and compares objects
that were rendered elsewhere; it never renders and never interprets a template's meaning,
only finds the name of a function called in its actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusters.drift import path_text
from clusters.resources import ObjectRef

# `lookup` used as a function: not a field (`.lookup`), a variable (`$lookup`) or part of
# a longer name (`lookupTable`).
_LOOKUP_CALL = re.compile(r"(?<![\w.$])lookup(?![\w])")
# What comes out differently on every render (Sprig's functions.go: random values, the
# clock, generated keys and certificates, salted hashes, DNS answers), and Helm's `tpl`,
# which renders text from the values, where no template shows what it calls.
UNSTABLE_FUNCTIONS = (
    "now",
    "ago",
    "randAlphaNum",
    "randAlpha",
    "randAscii",
    "randNumeric",
    "randInt",
    "randBytes",
    "shuffle",
    "uuidv4",
    "getHostByName",
    "bcrypt",
    "htpasswd",
    "encryptAES",
    "genPrivateKey",
    "genCA",
    "genCAWithKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "tpl",
)
_UNSTABLE_CALL = re.compile(r"(?<![\w.$])(?:" + "|".join(UNSTABLE_FUNCTIONS) + r")(?![\w])")
_OPEN, _CLOSE = "{{", "}}"
# A comment opens an action, after a trim marker if any: `{{/*` or `{{- /*`.
_COMMENT_OPEN = re.compile(r"(?:-\s+)?/\*")
_COMMENT_CLOSE = "*/"
_QUOTES = "\"'`"


def calls_lookup(source: str) -> bool:
    """Whether a Go template's actions call `lookup`; comments (`{{/* lookup */}}`),
    string literals (`"lookup"`) and the text between actions (a YAML `# lookup`) do not
    count."""
    return any(_LOOKUP_CALL.search(code) for code in _actions(source))


def lookup_templates(sources: Mapping[str, str]) -> list[str]:
    """The paths of the templates (of `sources`, by path) that call `lookup`, sorted."""
    return sorted(path for path, source in sources.items() if calls_lookup(source))


def renders_alike(sources: Mapping[str, str]) -> bool:
    """Whether two renders of the same input must come out the same: no template (of
    `sources`, by path) calls one of `UNSTABLE_FUNCTIONS`. When it holds, a second render
    can show nothing `unstable_fields` would find, and need not be made."""
    return not any(
        _UNSTABLE_CALL.search(code) for source in sources.values() for code in _actions(source)
    )


def _actions(source: str) -> Iterator[str]:
    """The code of each action of a Go template, string literals blanked and comments
    left out. Go's lexer ends an action at the first `}}` outside a literal, and a comment
    at its `*/`; so does this."""
    position = source.find(_OPEN)
    while position != -1:
        start = position + len(_OPEN)
        if _COMMENT_OPEN.match(source, start):
            end = source.find(_COMMENT_CLOSE, start)
            if end == -1:
                return
            position = source.find(_OPEN, end)
            continue
        code, end = _action_code(source, start)
        yield code
        position = source.find(_OPEN, end)


def _action_code(source: str, start: int) -> tuple[str, int]:
    """The code of the action from `start` to its `}}` with literals blanked, and where it
    ends; an action left open runs to the end of the source."""
    code: list[str] = []
    index = start
    while index < len(source):
        char = source[index]
        if source.startswith(_CLOSE, index):
            return "".join(code), index + len(_CLOSE)
        if char in _QUOTES:
            index = _literal_end(source, index)
            code.append(" ")
            continue
        code.append(char)
        index += 1
    return "".join(code), index


def _literal_end(source: str, start: int) -> int:
    """Just past the string, raw string or character literal opening at `start`."""
    quote = source[start]
    index = start + 1
    while index < len(source):
        if source[index] == "\\" and quote != "`":
            index += 2
            continue
        if source[index] == quote:
            return index + 1
        index += 1
    return index


@dataclass(frozen=True)
class Unstable:
    """A field (or a whole object) that two renders with the same values disagree on."""

    object: str
    """`Secret demo/canary-demo-token`."""
    field: str | None
    """`data.password`; None when the renders disagree on which objects there are."""

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.object} is not rendered alike twice (its name or presence changes)"
        return f"{self.object} {self.field} changes on every render (randAlphaNum, uuidv4, now ...)"


def unstable_fields(
    first: Sequence[Mapping[str, Any]], second: Sequence[Mapping[str, Any]], namespace: str
) -> list[Unstable]:
    """What differs between two renders of the same chart, values and release. Objects
    are paired by position: a render lists them by template path and document, which no
    random value changes, so a position whose object has another identity is one whose
    name (or whose presence) is random."""
    found: list[Unstable] = []
    for index in range(max(len(first), len(second))):
        a = first[index] if index < len(first) else None
        b = second[index] if index < len(second) else None
        shown = _shown(a if a is not None else b, namespace)
        if a is None or b is None or ObjectRef.of(a) != ObjectRef.of(b):
            found.append(Unstable(shown, None))
            continue
        found += [Unstable(shown, path_text(path)) for path in _differing(a, b, ())]
    return found


def _differing(a: Any, b: Any, at: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """The paths of the leaves (or of the smallest subtrees) where `a` and `b` differ."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            yield from _differing(a.get(key), b.get(key), (*at, str(key)))
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differing(x, y, (*at, index))
    elif a != b:
        yield at


def _shown(obj: Mapping[str, Any] | None, namespace: str) -> str:
    metadata = (obj or {}).get("metadata") or {}
    kind = (obj or {}).get("kind")
    return f"{kind} {metadata.get('namespace') or namespace}/{metadata.get('name')}"
