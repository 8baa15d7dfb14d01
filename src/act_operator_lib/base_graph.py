"""Base class for a cast's graph: `BaseGraph`.

A drop-in for Act Operator's scaffolded ``casts/base_graph.py``: subclasses
implement `build` and return the compiled graph; calling the instance builds it::

    class HelloGraph(BaseGraph):
        def build(self):
            builder = StateGraph(State)
            builder.add_node("greet", Greet())
            builder.add_edge(START, "greet")
            return builder.compile()

    graph = HelloGraph()()
    graph.invoke({"name": "Ada"})

Compile options given to the call (``checkpointer``, ``interrupt_before``,
``interrupt_after``, ``debug``) go to ``build`` when it declares them; otherwise they
are applied to what it returns: an uncompiled ``StateGraph`` is compiled with them,
a compiled graph gets them as LangGraph's API server gives it its checkpointer::

    graph = HelloGraph()(checkpointer=InMemorySaver(), interrupt_before=["greet"])

Used as a context manager, it closes the pooled resources (see
`act_operator_lib.resources`) of every node in the graphs it built, on exit (outside
one, `aclose` reaches the graphs still referenced: LangGraph's API server calls the
instance for every run, and they must not pile up)::

    async with HelloGraph() as cast:
        graph = cast()
        await graph.ainvoke({"name": "Ada"})
    # sessions and pools of Greet & co. are closed here

``with HelloGraph() as cast:`` does the same for synchronous code.
"""

from __future__ import annotations

import inspect
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel

from act_operator_lib._errors import GraphDefinitionError
from act_operator_lib.base_node import AsyncBaseNode

__all__ = ["BaseGraph"]

# Each compile option and the attribute of a compiled graph (a public field of
# LangGraph's Pregel) that holds it.
_COMPILED_FIELDS = {
    "checkpointer": "checkpointer",
    "interrupt_before": "interrupt_before_nodes",
    "interrupt_after": "interrupt_after_nodes",
    "debug": "debug",
}


