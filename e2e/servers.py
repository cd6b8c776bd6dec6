"""Local servers that tests start and stop: a detached process recorded in a work directory.

The OCI registry and Prometheus run detached (e2e.processes), each in a work directory of its
own under the state dir with a process record beside its data, so that a later command
(`python -m e2e.chartrepo stop`, `python -m e2e.prometheus down`) finds and stops it even after
the process that started it died. Neither can report the port of a port-0 bind, so the harness
picks a free port first and waits until the server answers on it.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from e2e import processes

LOCALHOST = "127.0.0.1"
# Servers on this machine start in well under a second; this only bounds a broken start.
READY_TIMEOUT = 15.0
RECORD = "process.json"


class Stoppable:
    """A server that `with` stops on the way out."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port() -> int:
    """A port the kernel just considered free: for servers that cannot report a port 0 bind."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        port: int = probe.getsockname()[1]
        return port


def spawn_recorded(argv: list[str], workdir: Path, log: Path) -> processes.ProcessRecord:
    """Start `argv` detached and record it in `workdir`, where `recorded` finds it again."""
    workdir.mkdir(parents=True, exist_ok=True)
    record = processes.spawn(argv, log)
    (workdir / RECORD).write_text(json.dumps(record.to_json()))
    return record


def recorded(workdir: Path) -> processes.ProcessRecord | None:
    """The live server recorded in `workdir`, if any."""
    try:
        record = processes.ProcessRecord.from_json(json.loads((workdir / RECORD).read_text()))
    except FileNotFoundError:
        return None
    return record if processes.alive(record) else None


def stop_recorded(root: Path, prefix: str) -> list[str]:
    """Stop the server of every work directory `root/<prefix>*` and remove the directory;
    returns the names of the directories."""
    stopped = []
    for record_file in sorted(root.glob(f"{prefix}*/{RECORD}")):
        record = processes.ProcessRecord.from_json(json.loads(record_file.read_text()))
        processes.stop([record])
        shutil.rmtree(record_file.parent, ignore_errors=True)
        stopped.append(record_file.parent.name)
    return stopped


def wait_ready(
    url: str,
    record: processes.ProcessRecord,
    log: Path,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll `url` until it answers 2xx, failing fast if the server exited."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(request, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            if not processes.alive(record):
                raise RuntimeError(f"{url} server exited; see {log}") from e
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {READY_TIMEOUT:g}s; see {log}") from e
        time.sleep(0.05)
