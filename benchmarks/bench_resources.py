"""Pooled `HTTPResource` vs a new ClientSession per call (the guide's sample).

1,000 GETs to a local aiohttp server on 127.0.0.1, 20 at a time, both ways in
the same process; the server counts the TCP connections each way opened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from aiohttp import web

from act_operator_lib import AsyncBaseNode, HTTPResource

REQUESTS = 1_000
CONCURRENCY = 20
ROUNDS = 3


class Pooled(AsyncBaseNode):
    http = HTTPResource(limit=CONCURRENCY)

    async def execute(self, state: Any) -> Any:
        session = await self.http()
        async with session.get(state["url"]) as response:
            return {"data": await response.json()}


class SessionPerCall(AsyncBaseNode):
    async def execute(self, state: Any) -> Any:
        async with aiohttp.ClientSession() as session, session.get(state["url"]) as response:
            return {"data": await response.json()}


async def _drive(node: AsyncBaseNode, url: str) -> float:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one() -> None:
        async with semaphore:
            await node({"url": url})

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(REQUESTS)))
    return time.perf_counter() - started


async def _run() -> dict[str, tuple[float, int]]:
    connections: set[Any] = set()

    async def handle(request: web.Request) -> web.Response:
        connections.add(request.transport)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    results: dict[str, tuple[float, int]] = {}
    try:
        for name, node in (("pooled", Pooled()), ("per_call", SessionPerCall())):
            best = float("inf")
            opened = 0
            for _ in range(ROUNDS):
                connections.clear()
                best = min(best, await _drive(node, url))
                opened = len(connections)
            await node.aclose()
            results[name] = (best, opened)
    finally:
        await runner.cleanup()
    return results


def main() -> str:
    """Run the comparison and return a Markdown section for docs/benchmarks.md."""
    results = asyncio.run(_run())
    pooled_time, pooled_connections = results["pooled"]
    per_call_time, per_call_connections = results["per_call"]
    rows = [
        "| Way | Time for 1,000 GETs (best of 3) | GETs/s | TCP connections opened |",
        "|---|---:|---:|---:|",
        f"| `HTTPResource(limit={CONCURRENCY})` (pooled) | {pooled_time * 1000:.0f} ms | "
        f"{REQUESTS / pooled_time:,.0f} | {pooled_connections} |",
        f"| new `ClientSession` per call (guide) | {per_call_time * 1000:.0f} ms | "
        f"{REQUESTS / per_call_time:,.0f} | {per_call_connections} |",
    ]
    return (
        "## Pooled resources\n\n"
        f"{REQUESTS:,} GETs to a local aiohttp server, {CONCURRENCY} in flight, as a node "
        "call each.\n\n" + "\n".join(rows) + "\n\n"
        f"Pooled is **{per_call_time / pooled_time:.1f}x** faster than a session per call.\n"
    )


if __name__ == "__main__":
    print(main())
