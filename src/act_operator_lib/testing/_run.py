"""Run one node inside a real one-node LangGraph graph and report what it did."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Mapping
from typing import Annotated, Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.types import StreamMode

__all__ = ["NodeRun", "run_node", "run_node_sync"]

_STREAM_MODES: list[StreamMode] = ["updates", "custom", "values"]


@dataclasses.dataclass(frozen=True, slots=True)
class NodeRun:
    """What one run of a node did, returned by `run_node`.

    Example::

        run = await run_node(Greet(), {"name": "Ada"})
        assert run.update == {"greeting": "hello Ada"}
        assert run.state == {"name": "Ada", "greeting": "hello Ada"}
    """

    node: str
    """The name the node ran under in the graph."""
    update: Any
    """What the node returned, as LangGraph recorded it (``None`` for no update)."""
    state: Any
    """The graph state after LangGraph merged the update (the last ``values`` item)."""
    custom: tuple[Any, ...]
    """Every item the node wrote to the ``custom`` stream, in order."""
    statistics_before: Any = None
    """``node.statistics()`` before the run, or None if the node has no statistics."""
    statistics: Any = None
    """``node.statistics()`` after the run, or None if the node has no statistics."""

    def statistics_delta(self) -> dict[str, float]:
        """How much each numeric statistic changed during this run (unchanged ones left out).

        Example::

            assert run.statistics_delta() == {"calls": 1, "successes": 1}
        """
        before, after = self.statistics_before, self.statistics
        if before is None or after is None or not dataclasses.is_dataclass(after):
            return {}
        delta: dict[str, float] = {}
        for field in dataclasses.fields(after):
            old, new = getattr(before, field.name, None), getattr(after, field.name)
            numeric = (int, float)
            if (
                isinstance(old, numeric)
                and isinstance(new, numeric)
                and not isinstance(new, bool)
                and new != old
            ):
                delta[field.name] = new - old
        return delta


async def run_node(
    node: Any,
    state: Any,
    *,
    config: RunnableConfig | None = None,
    context: Any = None,
    store: BaseStore | None = None,
    state_schema: type[Any] | None = None,
    node_options: Mapping[str, Any] | None = None,
) -> NodeRun:
    """Run ``node`` once in a real one-node `StateGraph` and return a `NodeRun`.

    LangGraph builds the node's ``config`` and ``runtime`` (context, store, stream
    writer) and applies its policies, exactly as in production; nothing is mocked.

    Example::

        run = await run_node(Summarise(model=fake_chat_model(["short"])), {"text": "..."})
        assert run.update == {"summary": "short"}

    Args:
        node: A node instance (`AsyncBaseNode`, `BaseNode`) or any LangGraph node callable.
        state: The input state: a dict, or an instance of a dataclass / Pydantic model.
        config: The run's ``RunnableConfig`` (e.g. ``{"configurable": {"thread_id": "t"}}``).
        context: The run's ``runtime.context``.
        store: A LangGraph store, given to the graph as ``store=``.
        state_schema: The graph's state schema. Default: the class of ``state`` when it
            is a dataclass or Pydantic model; for a dict, a permissive schema that
            merges any returned keys into the state. Pass a TypedDict here for a
            dict state whose node returns ``Command(update=...)``.
        node_options: Extra ``add_node`` arguments for LangGraph-level policies, e.g.
            ``{"retry_policy": RetryPolicy(max_attempts=3)}``. Policies the node
            applies itself (its ``timeout=``, limits) need nothing here.
    """
    return await _streamed(
        _Recording(node, state, state_schema, store, node_options), config, context
    )


def run_node_sync(
    node: Any,
    state: Any,
    *,
    config: RunnableConfig | None = None,
    context: Any = None,
    store: BaseStore | None = None,
    state_schema: type[Any] | None = None,
    node_options: Mapping[str, Any] | None = None,
) -> NodeRun:
    """`run_node` for tests without an event loop; takes the same arguments.

    A sync node runs through ``graph.stream``; an async node through ``graph.astream``
    under ``asyncio.run``, so call this only where no loop is running.

    Example::

        run = run_node_sync(Uppercase(), {"text": "hi"})
        assert run.state == {"text": "HI"}
    """
    asynchronous = _is_async(node)
    if asynchronous and _loop_running():
        raise RuntimeError(
            f"run_node_sync({_node_name(node)!r}) was called inside a running event loop; "
            "use `await run_node(...)` in async tests."
        )
    recording = _Recording(node, state, state_schema, store, node_options)
    if asynchronous:
        return asyncio.run(_streamed(recording, config, context))
    stream = recording.graph.stream(
        recording.input_state, config, context=context, stream_mode=_STREAM_MODES
    )
    for mode, item in stream:
        recording.add(mode, item)
    return recording.result()


async def _streamed(recording: _Recording, config: RunnableConfig | None, context: Any) -> NodeRun:
    """Run the recording's graph through ``astream`` and return what it did."""
    stream = recording.graph.astream(
        recording.input_state, config, context=context, stream_mode=_STREAM_MODES
    )
    async for mode, item in stream:
        recording.add(mode, item)
    return recording.result()


