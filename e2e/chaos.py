"""The fault and load scenarios at volume (issue 17): `make chaos`, `python -m e2e.chaos`.

Runs every test marked `chaos` with `FLOTILLA_CHAOS_RUNS` runs of each seeded scenario (20
unless set) and `FLOTILLA_CHAOS_EXAMPLES` examples of each property (200), then prints
`N/M converged` per scenario: a scenario is a test function, its runs are its
parametrisations. A failed run's test id holds its seed, so it can be replayed alone with
`FLOTILLA_CHAOS_SEED=SEED`. Extra arguments go to pytest (`-x`, `-k kills`).

The seeded tests draw their seeds here (`seeds`), so `make test` runs a few fresh ones and
this runner many, from the same code.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections import defaultdict

import pytest

RUNS_VARIABLE = "FLOTILLA_CHAOS_RUNS"
SEED_VARIABLE = "FLOTILLA_CHAOS_SEED"
# Runs of each seeded scenario under `make chaos` when FLOTILLA_CHAOS_RUNS is not set.
CHAOS_RUNS = 20
# Hypothesis examples per route of the API fuzz (tests/integration/test_api_input.py) under
# `make chaos`, when FLOTILLA_CHAOS_EXAMPLES is not set; `make test` draws 25.
CHAOS_EXAMPLES = 200
# The seeds a test is parametrised with appear in its id as `seed=N`.
_PARAMETERS = re.compile(r"\[.*\]$")


def seeds(runs: int) -> list[int]:
    """The seeds of this session's runs of one scenario: the one of FLOTILLA_CHAOS_SEED (a
    replay), else FLOTILLA_CHAOS_RUNS fresh ones, else `runs` (what `make test` affords)."""
    replay = os.environ.get(SEED_VARIABLE)
    if replay:
        return [_whole(SEED_VARIABLE, replay)]
    count = _whole(RUNS_VARIABLE, os.environ.get(RUNS_VARIABLE) or str(runs))
    return [secrets.randbelow(2**32) for _ in range(count)]


def _whole(variable: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise pytest.UsageError(f"{variable}: expected a whole number, got {text!r}")
    return value


class Tally:
    """A pytest plugin: each scenario's runs and those that failed, printed at the end."""

    def __init__(self) -> None:
        self.runs: dict[str, list[str]] = defaultdict(list)
        self.failed: dict[str, list[str]] = defaultdict(list)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        scenario = _PARAMETERS.sub("", report.nodeid)
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.skipped:
                return
            self.runs[scenario].append(report.nodeid)
        if report.failed and report.nodeid not in self.failed[scenario]:
            self.failed[scenario].append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        terminalreporter.section("chaos: runs that converged")
        for scenario, runs in sorted(self.runs.items()):
            failed = self.failed.get(scenario, [])
            terminalreporter.write_line(
                f"{len(runs) - len(failed)}/{len(runs)} converged  {scenario}"
            )
            for nodeid in failed:
                terminalreporter.write_line(f"    failed: {nodeid}")


def main(argv: list[str]) -> int:
    os.environ.setdefault(RUNS_VARIABLE, str(CHAOS_RUNS))
    os.environ.setdefault("FLOTILLA_CHAOS_EXAMPLES", str(CHAOS_EXAMPLES))
    return int(pytest.main(["-m", "chaos", "-p", "no:cacheprovider", *argv], plugins=[Tally()]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
