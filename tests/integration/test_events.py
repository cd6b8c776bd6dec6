"""`flotilla events`: every transition of the engine, as a list and as a stream that jq
can read, with where it happened; bounded per application."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess
from tests.fleet import Fleet, until
from tests.shapes import assert_shape

pytestmark = pytest.mark.cluster


def _events(fleet: Fleet, *args: str) -> list[dict[str, Any]]:
    out = fleet.hub.ok("events", *args, "-o", "json").stdout
    return [json.loads(line) for line in out.splitlines()]


class Follower:
    """`flotilla events APP --follow -o json` in the background, its lines collected."""

    def __init__(self, hub: HubProcess, *args: str) -> None:
        self.lines: list[dict[str, Any]] = []
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "events", *args, "--follow", "-o", "json"],
            env=hub.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(json.loads(line))

    def messages(self) -> list[str]:
        return [e["message"] for e in self.lines]

    def stop(self) -> str:
        self._proc.terminate()
        _, err = self._proc.communicate(timeout=10)
        return err


def test_events_list_and_stream_what_the_engine_does(fleet: Fleet) -> None:
    first = fleet.up(fleet.app(suspend=True), "--wait")
    assert first.code == 0, first.stderr
    listed = _events(fleet, "canary-demo")
    for event in listed:
        assert_shape(event, "event")
    messages = [e["message"] for e in listed]
    assert messages[0] == "revision 1 created (new spec)"
    assert "step deploy-dev started" in messages
    assert "step approve suspended" in messages
    applied = next(e for e in listed if e["message"].endswith("healthy") and e["cluster"])
    assert (applied["cluster"], applied["component"], applied["step"], applied["revision"]) == (
        "dev",
        "canary-demo",
        "deploy-dev",
        1,
    )
    assert [e["id"] for e in listed] == sorted(e["id"] for e in listed)
    assert _events(fleet, "canary-demo", "--after", str(listed[-1]["id"])) == []

    follower = Follower(fleet.hub, "canary-demo", "--after", str(listed[-1]["id"]))
    try:
        fleet.hub.ok("workflow", "resume", "canary-demo")
        until(lambda: "revision 1 succeeded" in follower.messages(), 180, "the stream to say so")
        assert follower.messages()[0].startswith("resumed by the operator (approve)")
        assert "step deploy-prod started" in follower.messages()
        assert {e["cluster"] for e in follower.lines if e["cluster"]} == {"prod-eu", "prod-us"}
    finally:
        assert "Traceback" not in follower.stop()
    table = fleet.hub.ok("events", "canary-demo").stdout
    assert "revision 1 succeeded" in table and "ID" in table.splitlines()[0]
    missing = fleet.hub.cli("events", "no-such-app")
    assert missing.code == 3 and "no-such-app" in missing.stderr


def test_events_are_kept_up_to_a_count_per_application(
    e2e_clusters: list[ClusterInfo], namespace: str, chart_repo: ChartRepo, tmp_path: Path
) -> None:
    hub = HubProcess(tmp_path / "home", serve_args=("--events-per-app", "5"))
    hub.start()
    try:
        fleet = Fleet.join(hub, e2e_clusters, namespace, chart_repo.url, tmp_path)
        result = fleet.up(fleet.app(), "--wait")
        assert result.code == 0, result.stderr
        kept = _events(fleet, "canary-demo")
        assert len(kept) == 5
        assert kept[-1]["message"] == "revision 1 succeeded"
    finally:
        hub.stop()
