"""Detached control-plane processes that outlive the command that started them.

`python -m e2e.clusters up` returns while etcd, the API servers and the simulated
kubelets keep running, so each one is started through a throw-away `sh` that
backgrounds it and exits: the process is never our child (no zombie, no
`Popen` object whose finaliser warns in a pytest session) and it leads nothing
but its own process group, so stopping the group stops everything it forked.

A PID alone is not an identity, since the kernel reuses PIDs; a record keeps the
start time too and a process whose start time differs is not ours. The start time is
the kernel's own count of clock ticks since boot (`/proc/PID/stat`), not psutil's
`create_time()`: that adds the boot time as each Python process reads it, and the boot
time the kernel reports moves when the wall clock is slewed, so two processes half an
hour apart could disagree by a second and take a live etcd for a dead one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

# How long a process may take to exit on SIGTERM before it gets SIGKILL; the API
# server drains connections for a few seconds when asked politely.
TERM_GRACE = 10.0

_LAUNCHER = 'log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!'


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to find a started process again from another Python process."""

    pid: int
    pgid: int
    started: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(pid=int(data["pid"]), pgid=int(data["pgid"]), started=int(data["started"]))

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        """The record of the running process `pid`; ProcessLookupError when it is gone."""
        return cls(pid=pid, pgid=os.getpgid(pid), started=start_ticks(pid))


def start_ticks(pid: int) -> int:
    """When `pid` started, in clock ticks since boot: field 22 of /proc/PID/stat, read
    after the command name, which may itself hold spaces and parentheses."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError as e:
        raise ProcessLookupError(pid) from e
    return int(stat.rpartition(")")[2].split()[19])


def spawn(argv: list[str], log: Path, cwd: Path | None = None) -> ProcessRecord:
    """Start `argv` detached in `cwd`, appending its output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    launcher = subprocess.run(
        ["/bin/sh", "-c", _LAUNCHER, "sh", str(log), *argv],
        cwd=cwd,
        start_new_session=True,
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(launcher.stdout)
    try:
        return ProcessRecord.of(pid)
    except ProcessLookupError as e:
        raise RuntimeError(f"{argv[0]} exited at once; see {log}") from e


def alive(record: ProcessRecord) -> bool:
    try:
        same = start_ticks(record.pid) == record.started
        return same and psutil.Process(record.pid).status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False


def _group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop(records: Iterable[ProcessRecord], grace: float = TERM_GRACE) -> None:
    """SIGTERM every group that is still ours, then SIGKILL what is left after `grace`."""
    groups = {r.pgid for r in records if alive(r)}
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {g for g in groups if _group_members(g)}
        time.sleep(0.05)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {g for g in groups if _group_members(g)}
        time.sleep(0.05)
    if groups:
        raise RuntimeError(f"process groups {sorted(groups)} survived SIGKILL")


def rss_bytes(records: Iterable[ProcessRecord]) -> int:
    """Resident memory of the live processes among `records` and their children."""
    total = 0
    for record in records:
        if not alive(record):
            continue
        try:
            process = psutil.Process(record.pid)
            for member in [process, *process.children(recursive=True)]:
                total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total
