"""A real aiohttp server on 127.0.0.1 (random port), on its own thread and loop.

Running it on its own loop lets one server serve tests that call ``asyncio.run``
several times, and counts requests and the client ports they arrived on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web


class LocalServer:
    """What the server saw: ``requests`` and the client ``ports`` they came from."""

    def __init__(self) -> None:
        self.url = ""
        self.requests = 0
        self.ports: set[int] = set()
        self._lock = threading.Lock()

    async def handle(self, request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        with self._lock:
            self.requests += 1
            self.ports.add(transport.get_extra_info("peername")[1])
        return web.json_response({"path": request.path})


@contextmanager
def local_server() -> Iterator[LocalServer]:
    """Start the server, yield what it saw, stop it."""
    server = LocalServer()
    ready = threading.Event()
    state: dict[str, object] = {}

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", server.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        server.url = f"http://127.0.0.1:{port}"
        stop = asyncio.Event()
        state["loop"], state["stop"] = asyncio.get_running_loop(), stop
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    ready.wait()
    try:
        yield server
    finally:
        loop = state["loop"]
        stop = state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join()
