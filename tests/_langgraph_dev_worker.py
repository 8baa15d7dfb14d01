"""Serve langgraph.json with the real ``langgraph dev`` and run the showcase through it.

Run by tests/test_langgraph_dev.py inside a network namespace of its own
(``unshare --net``), so nothing the API server does can reach beyond this machine's
loopback. Usage: ``python _langgraph_dev_worker.py REPOSITORY WORK_DIRECTORY``; prints
one JSON line with what it saw and exits 0, or exits non-zero with the server's log.

``langgraph dev`` resolves the graph paths of langgraph.json against its working
directory, and the showcase writes under ``.demo/`` there, so the project's
langgraph.json and ``examples/`` are copied into WORK_DIRECTORY and served from it:
the clone stays clean.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPOSITORY = Path(sys.argv[1])
WORK = Path(sys.argv[2])
sys.path.insert(0, str(REPOSITORY))

from examples.showcase.server import ApiServer, ServerProfile  # noqa: E402

from _langgraph_dev_server import loopback_up, serve  # noqa: E402

ITEMS = 20
RUN_SECONDS = 45


async def main() -> dict[str, Any]:
    loopback_up()
    shutil.copytree(REPOSITORY / "examples", WORK / "examples")
    shutil.copy(REPOSITORY / "langgraph.json", WORK / "langgraph.json")
    profile = ServerProfile(latency_median=0.002, latency_p99=0.02, limit=200, seed=7)
    # Bounded, so a run that never ends fails here with the server's log.
    limit = aiohttp.ClientTimeout(total=RUN_SECONDS)
    async with (
        serve(WORK) as url,
        ApiServer(profile) as api,
        aiohttp.ClientSession(timeout=limit) as client,
    ):
        run = {
            "assistant_id": "showcase",
            "input": {"count": ITEMS, "report_dir": str(WORK / "report")},
            "context": {"api_url": api.url},
        }
        async with client.post(f"{url}/runs/wait", json=run) as response:
            status = response.status
            state = await response.json()
        api_requests = api.statistics().requests
    return {
        "status": status,
        "state_keys": sorted(state),
        "fetch": state.get("fetch"),
        "stored": state.get("stored"),
        "api_requests": api_requests,
        "report": sorted(path.name for path in (WORK / "report").glob("*")),
        "sqlite": (WORK / ".demo" / "showcase.sqlite").exists(),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
