"""Shell completion: the scripts for bash, zsh and fish, and the names a running hub knows.

The shell runs `flotilla` with `_FLOTILLA_COMPLETE` set on every TAB (Typer's protocol);
the name completers below then ask the hub for its applications or clusters. A TAB must
never print an error into the line being typed, so with no hub, a slow one or any other
trouble they offer nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

# What `--show-completion` prints, for a shell named rather than guessed; Typer keeps
# it in this module in every version we support.
from typer._completion_shared import get_completion_script

from hub.cli.client import HubClient

PROG_NAME = "flotilla"
COMPLETE_VAR = "_FLOTILLA_COMPLETE"
# A TAB that waits longer than this feels broken; a hub on this machine answers in ms.
TIMEOUT = 1.0

Candidate = tuple[str, str]
"""A name and what zsh and fish show beside it."""


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def script(shell: Shell) -> str:
    """What `flotilla completion SHELL` prints: it calls `flotilla` back on every TAB."""
    return get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)


def _names(path: str, key: str, describe: Callable[[dict[str, Any]], str]) -> list[Candidate]:
    """Every `name` the hub lists under `key`, described; Typer keeps those that start
    with what was typed."""
    import asyncio  # a TAB only: the client's async face, which stand-ins also have

    try:
        answer = asyncio.run(HubClient.from_home(timeout=TIMEOUT).call("GET", path))
        return [(entry["name"], describe(entry)) for entry in answer[key]]
    except Exception:  # no hub, refused, timed out, an odd answer: no candidates, no noise
        return []


def complete_apps() -> list[Candidate]:
    """Application names, each with its phase and health (zsh and fish show them)."""
    return _names("/api/v1/apps", "applications", lambda a: f"{a['phase']}, {a['health']}")


def complete_clusters() -> list[Candidate]:
    """Member cluster names, each with its health and labels."""
    return _names("/api/v1/clusters", "clusters", _describe_cluster)


def _describe_cluster(cluster: dict[str, Any]) -> str:
    labels = [f"{k}={v}" for k, v in sorted(cluster["labels"].items())]
    return ", ".join([cluster["health"], *labels])
