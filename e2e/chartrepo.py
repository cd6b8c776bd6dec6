"""Chart servers on 127.0.0.1 for tests and the demo: a Helm HTTP repository and an OCI registry.

Both serve every chart under `e2e/charts`, each packaged twice (1.0.0 and 2.0.0) from its one
source with the appVersion set to the version, so an upgrade between the two changes exactly
the image tag. Nothing here is mocked: the HTTP repository is a plain static file server with
an index Helm generated, and the OCI registry is the CNCF distribution registry (Debian's
`docker-registry`), run as our own process, never as a system service.

    python -m e2e.chartrepo serve [--port 8879] [--dir .e2e/charts]   # HTTP repo, detached
    python -m e2e.chartrepo registry [--port 5000]                    # OCI registry, detached
    python -m e2e.chartrepo stop                                      # both

Detached servers record themselves under `${FLOTILLA_E2E_DIR:-.e2e}/` (e2e.servers) so `stop`
finds them from another process. Tests use `start_chart_repo` and `start_oci_registry`
(fixtures in tests/integration/conftest.py) and stop what they start.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python

from e2e import debian, processes
from e2e.servers import (
    LOCALHOST,
    Stoppable,
    free_port,
    recorded,
    spawn_recorded,
    stop_recorded,
    wait_ready,
)

CHARTS_DIR = Path(__file__).parent / "charts"
CHART_VERSIONS = ("1.0.0", "2.0.0")
# The demo's fixed addresses, so its Application files can name them.
DEMO_REPO_PORT = 8879
DEMO_REGISTRY_PORT = 5000
REGISTRY_BINARY = REGISTRY_PACKAGE = "docker-registry"
# The repository path charts are pushed under: oci://127.0.0.1:PORT/charts/<chart>.
OCI_NAMESPACE = "charts"
_REPO_PREFIX = "chartrepo-"
_REGISTRY_PREFIX = "oci-registry-"


def state_dir() -> Path:
    return Path(os.environ.get("FLOTILLA_E2E_DIR", ".e2e"))


def chart_sources() -> list[Path]:
    """Every chart directory under e2e/charts."""
    return sorted(path.parent for path in CHARTS_DIR.glob("*/Chart.yaml"))


def package_charts(destination: Path, versions: Sequence[str] = CHART_VERSIONS) -> list[Path]:
    """Package every chart at every version into `destination`; returns the archives.

    Each source is copied with its symlinks resolved first: the variant charts link the demo
    chart's shared templates, and Helm announces every link it follows on stderr.
    """
    destination.mkdir(parents=True, exist_ok=True)
    archives = []
    with tempfile.TemporaryDirectory(prefix="flotilla-charts-") as scratch:
        for source in chart_sources():
            resolved = Path(scratch) / source.name
            shutil.copytree(source, resolved)
            for version in versions:
                archive = helm_python.package(
                    resolved, destination=destination, version=version, app_version=version
                )
                archives.append(Path(archive))
    return archives


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files without a log line per request on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ChartRepo(Stoppable):
    """A Helm HTTP repository served from a thread of this process.

    Stop it with `stop()` or a `with` block; a temporary directory it created goes with it.
    """

    def __init__(self, directory: Path, server: ThreadingHTTPServer, owns_directory: bool) -> None:
        self.directory = directory
        self._server = server
        self._owns_directory = owns_directory
        self.port: int = server.server_address[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, name=f"chart-repo-{self.port}", daemon=True
        )
        self._thread.start()

    def publish(self, chart: str, version: str, *, app_version: str | None = None) -> Path:
        """Package `chart` from e2e/charts as `version` into the running repository and
        index it again; returns the archive.

        An archive already there under `version` is replaced, as a publisher who pushes a
        version again would: with another `app_version` (the default image tag; default the
        version) its content, and so its digest, changes. The archive is moved in whole, so
        a download meanwhile gets the old bytes or the new, never a mix.
        """
        with tempfile.TemporaryDirectory(prefix="flotilla-charts-") as scratch:
            source = Path(scratch) / chart
            shutil.copytree(CHARTS_DIR / chart, source)  # links resolved, as package_charts
            packaged = helm_python.package(
                source, destination=scratch, version=version, app_version=app_version or version
            )
            archive = self.directory / Path(packaged).name
            partial = archive.with_name(f".{archive.name}.partial")
            shutil.copyfile(packaged, partial)
            partial.replace(archive)
        self.reindex()
        return archive

    def reindex(self) -> None:
        """Regenerate index.yaml from the archives in the directory, as `helm repo index`."""
        helm_python.repo_index_generate(self.directory, base_url=self.url)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def start_chart_repo(port: int = 0, directory: Path | None = None) -> ChartRepo:
    """Package the charts into `directory` (default: a temporary one) and serve them.

    The socket is bound before the index is generated because index.yaml carries absolute
    URLs, and with port 0 the port is only known once bound.
    """
    owns_directory = directory is None
    directory = (
        Path(tempfile.mkdtemp(prefix="flotilla-chartrepo-")) if directory is None else directory
    )
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer((LOCALHOST, port), handler)
    server.daemon_threads = True
    try:
        package_charts(directory)
        helm_python.repo_index_generate(
            directory, base_url=f"http://{LOCALHOST}:{server.server_address[1]}"
        )
    except BaseException:
        server.server_close()
        raise
    return ChartRepo(directory, server, owns_directory)


@dataclass
class OciRegistry(Stoppable):
    """A distribution registry on 127.0.0.1 holding the test charts under `url`."""

    port: int
    workdir: Path
    record: processes.ProcessRecord
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"oci://{LOCALHOST}:{self.port}/{OCI_NAMESPACE}"

    def stop(self) -> None:
        """Stop the registry and drop its storage (it is re-filled on every start)."""
        processes.stop([self.record])
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_oci_registry(port: int = 0) -> OciRegistry:
    """Start a registry on `port` (0: a free one) and push every chart at every version.

    The registry runs detached and recorded in the state dir, so `python -m e2e.chartrepo stop`
    can end it even if the process that started it died; `OciRegistry.stop` ends it normally.
    A registry this state dir already runs on `port` is returned as it is.
    """
    binary = debian.ensure_installed(REGISTRY_BINARY, REGISTRY_PACKAGE)
    port = port or free_port()
    workdir = state_dir().resolve() / f"{_REGISTRY_PREFIX}{port}"
    if (running := recorded(workdir)) is not None:
        return OciRegistry(port, workdir, running)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        json.dumps(  # JSON is YAML, and needs no quoting rules
            {
                "version": 0.1,
                "log": {"level": "warn", "accesslog": {"disabled": True}},
                "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
                "http": {"addr": f"{LOCALHOST}:{port}", "secret": secrets.token_hex(16)},
            }
        )
    )
    log = workdir / "registry.log"
    record = spawn_recorded([str(binary), "serve", str(config)], workdir, log)
    registry = OciRegistry(port, workdir, record)
    try:
        wait_ready(f"http://{LOCALHOST}:{port}/v2/", record, log)
        with tempfile.TemporaryDirectory(prefix="flotilla-oci-") as scratch:
            for archive in package_charts(Path(scratch)):
                helm_python.push(archive, registry.url, plain_http=True)
    except BaseException:
        registry.stop()
        raise
    return registry


def stop_all() -> list[str]:
    """Stop every detached chart server recorded in the state dir; returns what was stopped."""
    root = state_dir()
    return [*stop_recorded(root, _REPO_PREFIX), *stop_recorded(root, _REGISTRY_PREFIX)]


def serve_detached(port: int, directory: Path) -> str:
    """Start `run` as a detached process (or find it running) and return its URL."""
    workdir = state_dir().resolve() / f"{_REPO_PREFIX}{port}"
    url = f"http://{LOCALHOST}:{port}"
    if recorded(workdir) is not None:
        return url
    argv = [sys.executable, "-m", "e2e.chartrepo", "run", "--port", str(port)]
    argv += ["--dir", str(directory.resolve())]
    log = workdir / "chartrepo.log"
    record = spawn_recorded(argv, workdir, log)
    wait_ready(f"{url}/index.yaml", record, log)
    return url


def _run_foreground(port: int, directory: Path) -> None:
    """Serve until SIGTERM or SIGINT: what `serve` runs in the background."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with start_chart_repo(port, directory) as repo:
        print(repo.url, flush=True)
        stopping.wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m e2e.chartrepo", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("serve", "start the HTTP chart repository in the background"),
        ("run", "serve the HTTP chart repository in the foreground"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--port", type=int, default=DEMO_REPO_PORT)
        command.add_argument("--dir", type=Path, default=state_dir() / "charts")
    registry = commands.add_parser("registry", help="start the OCI registry in the background")
    registry.add_argument("--port", type=int, default=DEMO_REGISTRY_PORT)
    commands.add_parser("stop", help="stop every chart server started from this state dir")
    args = parser.parse_args(argv)

    if args.command == "serve":
        print(serve_detached(args.port, args.dir))
    elif args.command == "run":
        _run_foreground(args.port, args.dir)
    elif args.command == "registry":
        print(start_oci_registry(args.port).url)
    else:
        for name in stop_all():
            print(f"stopped {name}")


if __name__ == "__main__":
    main()
