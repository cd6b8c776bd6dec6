"""The hub's home on a disk that fills (issue 17, §6), and a store file that is damaged.

The home is a small tmpfs mounted for the test (we run as root; where mounting is
impossible the tests say so and skip). A filler file takes every free byte while a deploy
runs: the store's next write is refused whole, logged once, and refused to the user as
one line; reads go on. Once the filler is gone the same hub takes writes again, finishes
the deploy and accepts a new `up`, without a restart; a restart then finds an intact store
that holds nothing of the refused change. A store that is not SQLite, or is truncated, is
refused at start with a line naming it, and left byte for byte as it was.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.chartrepo import ChartRepo
from e2e.clusters import ClusterInfo
from e2e.hubproc import HubProcess, Result
from hub.home import Home
from tests.fleet import Fleet, phase, until

pytestmark = pytest.mark.chaos

# Room for the store, the chart cache and the token many times over; small enough to fill
# in a blink.
HOME_SIZE = "16m"
FILL_CHUNK = 1 << 16
REFUSED = "cannot be written"
# The store's own line, once for as long as the disk stays full; the runner's, each time it
# is refused.
STORE_REFUSES = "changes are refused until its disk has room"
RUNNER_REFUSED = "task workflow:canary-demo died: the hub's store"


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    """A home of HOME_SIZE on a tmpfs of its own; the hub's log stays outside it."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={HOME_SIZE},mode=0700", "tmpfs", str(home)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount(8) here to put the hub's home on a small tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the hub's home: {mounted.stderr.strip()}")
    yield home
    subprocess.run(["umount", "--lazy", str(home)], check=True)


@pytest.fixture
def small_fleet(
    small_home: Path,
    e2e_clusters: list[ClusterInfo],
    namespace: str,
    chart_repo: ChartRepo,
    tmp_path: Path,
) -> Iterator[Fleet]:
    """The `fleet` fixture's hub and clusters, with the hub's home on the small disk."""
    hub = HubProcess(small_home)
    hub.start()
    yield Fleet.join(hub, e2e_clusters, namespace, chart_repo.url, tmp_path)
    if hub.running:
        hub.stop()


def fill(home: Path) -> Path:
    """Write a file until the disk refuses; returns it, for deleting when space returns."""
    filler = home / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * FILL_CHUNK)
        except OSError as e:
            assert e.strerror == "No space left on device", e
    return filler


@pytest.mark.cluster
def test_a_disk_that_fills_mid_deploy_refuses_writes_cleanly_and_the_hub_goes_on(
    small_fleet: Fleet,
) -> None:
    hub = small_fleet.hub
    first = small_fleet.up(small_fleet.app(publish="v1"))
    assert first.code == 0, first.stderr
    filler = fill(hub.home)

    # The runner's next write (a target's phase) is refused: it stops, to be tried again.
    until(lambda: RUNNER_REFUSED in hub.log(), what="the store refusing a write of the deploy")
    second = small_fleet.app(version="2.0.0", publish="v2")
    refused = small_fleet.up(second)
    assert refused.code != 0
    assert _one_line(refused).startswith("error: the hub's store"), refused.stderr
    assert REFUSED in refused.stderr and "nothing of this change was kept" in refused.stderr
    assert small_fleet.status()["revision"] == 1  # reads go on while the disk is full
    hub.ok("cluster", "list")

    filler.unlink()
    until(lambda: phase(small_fleet) == "succeeded", what="the deploy finished once space returned")
    upgraded = small_fleet.up(second, "--wait")
    assert upgraded.code == 0, upgraded.stderr
    for cluster in small_fleet.clusters:
        assert small_fleet.image(cluster) == "registry.local/canary-demo:2.0.0", cluster
    log = hub.log()
    assert "Traceback" not in log
    assert log.count(STORE_REFUSES) == 1, "the store's refusal is one line while the disk is full"

    assert hub.stop() == 0
    store = sqlite3.connect(Home(hub.home).store)
    try:
        assert store.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        store.close()
    hub.start()
    status = small_fleet.status()
    assert (status["phase"], status["revision"]) == ("succeeded", 2)
    history = hub.ok("history", "canary-demo", "-o", "json").json()["revisions"]
    assert [r["revision"] for r in history] == [1, 2], "the refused revision left nothing"


def test_a_hub_started_on_a_full_disk_exits_with_one_line(small_home: Path) -> None:
    fill(small_home)
    hub = HubProcess(small_home)
    started = _serve(hub)
    assert started.code != 0
    line = _one_line(started)
    assert str(small_home) in line and "full" in line, line
    assert "Traceback" not in started.stdout + started.stderr


@pytest.fixture(scope="module")
def intact_store(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a store a hub made and closed cleanly (one file, its WAL checkpointed)."""
    hub = HubProcess(tmp_path_factory.mktemp("intact") / "home")
    hub.start()
    assert hub.stop() == 0
    return Home(hub.home).store.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(
            lambda data: b"these are not the pages you are looking for\n" * 400, id="text"
        ),
        pytest.param(lambda data: data[: len(data) // 2], id="half"),
        pytest.param(lambda data: data[:100], id="header"),
    ],
)
def test_a_store_that_is_not_sqlite_or_is_truncated_is_refused_and_left_as_it_is(
    tmp_path: Path, intact_store: bytes, damage: Callable[[bytes], bytes]
) -> None:
    hub = HubProcess(tmp_path / "home")
    hub.home.mkdir(mode=0o700)
    store = Home(hub.home).store
    damaged = damage(intact_store)
    store.write_bytes(damaged)

    refused = _serve(hub)
    assert refused.code != 0
    line = _one_line(refused)
    assert f"store {store} is not an intact SQLite database" in line, line
    assert "Traceback" not in refused.stdout + refused.stderr
    assert store.read_bytes() == damaged, "the refused store was written to"


def _serve(hub: HubProcess) -> Result:
    """`flotilla serve` in the foreground: a hub that refuses to start returns at once."""
    return hub.cli("serve", "--listen", "127.0.0.1:0", "--log-level", "warning", timeout=60)


def _one_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {result.stderr}"
    return lines[0]
