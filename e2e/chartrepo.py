"""Chart servers on 127.0.0.1 for tests and the demo: a Helm HTTP repository and an OCI registry.

Both serve every chart under `e2e/charts`, each packaged twice (1.0.0 and 2.0.0) from its one
source with the appVersion set to the version, so an upgrade between the two changes exactly
the image tag. Nothing here is mocked: the HTTP repository is a plain static file server with
an index Helm generated, and the OCI registry is the CNCF distribution registry (Debian's
`docker-registry`), run as our own process, never as a system service.

    python -m e2e.chartrepo serve [--port 8879] [--dir .e2e/charts]   # HTTP repo, detached
    python -m e2e.chartrepo registry [--port 5000]                    # OCI registry, detached
    python -m e2e.chartrepo stop                                      # both

Either can demand credentials, as private ones do: the HTTP repository checks each request's
`Authorization` (basic auth or a bearer token, changeable while it runs), and the registry
runs with the distribution registry's own htpasswd auth (bcrypt entries).

Detached servers record themselves under `${FLOTILLA_E2E_DIR:-.e2e}/` (e2e.servers) so `stop`
finds them from another process. Tests use `start_chart_repo` and `start_oci_registry`
(fixtures in tests/integration/conftest.py) and stop what they start.
"""

from __future__ import annotations

import argparse
import base64
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
from typing import Any, cast

