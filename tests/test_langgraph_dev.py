"""langgraph.json, served by the real ``langgraph dev``: the showcase cast runs over HTTP.

The API server runs the graph on uvloop, with its own checkpointer and store, and with
blockbuster raising on blocking calls in the event loop: the library's nodes must hold
up there as they do under ``asyncio.run``. The server and the run live in a network
namespace of their own (``unshare --net``, root only), so nothing leaves loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("_langgraph_dev_worker.py")


def _missing() -> str | None:
    if not (Path(sys.executable).parent / "langgraph").exists():
        return "the langgraph CLI is not installed (pip install 'langgraph-cli[inmem]')"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "needs root and unshare(1) for a private network namespace"
    return None


@pytest.fixture
def serving_tools() -> None:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)


@pytest.mark.usefixtures("serving_tools")
async def test_langgraph_dev_serves_the_showcase_from_langgraph_json(tmp_path: Path) -> None:
    worker = await asyncio.create_subprocess_exec(
        "unshare",
        "--net",
        sys.executable,
        str(WORKER),
        str(REPOSITORY),
        str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await worker.communicate()
    assert worker.returncode == 0, errors.decode(errors="replace")[-6000:]
    seen = json.loads(output.decode().strip().splitlines()[-1])

    assert seen["status"] == 200
    assert seen["fetch"]["ok"] == seen["fetch"]["total"] == 20
    assert seen["fetch"]["failed"] == seen["fetch"]["rejected"] == 0
    assert seen["stored"]["rows"] == 20
    assert seen["api_requests"] >= 20
    assert seen["report"] == ["report.json", "report.md"]
    assert seen["sqlite"] is True
