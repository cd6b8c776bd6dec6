"""A real hub process, and the real CLI run as a subprocess, for tests, the demo and bench.

They drive Flotilla exactly as a user does: `flotilla serve` in the background and
`flotilla ...` commands against it, each with its own FLOTILLA_HOME so two never share a
hub. Everything the hub logged is kept for assertions (secrets must never appear).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

START_TIMEOUT = 30.0


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def yaml(self) -> Any:
        return yaml.safe_load(self.stdout)


# A killed replica's shards are free this long after its last renewal; four renewals fit
# in the fence's margin (hub.state.shards), so a slow round on a busy machine costs none.
LEASE_SECONDS = 6.0
RENEW_SECONDS = 1.0


class HubProcess:
    def __init__(
        self,
        home: Path,
        *,
        probe_interval: float = 1.0,
        log_level: str = "debug",
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.home = home
        self.probe_interval = probe_interval
        self.log_level = log_level
        self.serve_args = serve_args
        self.log_path = home.parent / f"{home.name}-hub.log"
        self.outputs: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_HUB")}
        env.pop("FLOTILLA_TOKEN", None)
        return env | {"FLOTILLA_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "200"}

    def start(self) -> None:
        (self.home / "hub.json").unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hub",
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--probe-interval",
                    str(self.probe_interval),
                    "--log-level",
                    self.log_level,
                    *self.serve_args,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not (self.home / "hub.json").exists():
            if self._proc.poll() is not None:
                raise RuntimeError(f"hub exited at start:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hub did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, the clean way; returns the exit code."""
        return self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the hub gets no chance to tidy up."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> int:
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
        code = self._proc.wait(timeout=30)
        self._proc = None
        return code

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def cli(self, *args: str, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "hub", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.outputs += [proc.stdout, proc.stderr]
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, timeout: float = 120) -> Result:
        result = self.cli(*args, timeout=timeout)
        assert result.code == 0, (
            f"flotilla {' '.join(args)} failed ({result.code}): {result.stderr}"
        )
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def everything_printed(self) -> str:
        return "\n".join(self.outputs) + "\n" + self.log()


def kubernetes_store(
    kubeconfig: Path, namespace: str, *, short_leases: bool = True
) -> tuple[str, ...]:
    """`flotilla serve`'s options for a Kubernetes store in `namespace` of the management
    cluster `kubeconfig` reaches. With `short_leases`, a hub killed by a test hands its
    applications on (to its own restart, or to another replica) within seconds; without,
    the hub renews its Leases as often as a production one (the bench's write counts)."""
    leases = ("--lease-seconds", str(LEASE_SECONDS), "--renew-seconds", str(RENEW_SECONDS))
    return (
        "--store",
        "kubernetes",
        "--store-kubeconfig",
        str(kubeconfig),
        "--store-namespace",
        namespace,
        *(leases if short_leases else ()),
    )
