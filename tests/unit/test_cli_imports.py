"""A `flotilla` start (issue 16, section 1): it loads only what the command it runs needs,
and its one request to the hub, on the standard library, keeps the CLI's behaviour.

Every module a CLI process imports is start-up time a user waits through on each command,
so a read command must not load the hub's inside (the format's pydantic models, the
cluster client, Helm, the store), aiohttp or asyncio, nor `http.client` (the email package
and ssl come with it) for one request a socket sends; `-o json` must not load rich or
YAML; a table loads rich's console and table, not its Markdown or traceback parts; help
and usage errors are click's plain text, without rich at all (Typer's rich help loads its
Markdown parser, tracebacks and layouts, which cost a `--help` more than the rest of it).

Each case runs the real `python -X importtime -m hub ...` in a fresh interpreter against a
stand-in hub (canned answers of the documented shapes) and reads the modules it imported
from the interpreter's own report, so a lazy import that is not lazy, or a new top-level
import anywhere under `hub.cli`, fails here. No timings are asserted: the benchmark
(`python -m bench --only cli`) measures them.

The same stand-in answers in each framing HTTP/1.1 allows (a length, chunks, the end of
the connection), an event stream (chunked NDJSON with keep-alive lines, as the hub's),
one cut short, and a page that is not the hub's; with a closed port and no hub
at all, those are the ways a request fails, each one line and exit code 6.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hub.home import START_HINT
from tests.shapes import assert_shape
from tests.unit.test_cli_terminal import APPS, CLUSTERS, PROGRESS

HISTORY = {
    "name": "web",
    "revisions": [
        {
            "revision": 1,
            "publishVersion": None,
            "created": None,
            "finished": None,
            "outcome": "succeeded",
            "rollbackOf": None,
            "source": "web.yaml",
        }
    ],
    "events": [],
}
EVENTS = [
    {
        "id": n,
        "at": None,
        "app": "web",
        "revision": 1,
        "step": "deploy",
        "cluster": "dev",
        "component": None,
        "message": f"event {n}",
    }
    for n in (1, 2)
]
FRAMED = {"/api/v1/apps/chunks/history": "chunks", "/api/v1/apps/unframed/history": "close"}
"""History answers framed otherwise than by Content-Length (which every other answer has)."""
ANSWERS = {
    "/api/v1/apps": APPS,
    "/api/v1/clusters": CLUSTERS,
    "/api/v1/apps/web": PROGRESS[-1],
    "/api/v1/apps/web/history": HISTORY,
}

INSIDE = [
    # the hub's inside, and what only it uses
    "hub.api",
    "hub.root",
    "hub.web",
    "hub.service",
    "hub.workflow",
    "hub.fleet",
    "hub.charts",
    "hub.state",
    "hub.analysis",
    "hub.canary",
    "hub.format",
    "placement",
    "clusters",
    "kubernetes_asyncio",
    "helm_python",
    "pydantic",
    "pydantic_core",
    "networkx",
    "sqlite3",
    "prometheus_client",
    # a loop and a connector for one loopback request
    "asyncio",
    "aiohttp",
]
RICH_HEAVY = ["typer.rich_utils", "rich.markdown", "markdown_it", "rich.traceback", "pygments"]
"""What Typer's help loads: Markdown, syntax highlighting, tracebacks. A table needs none."""
TEXT_ONLY = ["rich", "yaml"]
"""JSON for scripts is json.dumps: no console, no YAML."""

HTTP_CLIENT = ["http.client", "email", "ssl"]
"""The standard library's client, and what it loads: one request to a hub on `http://`
needs a socket only."""

JSON = [*INSIDE, *HTTP_CLIENT, *TEXT_ONLY]
TABLE = [*INSIDE, *HTTP_CLIENT, *RICH_HEAVY, "yaml"]
HELP = [*INSIDE, *HTTP_CLIENT, *RICH_HEAVY, *TEXT_ONLY, "socket"]
"""Help is click's plain text: no console, and no request."""
CASES = [
    (["--help"], HELP, "Usage: flotilla [OPTIONS] COMMAND"),
    (["cluster", "--help"], HELP, "Usage: flotilla cluster [OPTIONS] COMMAND"),
    (["cluster", "join", "--help"], HELP, "--prometheus-token-file"),
    (["ls", "-o", "json"], JSON, '"worker"'),
    (["status", "web", "-o", "json"], JSON, '"deploy-prod"'),
    (["cluster", "list", "-o", "json"], JSON, '"prod-eu"'),
    (["history", "web", "-o", "json"], JSON, '"web.yaml"'),
    (["ls"], TABLE, "worker"),
    (["status", "web"], TABLE, "deploy-prod"),
    (["cluster", "list"], TABLE, "prod-eu"),
    (["history", "web"], TABLE, "web.yaml"),
]

IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", re.M)


