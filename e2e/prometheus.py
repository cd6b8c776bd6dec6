"""A real Prometheus for tests and developers, scraping the simulated kubelets' app metrics.

Metric analysis of canaries queries Prometheus, so its tests need one that really scrapes,
stores and evaluates PromQL: Debian's `prometheus`, installed by the test setup when missing
(e2e.debian) and run as our own detached process, never as the system service. Every second
it scrapes each cluster's `ClusterInfo.metrics_url` (e2e.appmetrics) and labels the series
with `cluster: <name>`, as a fleet-wide Prometheus labels its targets, so that
`rate(http_requests_total{cluster="e2e-1"}[10s])` has data a second or two after a pod starts.
Other metrics URLs (a hub's `/metrics`) can be scraped beside them, each as a job of its own.

Prometheus 2.42 hands new targets to its scrapers at most every 5 s, so it answers queries a
moment after it starts but scrapes nothing for about 5 s; starting and resuming wait for one
scrape of every target, so that a test never mistakes that blind spell for an app's silence.

    python -m e2e.prometheus up [--port 9099]    # for the running e2e clusters; prints its URL
    python -m e2e.prometheus url [--port 9099]   # the URL of the one running there
    python -m e2e.prometheus down                # every Prometheus of this state dir

Each one lives in `<state dir>/prometheus-<port>/` (config, data, log, process record), so
`down`, which `make down` runs before it stops the clusters, finds it from any process. Tests
use the session fixture `prometheus` of tests/integration/conftest.py, or `start_prometheus`
for one of their own.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt

from e2e import clusters, debian, processes
from e2e.servers import (
    LOCALHOST,
    Stoppable,
    free_port,
    recorded,
    spawn_recorded,
    stop_recorded,
    wait_ready,
)

BINARY = PACKAGE = "prometheus"
# The CLI's fixed port, so a developer's queries and dashboards can name it; not Prometheus'
# own 9090, which a system Prometheus on a developer's machine may hold.
CLI_PORT = 9099
# Every second: a test waits for a rate() over a window of a few scrapes, not for minutes.
SCRAPE_INTERVAL = "1s"
JOB = "apps"
# The lowest cost bcrypt allows: these are throw-away test credentials, and Prometheus checks
# the hash on every request.
BCRYPT_ROUNDS = 4
# The 5 s until Prometheus first scrapes, a scrape, and room for a busy machine.
SCRAPED_TIMEOUT = 30.0
QUERY_TIMEOUT = 5.0
_PREFIX = "prometheus-"
_CONFIG = "prometheus.yml"
_WEB_CONFIG = "web.yml"


def scrape_config(targets: Mapping[str, str], jobs: Mapping[str, str] | None = None) -> str:
    """The configuration (JSON, which is YAML) scraping each metrics URL of `targets` as its
    cluster, and each of `jobs` (job name -> metrics URL) as that job."""
    static = [_static(url, {"cluster": name}) for name, url in sorted(targets.items())]
    config = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {"job_name": JOB, "static_configs": static},
            *(
                {"job_name": job, "static_configs": [_static(url, {})]}
                for job, url in sorted((jobs or {}).items())
            ),
        ],
    }
    return json.dumps(config, indent=2)


def _static(url: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """One scrape target: its address, and `labels` with where on it the metrics are."""
    parts = urllib.parse.urlsplit(url)
    where = {"__scheme__": parts.scheme, "__metrics_path__": parts.path}
    return {"targets": [parts.netloc], "labels": {**labels, **where}}


@dataclass
class Prometheus(Stoppable):
    """A Prometheus on 127.0.0.1 at `url` scraping `targets` (metrics URL by cluster name)
    and `jobs` (metrics URL by job name), with basic auth when `basic_auth` is set."""

    port: int
    workdir: Path
    argv: list[str]
    targets: Mapping[str, str]
    record: processes.ProcessRecord | None
    basic_auth: tuple[str, str] | None = None
    jobs: Mapping[str, str] = field(default_factory=dict)
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://{LOCALHOST}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """What a request needs to be let in: an Authorization header under basic auth."""
        if self.basic_auth is None:
            return {}
        token = base64.b64encode(":".join(self.basic_auth).encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result of instant query `promql`, now or at epoch time `at`, as /api/v1/query
        returns it; urllib.error.URLError when Prometheus does not answer (paused, stopped)."""
        params = {"query": promql} | ({} if at is None else {"time": repr(at)})
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        request = urllib.request.Request(url, headers=self.headers)
        with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"{promql}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def _wait_scraped(self, since: float) -> None:
        """Wait until every target was scraped (up or not) after epoch time `since`."""
        promql = f"timestamp(up) > {since!r}"
        deadline = time.monotonic() + SCRAPED_TIMEOUT
        while len(self.query(promql)) < len(self.targets) + len(self.jobs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}: targets not scraped in {SCRAPED_TIMEOUT:g}s")
            time.sleep(0.1)

    def pause(self) -> None:
        """Stop the process, keeping port, configuration and data for `resume`: what a
        Prometheus that is down for a while looks like to its clients."""
        if self.record is not None:
            processes.stop([self.record])
            self.record = None

    def resume(self) -> None:
        """Start the paused process again, same port and data, and wait until it answers and
        has scraped every target once more."""
        if self.record is not None and processes.alive(self.record):
            return
        log = self.workdir / "prometheus.log"
        started = time.time()
        self.record = spawn_recorded(self.argv, self.workdir, log)
        wait_ready(f"{self.url}/-/ready", self.record, log, self.headers)
        self._wait_scraped(started)

    def stop(self) -> None:
        """Stop Prometheus and drop its data."""
        self.pause()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _argv(binary: Path, workdir: Path, port: int, web_config: bool) -> list[str]:
    argv = [
        str(binary),
        f"--config.file={workdir / _CONFIG}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={LOCALHOST}:{port}",
        "--log.level=warn",
    ]
    if web_config:
        argv.append(f"--web.config.file={workdir / _WEB_CONFIG}")
    return argv


