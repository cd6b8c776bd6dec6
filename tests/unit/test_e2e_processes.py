"""The harness knows its detached processes by PID and the kernel's start ticks, so a
record outlives the Python process that wrote it and a reused PID is not taken for ours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e import processes
from e2e.processes import ProcessRecord


def test_a_process_is_known_by_its_start_ticks_not_its_pid_alone() -> None:
    mine = ProcessRecord.of(os.getpid())
    assert processes.alive(mine)
    assert processes.alive(ProcessRecord.from_json(mine.to_json()))
    assert not processes.alive(ProcessRecord(mine.pid, mine.pgid, mine.started + 1))


def test_a_command_name_with_spaces_and_parentheses_is_read_past(tmp_path: Path) -> None:
    odd = tmp_path / "sleep) (1 2"
    odd.symlink_to("/bin/sleep")
    record = processes.spawn([str(odd), "60"], tmp_path / "log")
    try:
        assert processes.alive(record)
        assert record.started == ProcessRecord.of(record.pid).started
    finally:
        processes.stop([record], grace=5)
    assert not processes.alive(record)


def test_a_gone_process_has_no_record() -> None:
    with pytest.raises(ProcessLookupError):
        ProcessRecord.of(2**22 + 1)
