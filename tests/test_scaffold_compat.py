"""A project made by Act Operator's ``act new`` passes its own tests on the library.

The project is the real scaffold (``act-operator`` is a dev dependency), with its
``casts/base_node.py`` and ``casts/base_graph.py`` replaced by re-exports of this
library's classes, which is all a migration changes in them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests._act_scaffold import new_act_project, run_in_project, run_project_tests

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
