"""The composition root: builds every part of the hub, runs them, and takes them down.

`flotilla serve` calls `serve`; nothing else constructs the store, the registry, the
chart cache, the engine or the API. State is in the store, so stopping is cheap and a
hub killed at any moment starts again from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from aiohttp import web

from hub.api import create_app
from hub.charts import ChartCache
from hub.fleet.registry import Registry
from hub.home import Home
from hub.redaction import Scrubber
from hub.service.applications import Applications
from hub.state.store import Store

log = logging.getLogger(__name__)


async def serve(
    home: Home, listen: str, *, probe_interval: float, step_timeout: float, fanout: int
) -> None:
    """Run the hub until SIGTERM or SIGINT; state is in the store, so stopping is cheap."""
    home.prepare()
    scrubber = Scrubber()
    logging.getLogger().addFilter(scrubber)
    for handler in logging.getLogger().handlers:
        handler.addFilter(scrubber)
    store = Store(home.store)
    registry = Registry(store, scrubber, temp_dir=home.temp, probe_interval=probe_interval)
    apps = Applications(
        store, registry, ChartCache(home.charts), step_timeout=step_timeout, fanout=fanout
    )
    token = home.write_token()
    scrubber.add([token])
    runner = web.AppRunner(create_app(registry, apps, scrubber, token), access_log=None)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    site = web.TCPSite(runner, host or "127.0.0.1", int(port))
    await site.start()
    bound = runner.addresses[0]
    url = f"http://{bound[0]}:{bound[1]}"
    home.write_hub_file(url)
    log.info("hub listening on %s (home %s)", url, home.root)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    prober = asyncio.create_task(registry.probe_forever(), name="prober")
    prober.add_done_callback(_report_death)
    registry.observe()
    apps.engine.start()
    started = time.monotonic()
    await stop.wait()
    log.info("hub stopping after %.0fs", time.monotonic() - started)
    prober.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await prober
    home.remove_hub_file()
    await runner.cleanup()
    await apps.engine.stop()
    await registry.close()
    store.close()


def _report_death(task: asyncio.Task[None]) -> None:
    """A background task that dies is logged, never silently lost."""
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s died", task.get_name(), exc_info=task.exception())