class _Hub(BaseHTTPRequestHandler):
    """Answers the read commands' GETs from ANSWERS, streams EVENTS (or breaks off for
    the application `cut`), serves a web page for `/api/v1/apps/page`; anything else is
    not found."""

    protocol_version = "HTTP/1.1"  # chunked streams, as the hub's

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/events/stream"):
            self._stream(cut="app=cut" in self.path)
            return
        if self.path == "/api/v1/apps/page":
            self._send(200, "<html>a proxy's page</html>")
            return
        framing = FRAMED.get(self.path)
        if framing is not None:
            self._framed(framing, json.dumps(HISTORY).encode())
            return
        answer = ANSWERS.get(self.path)
        body = json.dumps(answer or {"error": f"{self.path} not found", "exit_code": 3})
        self._send(200 if answer else 404, body)

    def _send(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def _framed(self, framing: str, body: bytes) -> None:
        self.send_response(200)
        if framing == "chunks":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (body[:10], body[10:]):
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:  # no length: the answer ends with the connection
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

    def _stream(self, *, cut: bool) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        lines = [json.dumps(EVENTS[0]) + "\n", "\n", json.dumps(EVENTS[1]) + "\n"]
        for line in lines[:1] if cut else lines:
            self.wfile.write(f"{len(line):x}\r\n{line}\r\n".encode())
        if cut:  # half a chunk, then the connection goes
            self.wfile.write(b"40\r\n{")
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads the CLI's output, not the stand-in's."""


@pytest.fixture(scope="module")
def hub_env() -> Iterator[dict[str, str]]:
    """The environment of a CLI pointed at a stand-in hub, without the caller's terminal."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mine = ("FLOTILLA_", "NO_COLOR", "FORCE_COLOR", "TTY_", "COLUMNS", "TYPER_", "_TYPER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    try:
        yield env | {
            "FLOTILLA_HUB": f"http://127.0.0.1:{server.server_address[1]}",
            "FLOTILLA_TOKEN": "token",
        }
    finally:
        server.shutdown()
        server.server_close()


def test_the_stand_in_answers_have_the_hubs_shapes() -> None:
    assert_shape(HISTORY, "history")
    assert_shape({"events": EVENTS}, "events")


def _flotilla(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=60
    )


def _imported(
    env: dict[str, str], args: list[str], exit_code: int = 0
) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules `flotilla ARGS` imported, and how it ended."""
    done = _flotilla(env, "-X", "importtime", "-m", "hub", *args)
    assert done.returncode == exit_code, done.stdout + done.stderr
    modules = set(IMPORTED.findall(done.stderr))
    assert "hub.cli" in modules, "importtime reported nothing: the check would see nothing"
    return modules, done


def _loaded(modules: set[str], forbidden: list[str]) -> list[str]:
    return sorted(m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize(
    ("args", "forbidden", "printed"), CASES, ids=[" ".join(args) for args, _, _ in CASES]
)
def test_a_command_imports_only_what_it_needs(
    hub_env: dict[str, str], args: list[str], forbidden: list[str], printed: str
) -> None:
    modules, done = _imported(hub_env, args)
    assert printed in done.stdout, done.stdout
    loaded = _loaded(modules, forbidden)
    assert loaded == [], f"flotilla {' '.join(args)} imported {loaded}"


def test_a_usage_error_is_one_plain_error_and_the_usage_hint(hub_env: dict[str, str]) -> None:
    modules, done = _imported(hub_env, ["ls", "--bogus"], exit_code=2)
    printed = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert printed == [
        "Usage: flotilla ls [OPTIONS]",
        "Try 'flotilla ls --help' for help.",
        "",
        "Error: No such option: --bogus",
    ]
    assert _loaded(modules, HELP) == []


# the one request


@pytest.mark.parametrize("app", ["chunks", "unframed"])
def test_an_answer_framed_by_chunks_or_by_its_end_is_read_whole(
    hub_env: dict[str, str], app: str
) -> None:
    done = _flotilla(hub_env, "-m", "hub", "history", app, "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == HISTORY


def test_events_follow_prints_each_streamed_event_and_skips_the_keep_alives(
    hub_env: dict[str, str],
) -> None:
    done = _flotilla(hub_env, "-m", "hub", "events", "web", "--follow", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == EVENTS


def test_a_stream_cut_short_is_a_lost_hub(hub_env: dict[str, str]) -> None:
    done = _flotilla(hub_env, "-m", "hub", "events", "cut", "--follow", "-o", "json")
    assert [json.loads(line) for line in done.stdout.splitlines()] == EVENTS[:1]
    assert done.returncode == 6
    assert done.stderr == f"error: lost the hub at {hub_env['FLOTILLA_HUB']}; {START_HINT}\n"


def test_what_the_hub_refused_is_its_message_and_exit_code(hub_env: dict[str, str]) -> None:
    done = _flotilla(hub_env, "-m", "hub", "history", "nope")
    assert (done.returncode, done.stderr) == (3, "error: /api/v1/apps/nope/history not found\n")


def test_an_answer_that_is_not_the_hubs_says_so(hub_env: dict[str, str]) -> None:
    done = _flotilla(hub_env, "-m", "hub", "status", "page", "-o", "json")
    url = hub_env["FLOTILLA_HUB"]
    assert (done.returncode, done.stderr) == (
        6,
        f"error: {url} did not answer like a Flotilla hub\n",
    )


def test_a_closed_port_and_no_hub_at_all_are_one_line_each(
    hub_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    refused = _flotilla(hub_env | {"FLOTILLA_HUB": closed}, "-m", "hub", "ls")
    assert (refused.returncode, refused.stderr) == (
        6,
        f"error: cannot reach the hub at {closed}; {START_HINT}\n",
    )
    nowhere = {k: v for k, v in hub_env.items() if not k.startswith("FLOTILLA_")}
    missing = _flotilla(nowhere | {"FLOTILLA_HOME": str(tmp_path)}, "-m", "hub", "ls")
    assert (missing.returncode, missing.stderr) == (
        6,
        f"error: no Flotilla hub is running; {START_HINT}\n",
    )
