"""The CLI's side of the HTTP API: one request to the hub, on a socket of the standard
library.

Errors come back as the hub's one-line message with its exit code, so the CLI prints
exactly what the hub decided and exits the way scripts expect. A command is one request
to a hub that is usually on this machine, so this speaks the little HTTP/1.1 that takes
(a request with `Connection: close`; an answer framed by Content-Length, chunks or the
end of the connection) instead of `http.client`, which loads the email package and ssl
for it, a tenth of a command's start. asyncio and aiohttp's connector would cost several
times that; tests/unit/test_cli_imports.py keeps all three out. ssl is loaded for an
`https` hub only, and the socket by a command that sends a request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hub.errors import FlotillaError, HubUnavailable
from hub.home import START_HINT, Home

if TYPE_CHECKING:
    import socket

# Generous: `join` alone may take the cluster's full 10 s to answer. The socket bounds
# each connect and each read by it, so a hub that goes silent is given up after as long.
REQUEST_TIMEOUT = 120.0
# An event stream is quiet for as long as nothing happens: only its connect is bounded.
STREAM_CONNECT_TIMEOUT = 10.0
# A status line or header longer than this is not the hub's (its are a few dozen bytes).
MAX_LINE = 65536


class _NotHTTP(Exception):
    """The answer is not HTTP, or ends before its own framing says it does."""


class RemoteError(FlotillaError):
    """An error the hub reported; carries the hub's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class HubClient:
    def __init__(self, url: str, token: str, *, timeout: float = REQUEST_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self._headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    def from_home(cls, home: Home | None = None, *, timeout: float = REQUEST_TIMEOUT) -> HubClient:
        return cls(*(home or Home.default()).locate(), timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The hub's JSON answer to one request; a RemoteError when it refused."""
        try:
            with self._exchange(method, path, body, self.timeout) as answer:
                raw = b"".join(answer.body())
        except TimeoutError:
            raise HubUnavailable(f"the hub at {self.url} did not answer in time") from None
        except OSError:
            raise HubUnavailable(f"cannot reach the hub at {self.url}; {START_HINT}") from None
        except _NotHTTP:
            raise self._not_a_hub() from None
        payload = self._json(raw)
        if answer.status >= 400:
            raise self._refused(payload)
        return payload

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """`request` for async callers (the bench joins clusters concurrently): in a
        thread, so their loop goes on meanwhile."""
        import asyncio  # loaded already wherever a coroutine awaits this

        return await asyncio.to_thread(self.request, method, path, body)

    def lines(self, path: str) -> Iterator[Any]:
        """Each JSON line of a streaming answer (NDJSON), until the hub ends it; empty
        lines (the stream's keep-alives) are skipped."""
        try:
            with self._exchange("GET", path, None, STREAM_CONNECT_TIMEOUT, stream=True) as answer:
                if answer.status >= 400:
                    raise self._refused(self._json(b"".join(answer.body())))
                for line in answer.lines():
                    if line.strip():
                        yield self._json(line)
        except (OSError, _NotHTTP):
            raise HubUnavailable(f"lost the hub at {self.url}; {START_HINT}") from None

    def _exchange(
        self, method: str, path: str, body: Any, timeout: float, *, stream: bool = False
    ) -> _Answer:
        """Send one request and read the answer's head. The connect and every read wait
        `timeout` at most; a `stream` waits for its next line as long as it takes."""
        import socket  # by a command that sends a request, not by `--help`

        parts = urlsplit(self.url)
        host = parts.hostname or "localhost"
        https = parts.scheme == "https"
        sock = socket.create_connection((host, parts.port or (443 if https else 80)), timeout)
        file: IO[bytes] | None = None
        try:
            if https:
                import ssl

                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            data = b"" if body is None else json.dumps(body).encode()
            head = [
                f"{method} {parts.path}{path} HTTP/1.1",
                f"Host: {parts.netloc}",
                *(f"{name}: {value}" for name, value in self._headers.items()),
                "Accept-Encoding: identity",
                "Connection: close",
            ]
            if body is not None:
                head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
            sock.sendall("\r\n".join([*head, "", ""]).encode() + data)
            if stream:
                sock.settimeout(None)
            file = sock.makefile("rb")
            return _Answer.read(sock, file)
        except BaseException:
            if file is not None:  # the socket closes only once its file is closed too
                file.close()
            sock.close()
            raise

    def _json(self, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise self._not_a_hub() from None

    def _refused(self, payload: Any) -> FlotillaError:
        if not isinstance(payload, dict):
            return self._not_a_hub()
        return RemoteError(str(payload.get("error")), int(payload.get("exit_code", 1)))

    def _not_a_hub(self) -> HubUnavailable:
        """Something answered at the hub's address, but not in the hub's JSON (a proxy's
        page, another service)."""
        return HubUnavailable(f"{self.url} did not answer like a Flotilla hub")


@dataclass
class _Answer:
    """An answer whose head is read: its status and headers, and its body still on the
    connection, read as it is framed."""

    sock: socket.socket
    stream: IO[bytes]
    status: int
    headers: dict[str, str]

    @classmethod
    def read(cls, sock: socket.socket, stream: IO[bytes]) -> _Answer:
        """The head of the answer; no interim (1xx) one comes, as no request expects it."""
        status_line = stream.readline(MAX_LINE)
        if not status_line:  # closed before answering, as a hub that is stopping does
            raise ConnectionResetError("the connection closed before an answer")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise _NotHTTP
        return cls(sock, stream, int(code), _headers(stream))

    def body(self) -> Iterator[bytes]:
        """The body's pieces as they arrive; _NotHTTP if the connection ends inside one."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while size := _chunk_size(self.stream.readline(MAX_LINE)):
                yield _exactly(self.stream, size)
                _exactly(self.stream, 2)  # the chunk's CRLF
            return
        length = self.headers.get("content-length")
        if length is None:
            yield self.stream.read()  # framed by the end of the connection
            return
        if not length.isdigit():
            raise _NotHTTP
        yield _exactly(self.stream, int(length))

    def lines(self) -> Iterator[bytes]:
        """The body's lines, each as soon as it is whole."""
        pending = b""
        for piece in self.body():
            *whole, pending = (pending + piece).split(b"\n")
            yield from whole
        if pending:
            yield pending

    def __enter__(self) -> _Answer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()
        self.sock.close()


def _headers(stream: IO[bytes]) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := stream.readline(MAX_LINE)) not in (b"\r\n", b"\n"):
        name, colon, value = line.partition(b":")
        if not colon:  # the end of the connection, or not a header
            raise _NotHTTP
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return headers


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";")[0], 16)
    except ValueError:
        raise _NotHTTP from None


def _exactly(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise _NotHTTP
    return data
