"""Serve a migrated ``act new`` project with the real ``langgraph dev`` and run its cast.

Run by tests/test_scaffold_compat.py inside a network namespace of its own
(``unshare --net``). Usage: ``python _scaffold_dev_worker.py PROJECT``; prints one
JSON line with what the API answered and exits 0, or exits non-zero with the log.

The project's langgraph.json names the graph object (a `BaseGraph` instance), which
the server calls as a graph factory, then gives the graph its checkpointer.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp

from _langgraph_dev_server import loopback_up, serve

PROJECT = Path(sys.argv[1])
RUN_SECONDS = 45


async def main() -> dict[str, Any]:
    loopback_up()
    limit = aiohttp.ClientTimeout(total=RUN_SECONDS)
    async with serve(PROJECT) as url, aiohttp.ClientSession(url, timeout=limit) as client:
        run = {"assistant_id": "main-cast", "input": {"query": "I'm joining Act"}}
        async with client.post("/runs/wait", json=run) as response:
            stateless = {"status": response.status, "body": await response.json()}
        async with client.post("/threads", json={}) as response:
            thread = (await response.json())["thread_id"]
        # Read to the end: the server cancels a waited-on run whose client went away.
        async with client.post(f"/threads/{thread}/runs/wait", json=run) as response:
            threaded = {"status": response.status, "body": await response.json()}
        async with client.get(f"/threads/{thread}/state") as response:
            state = await response.json()
    messages = state["values"].get("messages", [])
    return {
        "stateless": stateless,
        "threaded": threaded,
        "result": state["values"].get("result"),
        "messages": [message.get("content") for message in messages],
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
