"""A TCP proxy on loopback in front of one API server, that can crawl, die and return.

The clusters are shared by every test running at the time, so a test that needs a member
to die or to crawl must not touch the real API server: it joins the hub through this
proxy instead, and only that hub sees the fault. TLS passes through untouched (the API
server's certificate is valid for 127.0.0.1, and the kubeconfig keeps its CA), so from the
hub's side the proxy is the API server.

- `delay`: every chunk, in each direction, is held this long before it is forwarded. It
  is latency, not a bandwidth limit: chunks queue in order and each waits its own time,
  so a watch event pays the delay as a request does.
- `die()`: every connection is cut and the listener closed, so new connections are
  refused, as with a dead API server. `revive()` listens again on the same port.

It runs its own event loop in a daemon thread of the test process, so a synchronous test
drives it and it stops with the test (`running_proxy` is a context manager).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

# Bytes read at once; an API server's answers are a few kB, a list a few hundred.
CHUNK = 64 * 1024
# A bound on every call into the proxy's loop from the test's thread.
CONTROL_TIMEOUT = 10.0


class FaultProxy:
    """Forwards 127.0.0.1:`port` to 127.0.0.1:`upstream`."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"faultproxy-{upstream}", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._sockets: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def stop(self) -> None:
        """Cut everything and end the proxy's loop and thread."""
        self._call(self._die())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        self._loop.close()

    def die(self) -> None:
        """Cut every connection and refuse new ones, until `revive`."""
        self._call(self._die())

    def revive(self) -> None:
        """Listen again, on the same port."""
        self._call(self._listen())

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(CONTROL_TIMEOUT)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        # asyncio sets SO_REUSEADDR, so the port taken before a death is free to take again.
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _die(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        # Reset every socket: each link's pipes then see their ends gone and finish.
        for writer in self._sockets:
            _abort(writer)
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _accept(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._sockets.add(client_out)
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            self._close(task, client_out)
            return
        self._sockets.add(server_out)
        pipes = [
            asyncio.create_task(self._pipe(client_in, server_out)),
            asyncio.create_task(self._pipe(server_in, client_out)),
        ]
        try:
            # The link ends with either direction (HTTP clients never half-close): a watch
            # whose client went away must not stream on into nowhere.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._close(task, client_out, server_out)

    def _close(self, link: asyncio.Task[None], *writers: asyncio.StreamWriter) -> None:
        """An abort (a reset), not a polite close: a dead server finishes no answer."""
        for writer in writers:
            _abort(writer)
            self._sockets.discard(writer)
        self._links.discard(link)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        """Forward chunks in order, each held `delay` seconds from when it was read, until
        the source ends (what was read is forwarded first) or either socket fails."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            while True:
                data = await source.read(CHUNK)
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    return

        async def forward() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    return
                await asyncio.sleep(max(due - loop.time(), 0.0))
                sink.write(data)
                await sink.drain()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(read())
                group.create_task(forward())
        except* OSError:
            pass  # a socket was reset or refused: the link ends


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if isinstance(sock, socket.socket) and sock.fileno() >= 0:
        # Linger 0: the close sends a reset instead of a FIN.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.contextmanager
def running_proxy(upstream: int) -> Iterator[FaultProxy]:
    """A proxy to 127.0.0.1:`upstream`, passing through until told otherwise."""
    proxy = FaultProxy(upstream)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
