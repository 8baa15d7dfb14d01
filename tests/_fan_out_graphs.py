"""A one-node graph with a checkpointer, for the fan-out tests (items in, results out)."""

from __future__ import annotations

import uuid
from typing import Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore

from act_operator_lib import AsyncBaseNode


class State(TypedDict, total=False):
    items: list[int]
    results: list[Any]


def graph_of(node: AsyncBaseNode, *, store: InMemoryStore | None = None) -> Any:
    """``node`` as the only node of a graph that checkpoints (so it can pause and resume)."""
    builder = StateGraph(State)
    builder.add_node("work", node)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile(checkpointer=InMemorySaver(), store=store)


def config() -> Any:
    """A run config on a thread of its own."""
    return {"configurable": {"thread_id": f"fan-out-{uuid.uuid4().hex}"}}
