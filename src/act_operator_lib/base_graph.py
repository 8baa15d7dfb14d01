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

Used as a context manager, it closes the pooled resources (see
`act_operator_lib.resources`) of every node in the graphs it built, on exit::

    async with HelloGraph() as cast:
        graph = cast()
        await graph.ainvoke({"name": "Ada"})
    # sessions and pools of Greet & co. are closed here

``with HelloGraph() as cast:`` does the same for synchronous code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Self

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
        self.__dict__.setdefault("_built_graphs", []).append(graph)
        return graph

    async def aclose(self) -> None:
        """Close the pooled resources of every node in the graphs this object built.

        Idempotent; a node used again afterwards opens fresh resources.
        """
        from act_operator_lib.resources._core import aclose_resources

        errors: list[Exception] = []
        for node in _nodes_of(self.__dict__.get("_built_graphs", [])):
            try:
                await aclose_resources(node)
            except Exception as error:  # close the others, then report
                errors.append(error)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """`aclose` for synchronous code (runs it with `bridge.run_async`)."""
        from act_operator_lib.bridge import run_async

        run_async(self.aclose())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _nodes_of(graphs: list[Any]) -> list[object]:
    """The node objects (and subgraphs' nodes) of ``graphs``, each once."""
    found: dict[int, object] = {}
    pending = list(graphs)
    seen_graphs: set[int] = set()
    while pending:
        graph = pending.pop()
        if id(graph) in seen_graphs:
            continue
        seen_graphs.add(id(graph))
        builder = getattr(graph, "builder", None)
        for spec in getattr(builder, "nodes", {}).values():
            runnable = getattr(spec, "runnable", None)
            candidates = [
                runnable,
                getattr(runnable, "func", None),
                getattr(runnable, "afunc", None),
            ]
            for candidate in candidates:
                while candidate is not None:
                    if getattr(candidate, "builder", None) is not None:
                        pending.append(candidate)
                    found.setdefault(id(candidate), candidate)
                    owner = getattr(candidate, "__self__", None)
                    if owner is not None:
                        found.setdefault(id(owner), owner)
                    candidate = getattr(candidate, "__wrapped__", None)
    return list(found.values())