import bcrypt
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
# The lowest cost bcrypt allows: throw-away test credentials, checked on every request.
BCRYPT_ROUNDS = 4
REGISTRY_REALM = "flotilla-e2e"


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


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` header value of basic auth."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class _RepoServer(ThreadingHTTPServer):
    """The HTTP server of a ChartRepo: who it lets in, and who asked."""

    daemon_threads = True
    # `Authorization` values let in; empty, anyone is.
    accepted: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The `Authorization` of every request, in order (None: it had none).
        self.authorizations: list[str | None] = []


class _QuietHandler(SimpleHTTPRequestHandler):
    """Static files without a log line per request on stderr, behind the server's
    credentials when it has any (401, as a private repository answers)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self._let_in():
            super().do_GET()

    def do_HEAD(self) -> None:
        if self._let_in():
            super().do_HEAD()

    def _let_in(self) -> bool:
        server = cast(_RepoServer, self.server)
        given = self.headers.get("Authorization")
        server.authorizations.append(given)
        if not server.accepted or given in server.accepted:
            return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="charts"')
        self.send_header("Content-Length", "0")
        self.end_headers()
        return False


class ChartRepo(Stoppable):
    """A Helm HTTP repository served from a thread of this process.

    Stop it with `stop()` or a `with` block; a temporary directory it created goes with it.
    """

    def __init__(self, directory: Path, server: _RepoServer, owns_directory: bool) -> None:
        self.directory = directory
        self._server = server
        self._owns_directory = owns_directory
        self.port: int = server.server_address[1]
        self.url = f"http://{LOCALHOST}:{self.port}"
        # The credentials it demands (`require`): a user and password, a bearer token.
        self.basic: tuple[str, str] | None = None
        self.token: str | None = None
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

    def reindex(self, base_url: str | None = None) -> None:
        """Regenerate index.yaml from the archives in the directory, as `helm repo index`;
        `base_url`: where the index says the archives are (default: here)."""
        helm_python.repo_index_generate(self.directory, base_url=base_url or self.url)

    def require(self, *, basic: tuple[str, str] | None = None, token: str | None = None) -> None:
        """Let in only requests with these credentials from now on (neither: anyone)."""
        self.basic, self.token = basic, token
        accepted = set()
        if basic is not None:
            accepted.add(basic_authorization(*basic))
        if token is not None:
            accepted.add(f"Bearer {token}")
        self._server.accepted = frozenset(accepted)

    @property
    def authorizations(self) -> list[str | None]:
        """The `Authorization` header of every request so far (None where there was none)."""
        return list(self._server.authorizations)

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
    server = _RepoServer((LOCALHOST, port), handler)
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
    """A distribution registry on 127.0.0.1 holding the test charts under `url`; with
    `users` (name -> password), only they get in (the registry's htpasswd auth)."""

    port: int
    workdir: Path
    record: processes.ProcessRecord
    users: dict[str, str] = field(default_factory=dict)
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"oci://{LOCALHOST}:{self.port}/{OCI_NAMESPACE}"

    @property
    def host(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def set_users(self, users: dict[str, str]) -> None:
        """Let in `users` (name -> password) from now on, and no one else. The registry
        reads its htpasswd file only as it starts, so it is restarted on the same port and
        storage, as an operator who rotates a password does."""
        if not self.users:
            raise RuntimeError("set_users needs a registry started with users (htpasswd auth)")
        _write_htpasswd(self.workdir, users)
        self.users = dict(users)
        processes.stop([self.record])
        self.record = _spawn_registry(self.workdir, self.host, self.users)

    def stop(self) -> None:
        """Stop the registry and drop its storage (it is re-filled on every start)."""
        processes.stop([self.record])
        shutil.rmtree(self.workdir, ignore_errors=True)


def _spawn_registry(workdir: Path, host: str, users: dict[str, str]) -> processes.ProcessRecord:
    """Start the registry configured in `workdir` and wait until it answers (as a user of
    `users`, if it has any)."""
    binary = debian.ensure_installed(REGISTRY_BINARY, REGISTRY_PACKAGE)
    log = workdir / "registry.log"
    record = spawn_recorded([str(binary), "serve", str(workdir / "config.yml")], workdir, log)
    headers = {}
    if users:
        headers["Authorization"] = basic_authorization(*next(iter(users.items())))
    try:
        wait_ready(f"http://{host}/v2/", record, log, headers)
    except BaseException:
        processes.stop([record])
        raise
    return record


def _write_htpasswd(workdir: Path, users: dict[str, str]) -> Path:
    """The registry's htpasswd file: a bcrypt entry per user, as `htpasswd -B` writes."""
    path = workdir / "htpasswd"
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()}"
        for user, password in users.items()
    ]
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def start_oci_registry(port: int = 0, *, users: dict[str, str] | None = None) -> OciRegistry:
    """Start a registry on `port` (0: a free one) and push every chart at every version;
    with `users` (name -> password), behind htpasswd auth that lets in only them.

    The registry runs detached and recorded in the state dir, so `python -m e2e.chartrepo stop`
    can end it even if the process that started it died; `OciRegistry.stop` ends it normally.
    A registry this state dir already runs on `port` is returned as it is.
    """
    port = port or free_port()
    workdir = state_dir().resolve() / f"{_REGISTRY_PREFIX}{port}"
    if (running := recorded(workdir)) is not None:
        return OciRegistry(port, workdir, running, dict(users or {}))
    workdir.mkdir(parents=True, exist_ok=True)
    settings: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        "http": {"addr": f"{LOCALHOST}:{port}", "secret": secrets.token_hex(16)},
    }
    if users:
        htpasswd = _write_htpasswd(workdir, users)
        settings["auth"] = {"htpasswd": {"realm": REGISTRY_REALM, "path": str(htpasswd)}}
    # JSON is YAML, and needs no quoting rules.
    (workdir / "config.yml").write_text(json.dumps(settings))
    try:
        record = _spawn_registry(workdir, f"{LOCALHOST}:{port}", dict(users or {}))
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    registry = OciRegistry(port, workdir, record, dict(users or {}))
    try:
        _push_charts(registry)
    except BaseException:
        registry.stop()
        raise
    return registry


def _push_charts(registry: OciRegistry) -> None:
    """Every chart at every version into the registry, logged in as its first user if it
    has any (with a logins file of its own, never the user's Helm's)."""
    with tempfile.TemporaryDirectory(prefix="flotilla-oci-") as scratch:
        logins = Path(scratch) / "logins.json"
        with helm_python.RegistryClient(plain_http=True, credentials_file=logins) as client:
            if registry.users:
                user, password = next(iter(registry.users.items()))
                client.login(registry.host, user, password, plain_http=True)
            for archive in package_charts(Path(scratch) / "charts"):
                client.push(archive, registry.url, plain_http=True)


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