def _same_credentials(workdir: Path, basic_auth: tuple[str, str] | None) -> bool:
    """Whether the Prometheus configured in `workdir` lets in exactly `basic_auth`."""
    web = workdir / _WEB_CONFIG
    if basic_auth is None:
        return not web.exists()
    if not web.exists():
        return False
    user, password = basic_auth
    users: dict[str, str] = json.loads(web.read_text())["basic_auth_users"]
    return user in users and bcrypt.checkpw(password.encode(), users[user].encode())


def start_prometheus(
    targets: Mapping[str, str],
    *,
    port: int = 0,
    basic_auth: tuple[str, str] | None = None,
    jobs: Mapping[str, str] | None = None,
) -> Prometheus:
    """Start Prometheus on `port` (0: a free one) scraping `targets`, a metrics URL per
    cluster name, and `jobs`, a metrics URL per job name (a hub's), and wait until it
    answers and has scraped every target once.

    It runs detached and recorded in the state dir, so `python -m e2e.prometheus down` ends it
    even if the process that started it died. A Prometheus of this state dir already running
    on `port` with the same targets and credentials is returned as it is; one with others is
    replaced, data and all.
    """
    binary = debian.ensure_installed(BINARY, PACKAGE)
    port, jobs = port or free_port(), dict(jobs or {})
    workdir = clusters.state_dir() / f"{_PREFIX}{port}"
    config = scrape_config(targets, jobs)
    argv = _argv(binary, workdir, port, web_config=basic_auth is not None)
    if (running := recorded(workdir)) is not None:
        if (workdir / _CONFIG).read_text() == config and _same_credentials(workdir, basic_auth):
            return Prometheus(port, workdir, argv, dict(targets), running, basic_auth, jobs)
        processes.stop([running])
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    (workdir / _CONFIG).write_text(config)
    if basic_auth is not None:
        user, password = basic_auth
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        (workdir / _WEB_CONFIG).write_text(json.dumps({"basic_auth_users": {user: hashed}}))
    server = Prometheus(port, workdir, argv, dict(targets), None, basic_auth, jobs)
    try:
        server.resume()
    except BaseException:
        server.stop()
        raise
    return server


def stop_all() -> list[str]:
    """Stop every Prometheus recorded in the state dir and drop its data; returns their names."""
    return stop_recorded(clusters.state_dir(), _PREFIX)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.prometheus", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("up", "start (or reuse) a Prometheus scraping the running e2e clusters"),
        ("url", "print the URL of the Prometheus running on --port"),
    ):
        commands.add_parser(name, help=help_text).add_argument("--port", type=int, default=CLI_PORT)
    commands.add_parser("down", help="stop every Prometheus started from this state dir")
    args = parser.parse_args(argv)

    if args.command == "up":
        infos = clusters.running()
        if not infos:
            raise SystemExit("e2e: no clusters run: python -m e2e.clusters up")
        print(start_prometheus({i.name: i.metrics_url for i in infos}, port=args.port).url)
    elif args.command == "url":
        if recorded(clusters.state_dir() / f"{_PREFIX}{args.port}") is None:
            raise SystemExit(f"e2e: no Prometheus runs on port {args.port}")
        print(f"http://{LOCALHOST}:{args.port}")
    else:
        for name in stop_all():
            print(f"stopped {name}")


if __name__ == "__main__":
    main()
