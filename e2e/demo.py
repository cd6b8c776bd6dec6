"""`make demo`: three local clusters, a hub, the demo chart deployed to all of them.

Every step is a real `flotilla` command, printed before it runs, so the demo doubles as a
walkthrough. The hub and clusters keep running afterwards for the user to explore;
`make down` stops the clusters and `python -m e2e.demo stop` the hub.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from e2e import clusters
from e2e.chartrepo import DEMO_REPO_PORT, serve_detached, state_dir
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess
from e2e.prometheus import start_prometheus

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "three-envs.yaml"
ANALYSED = REPO / "examples" / "canary-analysis.yaml"
# The demo's Prometheus, beside the test suite's (random ports) and `python -m e2e.prometheus`.
DEMO_PROMETHEUS_PORT = 9098
NAMES = ("dev", "prod-eu", "prod-us")
LABELS = ("env=dev", "env=prod,region=eu", "env=prod,region=us")


def home() -> Path:
    return clusters.state_dir() / "demo-hub"


def _env() -> dict[str, str]:
    return {**os.environ, "FLOTILLA_HOME": str(home())}


def flotilla(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    print(f"\n$ flotilla {shlex.join(args)}", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", "hub", *args], env=_env(), text=True, check=False
    )
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `flotilla {shlex.join(args)}` failed ({result.returncode})")
    return result


def _query(*args: str) -> object:
    out = subprocess.run(
        [sys.executable, "-m", "hub", *args, "-o", "json"],
        env=_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def start_hub() -> None:
    """A hub of the demo's own, reused when one already runs."""
    hub_file = home() / "hub.json"
    if hub_file.exists():
        pid = json.loads(hub_file.read_text()).get("pid")
        if pid and _alive(int(pid)):
            print(f"demo: reusing the hub (pid {pid})")
            return
    HubProcess(home(), probe_interval=2.0, log_level="info").start()


def stop_hub() -> None:
    hub_file = home() / "hub.json"
    if hub_file.exists():
        pid = int(json.loads(hub_file.read_text())["pid"])
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def join(infos: list[ClusterInfo]) -> None:
    listed = _query("cluster", "list")
    assert isinstance(listed, dict)
    known = {c["name"]: c["server"] for c in listed["clusters"]}
    for name, labels, info in zip(NAMES, LABELS, infos, strict=True):
        if name in known and known[name] != info.server:
            # The local clusters were made anew since: what the hub knows of them is gone.
            flotilla("cluster", "detach", name, "--forget-releases")
            del known[name]
        if name not in known:
            flotilla("cluster", "join", str(info.kubeconfig), "--name", name, "--labels", labels)
    flotilla("cluster", "list")


def upgraded_example() -> Path:
    """The example at chart 2.0.0: the upgrade the canary trait rolls out gradually."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["annotations"]["app.oam.dev/publishVersion"] = "v2"
    document["spec"]["components"][0]["properties"]["version"] = "2.0.0"
    path = home() / "three-envs-v2.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def analysed_example(tag: str, eu_tag: str | None = None) -> Path:
    """The analysed example at image tag `tag`, and `eu_tag` on prod-eu only (the simulated
    pods answer with errors when the tag says `errors-N`)."""
    document = yaml.safe_load(ANALYSED.read_text())
    document["spec"]["components"][0]["properties"]["values"]["image"]["tag"] = tag
    if eu_tag is not None:
        eu = next(p for p in document["spec"]["policies"] if p["name"] == "prod-eu-values")
        eu["properties"]["components"][0]["properties"]["values"]["image"] = {"tag": eu_tag}
    path = home() / f"canary-analysis-{eu_tag or tag}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def register_prometheus(infos: list[ClusterInfo]) -> None:
    """A real Prometheus scraping the clusters' app metrics, registered as each cluster's."""
    targets = {name: info.metrics_url for name, info in zip(NAMES, infos, strict=True)}
    server = start_prometheus(targets, port=DEMO_PROMETHEUS_PORT)
    for name in NAMES:
        flotilla("cluster", "prometheus", name, server.url)


def _phase() -> str:
    status = _query("status", "canary-demo")
    assert isinstance(status, dict)
    return str(status["phase"])


def main() -> None:
    if sys.argv[1:] == ["stop"]:
        stop_hub()
        return
    infos = clusters.up(3)
    serve_detached(DEMO_REPO_PORT, state_dir() / "charts")
    start_hub()
    print(f"demo: hub home {home()}; to use it yourself: export FLOTILLA_HOME={home()}")
    join(infos)
    apps = _query("ls")
    assert isinstance(apps, dict)
    if any(a["name"] == "canary-demo" for a in apps["applications"]):
        flotilla("delete", "canary-demo", "--yes")  # a clean run every time

    print("\ndemo: version 1.0.0 to dev, then (after approval) to prod")
    flotilla("plan", "-f", str(EXAMPLE))
    flotilla("up", "-f", str(EXAMPLE), "--wait")
    flotilla("workflow", "resume", "canary-demo", "--wait")
    flotilla("status", "canary-demo")

    print("\ndemo: upgrade to 2.0.0: dev rolls straight through, prod gets a canary")
    flotilla("up", "-f", str(upgraded_example()), "--wait")
    flotilla("workflow", "resume", "canary-demo", "--wait")  # approve prod
    print("\ndemo: paused at the first canary step: 20% of pods and traffic on v2")
    flotilla("status", "canary-demo", "--tree")
    for _ in range(len(CANARY_STEPS)):
        if _phase() == "succeeded":
            break
        flotilla("workflow", "resume", "canary-demo", "--wait")
    flotilla("history", "canary-demo")
    flotilla("status", "canary-demo", "--tree")
    analysis(infos)


def analysis(infos: list[ClusterInfo]) -> None:
    """No human in the loop: Prometheus decides each canary step for the whole fleet."""
    print("\ndemo: metric analysis decides: a Prometheus per cluster, registered with the hub")
    register_prometheus(infos)
    print("\ndemo: image 2.0.1 passes its analysis on both prod clusters and finishes alone")
    flotilla("up", "-f", str(analysed_example("2.0.1")), "--wait")
    flotilla("status", "canary-demo", "--tree")
    print(
        "\ndemo: image 2.0.2, but on prod-eu 2.0.2-errors-30 answers 30% errors: one failing "
        "cluster rolls the canary back on every prod cluster"
    )
    bad = flotilla(
        "up", "-f", str(analysed_example("2.0.2", "2.0.2-errors-30")), "--wait", check=False
    )
    if bad.returncode != 1:
        raise SystemExit(f"demo: the bad canary should have failed, not exited {bad.returncode}")
    flotilla("status", "canary-demo", "--tree")
    print("\ndemo: the same, live in a browser: open this link within a minute (it works once)")
    flotilla("ui")


CANARY_STEPS = (20, 50, 100)


if __name__ == "__main__":
    main()
