"""The terminal habits against a real hub process (issue 14, section 4): shell completion
through the real CLI and a real bash, the JSON log of `serve --log-format json`, and on
the real clusters the names completed, the log's cluster field and `up --wait`'s lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess
from tests.fleet import NAMES, Fleet

FIELDS = {"time", "level", "logger", "message"}


def _complete(hub: HubProcess, line: str) -> subprocess.CompletedProcess[str]:
    """The real CLI asked, as bash asks it on TAB, to complete the end of `line`."""
    words = line.split()
    env = hub.env | {
        "_FLOTILLA_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - (not line.endswith(" "))),
    }
    return subprocess.run(
        [sys.executable, "-m", "hub"], env=env, capture_output=True, text=True, timeout=60
    )


def _bash_tab(hub: HubProcess, *words: str) -> list[str]:
    """What bash offers on TAB after `words`, with `flotilla completion bash` loaded."""
    assert shutil.which("bash"), "bash is needed to test its completion"
    cli_dir = str(Path(sys.executable).parent)  # where the `flotilla` script is installed
    words_array = " ".join(f"'{w}'" for w in ("flotilla", *words))
    script = (
        "source <(flotilla completion bash)\n"
        f"COMP_WORDS=({words_array} '')\n"
        f"COMP_CWORD={len(words) + 1}\n"
        "_flotilla_completion flotilla\n"
        "printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    env = hub.env | {"PATH": f"{cli_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_completion_through_the_real_cli_and_bash(hub: HubProcess) -> None:
    commands = _complete(hub, "flotilla cluster ")
    assert commands.returncode == 0 and commands.stderr == ""
    assert {"join", "list", "show", "detach", "rename"} <= set(commands.stdout.split())
    assert {"list", "show", "labels", "prometheus"} <= set(_bash_tab(hub, "cluster"))
    nothing_yet = _complete(hub, "flotilla status ")
    assert (nothing_yet.returncode, nothing_yet.stdout.strip(), nothing_yet.stderr) == (0, "", "")
    hub.stop()
    for line in ("flotilla status ", "flotilla cluster show "):
        no_hub = _complete(hub, line)
        assert (no_hub.returncode, no_hub.stdout.strip(), no_hub.stderr) == (0, "", "")


def _log_entries(hub: HubProcess) -> list[dict[str, Any]]:
    """Every line of the hub's log as JSON; fails on a line that is not."""
    entries = []
    for line in hub.log().splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict) and set(entry) >= FIELDS, line
        entries.append(entry)
    return entries


@pytest.fixture
def json_hub(tmp_path: Path) -> Iterator[HubProcess]:
    process = HubProcess(tmp_path / "home", serve_args=("--log-format", "json"))
    process.start()
    yield process
    if process.running:
        process.stop()


def test_a_json_log_is_json_from_start_to_stop(json_hub: HubProcess, tmp_path: Path) -> None:
    json_hub.ok("ls")
    assert json_hub.cli("status", "nope").code == 3
    dead = tmp_path / "dead.kubeconfig"
    dead.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: not-a-real-token-at-all}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    assert json_hub.cli("cluster", "join", str(dead), "--name", "dead").code != 0
    assert json_hub.stop() == 0
    messages = [e["message"] for e in _log_entries(json_hub)]
    assert any(m.startswith("hub listening on ") for m in messages)
    assert any(m.startswith("hub stopping after ") for m in messages)
    assert "not-a-real-token-at-all" not in json_hub.log()


# on the real clusters

CANARY = [{"type": "kruise-rollout", "properties": {"canary": {"steps": [{"weight": 50}]}}}]


@pytest.fixture
def json_fleet(
    json_hub: HubProcess,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> Fleet:
    return Fleet.join(json_hub, e2e_clusters, namespace, chart_repo.url, tmp_path)


@pytest.mark.cluster
def test_names_lines_and_log_fields_of_a_real_fleet(json_fleet: Fleet) -> None:
    hub = json_fleet.hub
    assert _complete(hub, "flotilla cluster show ").stdout.split() == list(NAMES)
    assert _complete(hub, "flotilla cluster detach prod-").stdout.split() == ["prod-eu", "prod-us"]

    first = json_fleet.up(json_fleet.app(), "--wait")
    assert first.code == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "canary-demo revision 1: succeeded Healthy" in lines
    for step, cluster in [("deploy-dev", "dev"), ("deploy-prod", "prod-eu")]:
        assert f"{step} {cluster}: healthy  Healthy" in lines, first.stdout
    assert len(lines) == len(set(lines)), "a line printed again though nothing changed"
    assert _bash_tab(hub, "status") == ["canary-demo"]

    upgrade = json_fleet.up(json_fleet.app(version="2.0.0", traits=CANARY), "--wait")
    assert upgrade.code == 0, upgrade.stderr
    assert "canary 1/1 paused 50%" in upgrade.stdout, upgrade.stdout
    assert "next: run `flotilla workflow resume canary-demo`" in upgrade.stdout.splitlines()
    resumed = hub.ok("workflow", "resume", "canary-demo", "--wait", timeout=300)
    assert "canary-demo revision 2: succeeded Healthy" in resumed.stdout.splitlines()

    joined = {e["cluster"] for e in _log_entries(hub) if e["message"].startswith("joined ")}
    assert joined == set(NAMES)
