"""Clear hints for two first-contact mistakes, on real graphs.

An async node run by ``graph.invoke`` (LangGraph can only ``ainvoke`` it), and a
method of the pooled value called on the resource itself (``self.http.get(...)``).
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseGraph, BaseNode, HTTPResource


class State(TypedDict, total=False):
    steps: list[str]


class Prepare(BaseNode):
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls = 0

    def execute(self, state):
        self.calls += 1
        return {"steps": [*state.get("steps", []), "prepare"]}


class Fetch(AsyncBaseNode):
    async def execute(self, state):
        asyncio.get_running_loop()
        return {"steps": [*state["steps"], "fetch"]}


class MixedGraph(BaseGraph):
    def __init__(self) -> None:
        super().__init__()
        self.prepare = Prepare()

    def build(self):
        builder = StateGraph(State)
        builder.add_node("prepare", self.prepare)
        builder.add_node("fetch", Fetch())
        builder.add_edge(START, "prepare")
        builder.add_edge("prepare", "fetch")
        builder.add_edge("fetch", END)
        return builder.compile()


def test_invoke_on_a_graph_with_an_async_node_names_it_and_the_fix():
    graph = MixedGraph()()

    with pytest.raises(TypeError) as raised:
        graph.invoke({})

    message = str(raised.value)
    assert "graph 'MixedGraph' has async nodes, 'fetch' (Fetch)" in message
    assert "await graph.ainvoke(...)" in message
    assert "derive Fetch from BaseNode" in message


def test_invoke_on_a_graph_with_an_async_node_runs_no_node():
    cast = MixedGraph()

    with pytest.raises(TypeError):
        cast().invoke({})

    assert cast.prepare.calls == 0


async def test_the_same_graph_runs_its_async_node_on_the_event_loop_with_ainvoke():
    graph = MixedGraph()()

    assert await graph.ainvoke({}) == {"steps": ["prepare", "fetch"]}
    assert [chunk async for chunk in graph.astream({}, stream_mode="updates")] == [
        {"prepare": {"steps": ["prepare"]}},
        {"fetch": {"steps": ["prepare", "fetch"]}},
    ]


def test_a_graph_of_sync_nodes_still_runs_with_invoke():
    class SyncGraph(BaseGraph):
        def build(self):
            builder = StateGraph(State)
            builder.add_node("prepare", Prepare())
            builder.add_edge(START, "prepare")
            return builder.compile()

    assert SyncGraph()().invoke({}) == {"steps": ["prepare"]}


class CallsTheResource(AsyncBaseNode):
    http = HTTPResource()

    async def execute(self, state):
        await self.http.get("http://127.0.0.1:9/")
        return {}


async def test_a_method_called_on_a_pooled_resource_hints_at_getting_its_value():
    builder = StateGraph(State)
    builder.add_node("call", CallsTheResource())
    builder.add_edge(START, "call")
    graph = builder.compile()

    with pytest.raises(AttributeError) as raised:
        await graph.ainvoke({})

    message = str(raised.value)
    assert "resource 'http' of 'CallsTheResource' has no attribute 'get'" in message
    assert "await self.http()" in message
    assert "async with self.http as value:" in message
    assert raised.value.name == "get"


def test_a_private_name_missing_on_a_pooled_resource_gets_the_plain_error():
    node = CallsTheResource()

    with pytest.raises(AttributeError, match=r"^'BoundResource' object has no attribute '_x'$"):
        node.http._x  # noqa: B018
