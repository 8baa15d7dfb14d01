"""A project made by Act Operator's ``act new`` passes its own tests on the library.

The project is the real scaffold (``act-operator`` is a dev dependency), with its
``casts/base_node.py`` and ``casts/base_graph.py`` replaced by re-exports of this
library's classes, which is all a migration changes in them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from tests._act_scaffold import new_act_project, run_in_project, run_project_tests

WORKER = Path(__file__).with_name("_scaffold_dev_worker.py")
BASE_NODE = """from act_operator_lib.base_node import AsyncBaseNode, BaseNode

__all__ = ["AsyncBaseNode", "BaseNode"]
"""
BASE_GRAPH = """from act_operator_lib.base_graph import BaseGraph

__all__ = ["BaseGraph"]
"""


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    """A fresh ``act new`` project whose base classes are the library's."""
    project = new_act_project(tmp_path)
    (project / "casts" / "base_node.py").write_text(BASE_NODE)
    (project / "casts" / "base_graph.py").write_text(BASE_GRAPH)
    return project


def test_the_scaffold_passes_its_own_tests_on_the_library(scaffold: Path) -> None:
    run = run_project_tests(scaffold)

    assert run.returncode == 0, run.output
    assert run.passed == 3, run.output


def test_the_scaffold_nodes_and_graph_are_the_library_classes(scaffold: Path) -> None:
    seen = run_in_project(
        scaffold,
        "import act_operator_lib as lib\n"
        "from casts.main_cast.graph import main_cast_graph\n"
        "from casts.main_cast.modules.nodes import AsyncSampleNode, SampleNode\n"
        "print(isinstance(main_cast_graph, lib.BaseGraph),"
        " isinstance(SampleNode(), lib.BaseNode),"
        " isinstance(AsyncSampleNode(), lib.AsyncBaseNode))\n",
    )

    assert seen.split() == ["True", "True", "True"]


def test_the_scaffold_graph_takes_a_checkpointer_its_build_does_not_declare(
    scaffold: Path,
) -> None:
    seen = run_in_project(
        scaffold,
        "from langgraph.checkpoint.memory import InMemorySaver\n"
        "from casts.main_cast.graph import main_cast_graph\n"
        "graph = main_cast_graph(checkpointer=InMemorySaver(), interrupt_before=['SampleNode'])\n"
        "config = {'configurable': {'thread_id': 't'}}\n"
        "graph.invoke({'query': 'hi'}, config)\n"
        "print(graph.name, *graph.get_state(config).next)\n",
    )

    assert seen.split() == ["MainCastGraph", "SampleNode"]


def _serving_tools_missing() -> str | None:
    if not (Path(sys.executable).parent / "langgraph").exists():
        return "the langgraph CLI is not installed (pip install 'langgraph-cli[inmem]')"
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return "needs root and unshare(1) for a private network namespace"
    return None


async def test_langgraph_dev_serves_the_scaffold_from_its_langgraph_json(scaffold: Path) -> None:
    reason = _serving_tools_missing()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    # As the scaffold's README has the user do (cp .env.example .env), without its keys.
    (scaffold / ".env").write_text("")
    worker = await asyncio.create_subprocess_exec(
        "unshare",
        "--net",
        sys.executable,
        str(WORKER),
        str(scaffold),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output, errors = await worker.communicate()
    assert worker.returncode == 0, errors.decode(errors="replace")[-6000:]
    seen = json.loads(output.decode().strip().splitlines()[-1])

    assert seen["stateless"] == {"status": 200, "body": {"result": "Welcome to the Act!"}}
    assert seen["threaded"] == seen["stateless"]
    assert seen["result"] == "Welcome to the Act!"
    assert seen["messages"] == ["Welcome to the Act! by Sync Node"]
