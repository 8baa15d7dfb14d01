"""Base class for a cast's graph: `BaseGraph`.

A drop-in for Act Operator's scaffolded ``casts/base_graph.py``: subclasses
implement `build` and return the compiled graph; calling the instance builds it::

    class HelloGraph(BaseGraph):
        def build(self, checkpointer=None, interrupt_before=None,
                  interrupt_after=None, debug=False):
            builder = StateGraph(State)
            builder.add_node("greet", Greet())
            builder.add_edge(START, "greet")
            return builder.compile(checkpointer=checkpointer)

    graph = HelloGraph()()
    graph.invoke({"name": "Ada"})
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph

__all__ = ["BaseGraph"]


class BaseGraph(ABC):
    """Builds and compiles one LangGraph graph; ``name`` is the class name."""

    name: str

    def __init__(self) -> None:
        self.name = type(self).__name__

    @abstractmethod
    def build(
        self,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Construct and compile the graph with the given compile options."""

    def __call__(
        self,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Build the graph (see `build`); the compiled graph's name is this graph's name."""
        graph = self.build(
            checkpointer=checkpointer,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            debug=debug,
        )
        if isinstance(graph, CompiledStateGraph) and graph.name in (None, "LangGraph"):
            graph.name = self.name
        return graph