class _Recording:
    """A node in its own one-node graph, and what the graph's stream has said so far."""

    __slots__ = ("before", "custom", "graph", "input_state", "merged", "name", "node", "update")

    def __init__(
        self,
        node: Any,
        state: Any,
        state_schema: type[Any] | None,
        store: BaseStore | None,
        node_options: Mapping[str, Any] | None,
    ) -> None:
        if not callable(node):
            raise TypeError(
                "run_node(node=...) must be a node instance (e.g. MyNode(), not MyNode's "
                f"result) or a LangGraph node function, got {type(node).__name__}"
            )
        schema = state_schema if state_schema is not None else _infer_schema(state)
        name = _node_name(node)
        builder: StateGraph[Any, Any, Any, Any] = StateGraph(schema)
        builder.add_node(name, node, **(node_options or {}))
        builder.add_edge(START, name)
        builder.add_edge(name, END)
        self.graph = builder.compile(store=store, name=f"run_node({name})")
        self.name = name
        self.input_state = state
        self.node = node
        self.before = _statistics(node)
        self.update: Any = None
        self.merged: Any = None
        self.custom: list[Any] = []

    def add(self, mode: str, item: Any) -> None:
        """Take one ``(mode, item)`` of the graph's stream."""
        if mode == "custom":
            self.custom.append(item)
        elif mode == "values":
            self.merged = item
        elif mode == "updates" and isinstance(item, Mapping) and self.name in item:
            self.update = item[self.name]

    def result(self) -> NodeRun:
        return NodeRun(
            self.name,
            self.update,
            self.merged,
            tuple(self.custom),
            self.before,
            _statistics(self.node),
        )


def _infer_schema(state: Any) -> Any:
    if isinstance(state, type):
        raise TypeError(
            f"run_node(state=...) got the class {state.__qualname__}; pass an instance "
            "as the state, and the class as state_schema= if it can't be inferred."
        )
    if dataclasses.is_dataclass(state) or _is_pydantic_model(state):
        return type(state)
    if isinstance(state, Mapping):
        return _PermissiveState
    raise TypeError(
        f"run_node(state=...) cannot infer a state schema from {type(state).__name__}; "
        "pass a dict, a dataclass or Pydantic instance, or state_schema=."
    )


def _merge(current: Any, update: Any) -> dict[str, Any]:
    """The permissive schema's reducer: each returned key replaces that key."""
    if update is None:
        return dict(current or {})
    return {**(current or {}), **update}


_PermissiveState: Any = Annotated[dict[str, Any], _merge]


def _is_pydantic_model(value: Any) -> bool:
    return any(
        klass.__name__ == "BaseModel" and klass.__module__.startswith("pydantic")
        for klass in type(value).__mro__
    )


def _node_name(node: Any) -> str:
    name = getattr(node, "name", None) or getattr(node, "__name__", None)
    return name if isinstance(name, str) and name else type(node).__name__


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _is_async(node: Any) -> bool:
    return inspect.iscoroutinefunction(node) or (
        callable(node) and inspect.iscoroutinefunction(type(node).__call__)
    )


def _statistics(node: Any) -> Any:
    statistics = getattr(node, "statistics", None)
    return statistics() if callable(statistics) else None
