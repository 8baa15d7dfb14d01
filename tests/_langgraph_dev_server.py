"""The real ``langgraph dev`` serving a langgraph.json, for workers in a network namespace.

`serve` starts the server on a free loopback port, yields its URL once uvicorn listens,
and stops it afterwards; on a failure inside, the server's log goes to stderr. The
workers that use it run under ``unshare --net`` and call `loopback_up` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

STARTUP_SECONDS = 45


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


async def _wait_until_started(server: asyncio.subprocess.Process, log: list[str]) -> None:
    assert server.stdout is not None
    while True:
        line = (await server.stdout.readline()).decode(errors="replace")
        if not line:
            raise RuntimeError("langgraph dev exited before it started")
        log.append(line)
        # uvicorn says so once its socket listens (after the app's startup is logged).
        if "Uvicorn running on" in line:
            return


async def _drain(server: asyncio.subprocess.Process, log: list[str]) -> None:
    assert server.stdout is not None
    async for raw in server.stdout:
        log.append(raw.decode(errors="replace"))


@contextlib.asynccontextmanager
async def serve(directory: Path) -> AsyncIterator[str]:
    """``langgraph dev`` on ``directory``'s langgraph.json; yields the server's URL."""
    port = free_port()
    environment = {
        **os.environ,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGGRAPH_NO_VERSION_CHECK": "true",
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "PYTHONPATH": str(directory),
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
        str(directory / "langgraph.json"),
        cwd=directory,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    reader: asyncio.Task[None] | None = None
    try:
        await asyncio.wait_for(_wait_until_started(server, log), STARTUP_SECONDS)
        reader = asyncio.create_task(_drain(server, log))
        yield f"http://127.0.0.1:{port}"
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
