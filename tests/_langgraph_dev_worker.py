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
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import aiohttp

REPOSITORY = Path(sys.argv[1])
WORK = Path(sys.argv[2])
sys.path.insert(0, str(REPOSITORY))

from examples.showcase.server import ApiServer, ServerProfile  # noqa: E402

ITEMS = 20
STARTUP_SECONDS = 45
RUN_SECONDS = 45


def loopback_up() -> None:
    """A new network namespace starts with ``lo`` down: bring it up (as ``ip link set lo up``)."""
    get_flags, set_flags, up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(control, get_flags, request))[1]
        fcntl.ioctl(control, set_flags, struct.pack("16sh", b"lo", flags | up))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_until_started(server: asyncio.subprocess.Process, log: list[str]) -> None:
    assert server.stdout is not None
    while True:
        line = (await server.stdout.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("langgraph dev exited before it started")
        log.append(line)
        # uvicorn says so once its socket listens (after the app's startup is logged).
        if "Uvicorn running on" in line:
            return


async def drain(server: asyncio.subprocess.Process, log: list[str]) -> None:
    assert server.stdout is not None
    async for raw in server.stdout:
        log.append(raw.decode(errors="replace"))


async def main() -> dict[str, Any]:
    loopback_up()
    shutil.copytree(REPOSITORY / "examples", WORK / "examples")
    shutil.copy(REPOSITORY / "langgraph.json", WORK / "langgraph.json")
    port = free_port()
    environment = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "PYTHONPATH": str(WORK),
    }
    environment.pop("DATABASE_URL", None)
    executable = Path(sys.executable).parent / "langgraph"
    log: list[str] = []
    server = await asyncio.create_subprocess_exec(
        str(executable),
        "dev",
        "--no-browser",
        "--no-reload",
        "--server-log-level",
        "info",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(WORK / "langgraph.json"),
        cwd=WORK,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    reader: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(wait_until_started(server, log), STARTUP_SECONDS)
        reader = asyncio.create_task(drain(server, log))
        profile = ServerProfile(latency_median=0.002, latency_p99=0.02, limit=200, seed=7)
        # Bounded, so a run that never ends fails here with the server's log.
        limit = aiohttp.ClientTimeout(total=RUN_SECONDS)
        async with ApiServer(profile) as api, aiohttp.ClientSession(timeout=limit) as client:
            run = {
                "assistant_id": "showcase",
                "input": {"count": ITEMS, "report_dir": str(WORK / "report")},
                "context": {"api_url": api.url},
            }
            async with client.post(f"http://127.0.0.1:{port}/runs/wait", json=run) as response:
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
    except BaseException:
        sys.stderr.write("".join(log))
        raise
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(server.wait(), 30)
            except TimeoutError:
                server.kill()
                await server.wait()
        if reader is not None:
            await reader


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