class BaseGraph(ABC):
    """Builds and compiles one LangGraph graph; ``name`` is the class name."""

    name: str

    def __init__(self) -> None:
        self.name = type(self).__name__
        # LangGraph's API server calls a graph factory registered in langgraph.json
        # (Act's scaffold registers the instance) with the parameters its signature
        # names, and refuses more than two. It sets the checkpointer and store itself,
        # so the factory it sees takes none; the compile options are for direct callers.
        self.__signature__ = inspect.Signature()
        self._built_graphs: weakref.WeakSet[Pregel[Any, Any, Any, Any]] = weakref.WeakSet()
        self._held_graphs: list[Pregel[Any, Any, Any, Any]] | None = None

    @abstractmethod
    def build(self) -> CompiledStateGraph[Any, Any, Any, Any] | StateGraph[Any, Any, Any, Any]:
        """Construct the graph and return it, compiled or not.

        It may declare any of the compile options (``checkpointer``,
        ``interrupt_before``, ``interrupt_after``, ``debug``) to receive them.
        """

    def __call__(
        self,
        checkpointer: BaseCheckpointSaver[Any] | None = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """Build the graph (see `build`); the compiled graph's name is this graph's name."""
        given: dict[str, Any] = {
            option: value
            for option, value in (
                ("checkpointer", checkpointer),
                ("interrupt_before", interrupt_before),
                ("interrupt_after", interrupt_after),
                ("debug", debug),
            )
            if value
        }
        accepted = _accepted_options(self.build, given)
        built = self.build(**{option: given[option] for option in accepted})
        rest = {option: value for option, value in given.items() if option not in accepted}
        graph = self._compiled(built, rest)
        if graph.name in (None, "LangGraph"):
            graph.name = self.name
        if type(graph) is CompiledStateGraph:
            # The same object as LangGraph built, with a sync `stream` (which `invoke`
            # uses) that names the async nodes up front. Set on the class, not the
            # instance: `graph.copy()` (as LangGraph's server does) keeps it.
            graph.__class__ = _CastGraph
        self._tracked_graphs().add(graph)
        held = self.__dict__.get("_held_graphs")
        if held is not None:
            # Inside `with`/`async with`: kept until the exit closes their resources,
            # even when the caller dropped the graph (`await cast().ainvoke(...)`).
            held.append(graph)
        return graph

    def _compiled(
        self, built: object, options: dict[str, Any]
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        owner = type(self).__name__
        if isinstance(built, StateGraph):
            return built.compile(**options)
        if not isinstance(built, CompiledStateGraph):
            raise GraphDefinitionError(
                f"{owner}.build() must return a StateGraph or a compiled graph "
                f"(builder.compile()), got {type(built).__name__}"
            )
        if not options:
            return built
        update: dict[str, Any] = {}
        for option, value in options.items():
            field = _COMPILED_FIELDS[option]
            current = getattr(built, field)
            if current and current != value:
                raise GraphDefinitionError(
                    f"{owner}()({option}=...) cannot be applied: {owner}.build() compiled "
                    f"the graph with its own {option}; declare {option} in build() and "
                    "pass it to builder.compile(), or drop one of the two"
                )
            update[field] = value
        return built.copy(update=update)

    def _tracked_graphs(self) -> weakref.WeakSet[Pregel[Any, Any, Any, Any]]:
        # A subclass may not call super().__init__() (or may set up state of its own).
        tracked = self.__dict__.get("_built_graphs")
        if tracked is None:
            tracked = self.__dict__["_built_graphs"] = weakref.WeakSet()
        return tracked

    async def aclose(self) -> None:
        """Close the pooled resources of every node in the graphs this object built.

        Idempotent; a node used again afterwards opens fresh resources.
        """
        from act_operator_lib.resources import aclose_resources

        errors: list[Exception] = []
        graphs = [*self._tracked_graphs(), *(self.__dict__.get("_held_graphs") or [])]
        for node in _nodes_of(graphs):
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
        self.__dict__["_held_graphs"] = []
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            self.__dict__["_held_graphs"] = None

    def __enter__(self) -> Self:
        self.__dict__["_held_graphs"] = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            self.__dict__["_held_graphs"] = None


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


class _CastGraph(CompiledStateGraph[Any, Any, Any, Any]):
    """A graph built by a `BaseGraph`: run synchronously, it names its async nodes."""

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        asynchronous = _async_nodes(self)
        if asynchronous:
            nodes = ", ".join(f"{name!r} ({kind})" for name, kind in asynchronous.items())
            first = next(iter(asynchronous.values()))
            raise TypeError(
                f"graph {self.name!r} has async nodes, {nodes}, which LangGraph runs only "
                "from its async API: use `await graph.ainvoke(...)` or "
                f"`async for chunk in graph.astream(...)`, or derive {first} from BaseNode "
                "with a plain `def execute` to run it with graph.invoke()"
            )
        return super().stream(*args, **kwargs)


def _async_nodes(graph: CompiledStateGraph[Any, Any, Any, Any]) -> dict[str, str]:
    """The graph's nodes that are `AsyncBaseNode` instances: name -> class name."""
    found = {}
    for name, spec in graph.builder.nodes.items():
        runnable = spec.runnable
        node = getattr(runnable, "afunc", runnable)
        if isinstance(node, AsyncBaseNode):
            found[name] = type(node).__name__
    return found


def _accepted_options(build: Any, given: dict[str, Any]) -> list[str]:
    """The given compile options ``build`` declares (all of them if it takes ``**kwargs``)."""
    parameters = inspect.signature(build).parameters.values()
    if any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters):
        return list(given)
    declared = {
        parameter.name
        for parameter in parameters
        if parameter.kind
        in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return [option for option in given if option in declared]
