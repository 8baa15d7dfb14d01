"""Code written for Act Operator's scaffolded casts runs unchanged on the library."""

from __future__ import annotations

from typing import TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from act_operator_lib.base_graph import BaseGraph
from act_operator_lib.base_node import AsyncBaseNode, BaseNode


class InputState(TypedDict):
    query: str


class OutputState(TypedDict):
    message: str


class State(InputState, OutputState):
    pass


class SampleNode(BaseNode):
    """As in a scaffolded ``modules/nodes.py``."""

    def execute(self, state):
        return {"message": "Welcome to the Act! by Sync Node"}


class AsyncSampleNode(AsyncBaseNode):
    async def execute(self, state):
        return {"message": "Welcome to the Act! by Async Node"}


class SampleGraph(BaseGraph):
    """As in a scaffolded ``graph.py``: schemas set in __init__, build() compiles."""

    def __init__(self, node_class=SampleNode) -> None:
        super().__init__()
        self.input = InputState
        self.output = OutputState
        self.state = State
        self.node_class = node_class

    def build(self, checkpointer=None, interrupt_before=None, interrupt_after=None, debug=False):
        builder = StateGraph(self.state, input_schema=self.input, output_schema=self.output)
        builder.add_node("SampleNode", self.node_class())
        builder.add_edge(START, "SampleNode")
        builder.add_edge("SampleNode", END)
        graph = builder.compile(
            checkpointer=checkpointer,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            debug=debug,
        )
        graph.name = self.name
        return graph


def test_scaffold_sync_graph_invokes():
    graph = SampleGraph()()
    assert graph.invoke({"query": "hi"}) == {"message": "Welcome to the Act! by Sync Node"}
    assert graph.name == "SampleGraph"


async def test_scaffold_async_node_graph_ainvokes():
    graph = SampleGraph(AsyncSampleNode)()
    result = await graph.ainvoke({"query": "hi"})
    assert result == {"message": "Welcome to the Act! by Async Node"}


async def test_scaffold_graph_streams_updates():
    graph = SampleGraph(AsyncSampleNode)()
    updates = [chunk async for chunk in graph.astream({"query": "hi"}, stream_mode="updates")]
    assert updates == [{"SampleNode": {"message": "Welcome to the Act! by Async Node"}}]


def test_base_graph_passes_compile_options_to_build():
    graph = SampleGraph()(checkpointer=InMemorySaver(), interrupt_before=["SampleNode"])
    config = {"configurable": {"thread_id": "t"}}
    graph.invoke({"query": "hi"}, config)
    assert graph.get_state(config).next == ("SampleNode",)


def test_base_graph_names_an_unnamed_compiled_graph():
    class Unnamed(BaseGraph):
        def build(
            self, checkpointer=None, interrupt_before=None, interrupt_after=None, debug=False
        ):
            builder = StateGraph(State)
            builder.add_node("n", SampleNode())
            builder.add_edge(START, "n")
            return builder.compile()

    assert Unnamed()().name == "Unnamed"


def test_base_graph_without_build_cannot_be_instantiated():
    class NoBuild(BaseGraph):
        pass

    with pytest.raises(TypeError, match="build"):
        NoBuild()


def test_node_name_in_graph_defaults_to_class_name():
    builder = StateGraph(State)
    builder.add_node(SampleNode())
    assert "SampleNode" in builder.nodes
