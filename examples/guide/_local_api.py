"""A tiny JSON API on 127.0.0.1 (random port) that the HTTP examples call.

Started inside the example's own event loop, so nothing leaves the machine::

    async with local_api() as api:
        await graph.ainvoke({"api": api.url})
    print(api.requests, len(api.connections))
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

USERS = {1: "Alice", 2: "Bob", 3: "Carol"}


@dataclass
class LocalAPI:
    """The server's address and what it has seen."""

    url: str = ""
    requests: int = 0
    connections: set[int] = field(default_factory=set)
    """Client ports requests arrived from: one per TCP connection."""
    hits: Counter[str] = field(default_factory=Counter)
    """Requests per path."""


def _app(api: LocalAPI) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def count(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        api.requests += 1
        api.hits[request.path] += 1
        if request.transport is not None:
            api.connections.add(request.transport.get_extra_info("peername")[1])
        return await handler(request)

    async def pause(request: web.Request) -> None:
        await asyncio.sleep(float(request.query.get("delay", 0)))

    @routes.get("/users/{user_id}")
    async def user(request: web.Request) -> web.Response:
        await pause(request)
        user_id = int(request.match_info["user_id"])
        if user_id not in USERS:
            raise web.HTTPNotFound(text=f"no user {user_id}")
        return web.json_response({"id": user_id, "name": USERS[user_id]})

    @routes.get("/users/{user_id}/posts")
    async def posts(request: web.Request) -> web.Response:
        user_id = int(request.match_info["user_id"])
        return web.json_response([{"id": user_id * 10 + 1, "title": f"Post by {user_id}"}])

    @routes.get("/posts/{post_id}/comments")
    async def comments(request: web.Request) -> web.Response:
        post_id = int(request.match_info["post_id"])
        return web.json_response([{"id": 1, "post": post_id, "text": "Nice post"}])

    @routes.get("/weather/{city}")
    async def weather(request: web.Request) -> web.Response:
        await pause(request)
        return web.json_response({"city": request.match_info["city"], "temp": 21})

    @routes.get("/news/{topic}")
    async def news(request: web.Request) -> web.Response:
        await pause(request)
        return web.json_response({"topic": request.match_info["topic"], "articles": 2})

    @routes.get("/items/{number}")
    async def item(request: web.Request) -> web.Response:
        await pause(request)
        number = int(request.match_info["number"])
        return web.json_response({"item": number, "square": number * number})

    @routes.post("/echo")
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"received": await request.json()})

    @routes.get("/flaky/{key}")
    async def flaky(request: web.Request) -> web.Response:
        # Fails with 503 and a Retry-After header until it has been asked `failures` times.
        if api.hits[request.path] <= int(request.query.get("failures", 2)):
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "0.01"})
        return web.json_response({"key": request.match_info["key"], "ok": True})

    app = web.Application(middlewares=[count])
    app.add_routes(routes)
    return app


@asynccontextmanager
async def local_api() -> AsyncIterator[LocalAPI]:
    """Serve the API on a random port of 127.0.0.1 until the block exits."""
    api = LocalAPI()
    runner = web.AppRunner(_app(api), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    api.url = f"http://{host}:{port}"
    try:
        yield api
    finally:
        await runner.cleanup()
