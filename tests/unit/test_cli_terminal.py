"""The command line's terminal habits (issue 14, section 4): shell completion of the names
a hub knows, `up --wait`'s lines per cluster, NO_COLOR, and tables that fit the width.

Completion runs in-process with Typer's test runner and a stand-in client. What depends
on the environment a CLI process starts with (its consoles are made at import) runs the
real `python -m hub` against a stand-in hub: a small aiohttp server with scripted answers.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import typer.main
from aiohttp import web
from aiohttp.test_utils import TestServer
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.cli import completion
from hub.cli.output import grid
from hub.cli.views import ProgressLog, progress_table
from tests.shapes import assert_shape


def _app(name: str, phase: str, health: str) -> dict[str, Any]:
    return {
        "name": name,
        "revision": 1,
        "publishVersion": None,
        "phase": phase,
        "health": health,
        "message": "",
        "updated": None,
    }


def _member(name: str, health: str, labels: dict[str, str]) -> dict[str, Any]:
    watch = {
        "state": "synced",
        "error": None,
        "restarts": 0,
        "lastError": None,
        "lastErrorAt": None,
    }
    return {
        "name": name,
        "uid": f"uid-{name}",
        "labels": labels,
        "server": f"https://{name}.clusters.example:6443",
        "version": "v1.34.4",
        "apiVersions": 98,
        "health": health,
        "reason": "",
        "lastSeen": None,
        "joinedAt": None,
        "credential": "token",
        "prometheus": None,
        "warnings": [],
        "watch": watch,
    }


APPS = {
    "applications": [
        _app("web", "succeeded", "Healthy"),
        _app("worker", "suspended", "Suspended"),
        _app("api", "failed", "Degraded"),
    ]
}
CLUSTERS = {
    "clusters": [
        _member("dev", "Healthy", {"env": "dev"}),
        _member("prod-eu", "Healthy", {"env": "prod", "region": "eu"}),
        _member("prod-us", "Unreachable", {"env": "prod"}),
    ],
    "prober": {"running": True, "restarts": 0, "lastError": None, "lastErrorAt": None},
}
LONG = ("the chart's values fail its schema: replicaCount must be an integer " * 8)[:500]
"""A 500-character error message, of words, as a failed target reports it."""


# completion


class _Client:
    """Stands in for HubClient in hub.cli.completion: answers the two lists."""

    timeouts: list[float] = []

    @classmethod
    def from_home(cls, home: object = None, *, timeout: float) -> _Client:
        cls.timeouts.append(timeout)
        return cls()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        return {"/api/v1/apps": APPS, "/api/v1/clusters": CLUSTERS}[path]


@pytest.fixture
def listed(monkeypatch: pytest.MonkeyPatch) -> None:
    _Client.timeouts.clear()
    monkeypatch.setattr(completion, "HubClient", _Client)


def _complete(line: str, shell: str = "bash", env: dict[str, str] | None = None) -> list[str]:
    """What `flotilla` answers the shell's TAB at the end of `line`, one entry a line."""
    words = line.split()
    protocol = (
        {"COMP_WORDS": line, "COMP_CWORD": str(len(words) - (not line.endswith(" ")))}
        if shell == "bash"
        else {"_TYPER_COMPLETE_ARGS": line, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    )
    result = CliRunner().invoke(
        cli,
        [],
        env={"_FLOTILLA_COMPLETE": f"complete_{shell}", **protocol, **(env or {})},
        prog_name="flotilla",
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "error" not in result.output
    return [line for line in result.output.splitlines() if line]  # bash's "none" is ""


APP_COMMANDS = [
    "status",
    "history",
    "delete",
    "workflow resume",
    "workflow suspend",
    "workflow restart",
    "workflow rollback",
]
CLUSTER_COMMANDS = [
    "cluster show",
    "cluster labels add",
    "cluster labels del",
    "cluster detach",
    "cluster prometheus",
    "cluster rename",
]


@pytest.mark.usefixtures("listed")
@pytest.mark.parametrize("command", APP_COMMANDS)
def test_an_application_argument_completes_to_the_hubs_applications(command: str) -> None:
    assert _complete(f"flotilla {command} ") == ["web", "worker", "api"]
    assert _complete(f"flotilla {command} w") == ["web", "worker"]


@pytest.mark.usefixtures("listed")
@pytest.mark.parametrize("command", CLUSTER_COMMANDS)
def test_a_cluster_argument_completes_to_the_hubs_clusters(command: str) -> None:
    assert _complete(f"flotilla {command} ") == ["dev", "prod-eu", "prod-us"]
    assert _complete(f"flotilla {command} prod-") == ["prod-eu", "prod-us"]
    assert _Client.timeouts and set(_Client.timeouts) == {completion.TIMEOUT}


@pytest.mark.usefixtures("listed")
def test_what_is_not_a_name_the_hub_has_completes_to_no_name() -> None:
    """The new name of a rename, label pairs and URLs are the user's to type."""
    for line in ("flotilla cluster rename dev ", "flotilla cluster labels add dev "):
        assert _complete(line) == []
    assert "workflow" in _complete("flotilla wor")


@pytest.mark.usefixtures("listed")
def test_zsh_and_fish_show_what_each_name_is() -> None:
    fish = _complete("flotilla cluster show prod", shell="fish")
    assert fish == ["prod-eu\tHealthy, env=prod, region=eu", "prod-us\tUnreachable, env=prod"]
    zsh = " ".join(_complete("flotilla status w", shell="zsh"))
    assert '"web":"succeeded, Healthy"' in zsh and '"worker":"suspended, Suspended"' in zsh


def test_with_no_hub_a_name_completes_to_nothing_and_says_nothing(tmp_path: Path) -> None:
    env = {"FLOTILLA_HOME": str(tmp_path / "home"), "FLOTILLA_HUB": "", "FLOTILLA_TOKEN": ""}
    assert _complete("flotilla status ", env=env) == []
    assert _complete("flotilla cluster show ", shell="fish", env=env) == []


@pytest.fixture
def silent_hub() -> Iterator[str]:
    """A port that accepts connections and never answers: a hub that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_hub_that_does_not_answer_costs_a_tab_one_second(silent_hub: str) -> None:
    started = time.monotonic()
    env = {"FLOTILLA_HUB": silent_hub, "FLOTILLA_TOKEN": "token"}
    assert _complete("flotilla cluster detach ", env=env) == []
    assert time.monotonic() - started < completion.TIMEOUT + 2


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_flotilla_completion_prints_the_script_that_calls_flotilla_back(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell], prog_name="flotilla")
    assert result.exit_code == 0, result.output
    assert f"_FLOTILLA_COMPLETE=complete_{shell}" in result.output
    assert "flotilla" in result.output.split()[-1] or "flotilla)" in result.output


def test_install_and_show_completion_are_options_of_flotilla() -> None:
    shown = CliRunner().invoke(cli, ["--help"], prog_name="flotilla", env={"NO_COLOR": "1"})
    assert "--install-completion" in shown.output and "--show-completion" in shown.output


# the lines of `up --wait`


def _release(
    phase: str, health: str, message: str = "", rollout: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "component": "web",
        "release": "web",
        "namespace": "web",
        "chart": "web-2.0.0",
        "phase": phase,
        "message": message,
        "health": health,
        "reason": message if health != "Healthy" else "",
        "rollout": rollout,
        "objects": [],
        "hooks": [],
        "crds": [],
    }


def _status(
    phase: str, dev: dict[str, Any], prod: dict[str, Any], next: str | None = None
) -> dict[str, Any]:
    """`web` revision 2: deploy-dev on dev, an approval, deploy-prod on prod-eu."""

    def step(name: str, kind: str, phase: str, clusters: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "name": name,
            "type": kind,
            "phase": phase,
            "message": "",
            "analysis": [],
            "health": "Healthy",
            "reason": "",
            "clusters": clusters,
        }

    def on(cluster: str, release: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "name": cluster,
                "labels": {},
                "reachable": True,
                "clusterHealth": "Healthy",
                "lastSeen": None,
                "health": release["health"],
                "reason": "",
                "releases": [release],
            }
        ]

    return {
        "name": "web",
        "revision": 2,
        "publishVersion": None,
        "phase": phase,
        "health": prod["health"] if prod["health"] != "Healthy" else dev["health"],
        "reason": "",
        "message": "",
        "next": next,
        "steps": [
            step("deploy-dev", "deploy", dev["phase"], on("dev", dev)),
            step("approve", "suspend", "succeeded", []),
            step("deploy-prod", "deploy", prod["phase"], on("prod-eu", prod)),
        ],
    }


CANARY = {
    "workload": "Deployment/web",
    "step": "1/2",
    "stage": "traffic-routing",
    "weight": 20,
    "canary": "2/2 new pods ready",
    "resumeAt": None,
}
DEV_WAITS = _release("waiting", "Progressing", "1/2 replicas ready")
PROGRESS = [
    _status("running", DEV_WAITS, _release("pending", "Progressing", "not deployed yet")),
    _status("running", DEV_WAITS, _release("pending", "Progressing", "not deployed yet")),
    _status(
        "running",
        _release("healthy", "Healthy"),
        _release("applying", "Progressing", "canary step 1/2: traffic-routing", CANARY),
    ),
    _status(
        "failed",
        _release("healthy", "Healthy"),
        _release("failed", "Degraded", LONG, CANARY),
        next="fix the cause, then `flotilla workflow restart web`",
    ),
]


def test_the_stand_in_answers_have_the_hubs_shapes() -> None:
    assert_shape(APPS, "ls")
    assert_shape(CLUSTERS, "clusters")
    for status in PROGRESS:
        assert_shape(status, "status")


def test_off_a_terminal_up_wait_prints_a_line_when_something_changed() -> None:
    log = ProgressLog()
    first, again, moved, failed = (log.changes(status) for status in PROGRESS)
    assert first == [
        "web revision 2: running Progressing",
        "deploy-dev dev: waiting  Progressing  1/2 replicas ready",
        "approve: succeeded",
        "deploy-prod prod-eu: pending  Progressing  not deployed yet",
    ]
    assert again == []
    assert moved == [
        "deploy-dev dev: healthy  Healthy",
        "deploy-prod prod-eu: applying  Progressing  canary 1/2 traffic-routing 20%  "
        "2/2 new pods ready",
    ]
    assert failed == [
        "web revision 2: failed Degraded",
        f"deploy-prod prod-eu: failed  Degraded  canary 1/2 traffic-routing 20%  {LONG}",
        "next: fix the cause, then `flotilla workflow restart web`",
    ]


def _render(renderable: Any, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def test_on_a_terminal_up_wait_shows_one_line_per_cluster_cut_to_the_width() -> None:
    lines = _render(progress_table(PROGRESS[-1]), 80)
    assert len(lines) == 1 + 1 + 3 + 1, lines  # head, columns, three steps, next
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines)
    failed = next(line for line in lines if line.startswith("deploy-prod"))
    assert "1/2 traffic-routing 20%" in failed and failed.endswith("…")


# tables


def test_a_long_cell_wraps_to_the_width_and_no_line_is_padded() -> None:
    rows: list[list[str | Text]] = [
        ["prod-eu", "failed", Text(LONG)],
        ["dev", "healthy", "deployed"],
    ]
    for width in (80, 250):
        lines = _render(grid(["cluster", "phase", "detail"], rows), width)
        assert all(len(line) <= width and line == line.rstrip() for line in lines), lines
        assert lines[-1] == "dev      healthy  deployed"
        wrapped = " ".join(line[len("prod-eu  failed   ") :] for line in lines[1:-1])
        assert wrapped.split() == LONG.split()


def test_a_word_longer_than_its_column_is_cut() -> None:
    url = "https://" + "very-long-host-name." * 10 + "example:6443"
    lines = _render(grid(["cluster", "server", "health"], [["dev", url, "Healthy"]]), 80)
    assert lines[1].startswith("dev      https://very-long") and lines[1].endswith("…  Healthy")


def test_one_line_rows_cut_a_long_cell_to_the_width() -> None:
    rows: list[list[str | Text]] = [
        ["prod-eu", "failed", Text(LONG)],
        ["dev", "healthy", "deployed"],
    ]
    lines = _render(grid(["cluster", "phase", "detail"], rows, one_line=True), 80)
    assert len(lines) == 3 and len(lines[1]) == 80 and lines[1].endswith("…")
    assert lines[2] == "dev      healthy  deployed"


# the real CLI against a stand-in hub


@asynccontextmanager
async def _hub(statuses: list[dict[str, Any]]) -> AsyncIterator[dict[str, str]]:
    """A hub that lists APPS and CLUSTERS, accepts any `up`, answers `status web` with
    each of `statuses` in turn (the last one from then on) and any other name with a
    404; yields the environment that points a CLI at it, with nothing of the caller's
    terminal settings."""
    answers = iter(statuses)
    last: list[dict[str, Any]] = []

    async def status(request: web.Request) -> web.Response:
        if request.match_info["name"] != "web":
            return web.json_response(
                {"error": "application nope not found", "exit_code": 3}, status=404
            )
        last[:] = [next(answers, last[0] if last else statuses[-1])]
        return web.json_response(last[0])

    async def up(request: web.Request) -> web.Response:
        return web.json_response({"name": "web", "revision": 2, "message": "revision 2 of web"})

    def answer(body: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(body)

        return handler

    app = web.Application()
    app.router.add_get("/api/v1/apps", answer(APPS))
    app.router.add_get("/api/v1/clusters", answer(CLUSTERS))
    app.router.add_post("/api/v1/apps", up)
    app.router.add_get("/api/v1/apps/{name}", status)
    async with TestServer(app, host="127.0.0.1") as server:
        mine = ("FLOTILLA_", "NO_COLOR", "FORCE_COLOR", "TTY_", "COLUMNS", "LINES", "TERM")
        env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
        yield env | {
            "FLOTILLA_HUB": str(server.make_url("")).rstrip("/"),
            "FLOTILLA_TOKEN": "token",
            "TERM": "xterm-256color",
        }


async def _flotilla(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `python -m hub ARGS`; its exit code and everything it wrote, stdout first."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


CURSOR = re.compile(r"\x1b\[\??[0-9;]*[A-HJKlh]|\r")
"""What rich's Live sends to redraw in place: cursor moves, erasing, hiding the cursor."""


async def test_up_wait_keeps_its_exit_codes_and_prints_lines_off_a_terminal(tmp_path: Path) -> None:
    app = tmp_path / "web.yaml"
    app.write_text("kind: Application\n")
    async with _hub(PROGRESS) as env:
        code, printed = await _flotilla(env | {"COLUMNS": "80"}, "up", "-f", str(app), "--wait")
    assert code == 1, printed
    lines = printed.splitlines()
    assert lines[0] == "revision 2 of web"
    assert lines.count("web revision 2: running Progressing") == 1
    assert f"deploy-prod prod-eu: failed  Degraded  canary 1/2 traffic-routing 20%  {LONG}" in lines
    assert lines[-1] == "next: fix the cause, then `flotilla workflow restart web`"


async def test_on_a_terminal_up_wait_is_redrawn_within_its_width_and_no_color(
    tmp_path: Path,
) -> None:
    app = tmp_path / "web.yaml"
    app.write_text("kind: Application\n")
    terminal = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "80", "NO_COLOR": "1"}
    async with _hub(PROGRESS) as env:
        code, printed = await _flotilla(env | terminal, "up", "-f", str(app), "--wait")
    assert code == 1, printed
    assert CURSOR.search(printed), "not redrawn in place"
    text = CURSOR.sub("\n", printed)
    assert "\x1b" not in text, repr(text)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "next: fix the cause, then `flotilla workflow restart web`" in text


FORCED_TERMINAL = {"TTY_COMPATIBLE": "1", "FORCE_COLOR": "1"}
"""A terminal forced both ways rich knows: a TTY-compatible output, and FORCE_COLOR."""


async def test_no_color_means_no_escape_codes_even_on_a_terminal() -> None:
    """Forced to a terminal, with the same output uncoloured as the control: tables, the
    tree, an error."""
    forced = FORCED_TERMINAL
    commands = [("cluster", "list"), ("status", "web"), ("status", "nope")]
    async with _hub(PROGRESS[-1:]) as env:
        colored = await asyncio.gather(*(_flotilla(env | forced, *args) for args in commands))
        env |= {"NO_COLOR": "1"}
        plain = await asyncio.gather(*(_flotilla(env | forced, *args) for args in commands))
    assert all("\x1b[" in printed for _, printed in colored), "the test would see no colour"
    for (code, printed), (expected, _) in zip(plain, colored, strict=True):
        assert code == expected and "\x1b" not in printed, repr(printed)
    assert "error: application nope not found" in plain[2][1]


async def test_help_and_usage_errors_are_plain_text_even_on_a_terminal() -> None:
    """click's help, as kubectl's: no colour, boxes or Markdown wherever it goes; a usage
    error is the usage, the hint and one error line, exit code 2."""
    async with _hub(PROGRESS[-1:]) as env:
        (_, root), (_, group), (code, error) = await asyncio.gather(
            _flotilla(env | FORCED_TERMINAL, "--help"),
            _flotilla(env | FORCED_TERMINAL, "cluster", "--help"),
            _flotilla(env | FORCED_TERMINAL, "cluster", "list", "--bogus"),
        )
    assert "\x1b" not in root + group + error
    assert root.startswith("Usage: flotilla [OPTIONS] COMMAND [ARGS]...\n")
    assert "  status      An application as one tree, its health rolled up.\n" in root
    assert "  list        Member clusters, their health and the hub's watch of each.\n" in group
    assert code == 2
    assert error.splitlines() == [
        "Usage: flotilla cluster list [OPTIONS]",
        "Try 'flotilla cluster list --help' for help.",
        "",
        "Error: No such option: --bogus",
    ]


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


EVERY_COMMAND = dict(_commands(typer.main.get_command(cli)))
"""Each command and group by its words after `flotilla`: the root's are none."""


@pytest.mark.parametrize("width", [60, 100])
@pytest.mark.parametrize("command", EVERY_COMMAND, ids=lambda words: " ".join(words) or "-")
def test_every_help_keeps_its_words_and_its_blocks_whole(
    command: tuple[str, ...], width: int
) -> None:
    """Help is rewrapped to the terminal: never inside a word (`--take-ownership`, a
    default such as `flotilla-system`), and never inside a block marked to be kept (a
    list, examples), whose lines stay as written."""
    shown = CliRunner().invoke(cli, [*command, "--help"], env={"COLUMNS": str(width)})
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith(f"Usage: {' '.join(['flotilla', *command])} ")
    assert not re.search(r"\w-\n", shown.output), shown.output
    assert "\u2011" not in shown.output and "**" not in shown.output, shown.output
    for block in (EVERY_COMMAND[command].help or "").split("\n\n"):
        if block.startswith("\b\n"):
            assert all(line.strip() in shown.output for line in block.splitlines()[1:])


async def test_piped_tables_take_the_width_columns_gives() -> None:
    async with _hub(PROGRESS[-1:]) as env:
        _, narrow = await _flotilla(env | {"COLUMNS": "60"}, "cluster", "list")
        _, wide = await _flotilla(env, "cluster", "list")
    assert "prod-us" in narrow and "Unreac…" in narrow
    assert all(len(line) <= 60 and line == line.rstrip() for line in narrow.splitlines())
    assert all(line == line.rstrip() for line in wide.splitlines())
