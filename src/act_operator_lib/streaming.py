"""Sending data from inside a node to LangGraph's ``custom`` stream.

A node's ``runtime`` is a `NodeRuntime`: LangGraph's `Runtime` with every field kept
(context, store, stream_writer, heartbeat, ...) plus ``stream``, so the guide's
``runtime.stream.send(chunk)`` works. `emit` does the same from anywhere inside a
node, including tasks the node starts::

    class Progress(AsyncBaseNode):
        async def execute(self, state, runtime):
            for i, item in enumerate(state["items"]):
                runtime.stream.send({"done": i})   # or: self.emit({"done": i})
            return {}

    async for chunk in graph.astream(inputs, stream_mode="custom"):
        print(chunk)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Generic

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime, get_runtime
from langgraph.typing import ContextT

__all__ = ["CustomStream", "NodeRuntime", "emit", "heartbeat", "to_node_runtime"]

Sink = Callable[[Any], None]

# Where `emit` sends data when no graph is running (the testing kit installs one).
outside_graph_sink: ContextVar[Sink | None] = ContextVar(
    "act_operator_lib_outside_graph_sink", default=None
)


class CustomStream:
    """The ``runtime.stream`` of a node: ``send(data)`` writes to the custom stream.

    Example::

        runtime.stream.send({"token": "Hel"})
    """

    __slots__ = ("_writer",)

    def __init__(self, writer: Callable[[Any], None]) -> None:
        self._writer = writer

    def send(self, data: Any) -> None:
        """Write ``data`` to LangGraph's ``custom`` stream mode."""
        self._writer(data)

    __call__ = send

    def __repr__(self) -> str:
        return f"CustomStream({self._writer!r})"


class NodeRuntime(Runtime[ContextT], Generic[ContextT]):
    """LangGraph's `Runtime`, plus ``stream`` for the guide's ``runtime.stream.send``.

    It is a `Runtime` (``isinstance`` holds, every field is the one LangGraph gave
    the node), so code written against LangGraph's API works unchanged.
    """

    __slots__ = ()

    @property
    def stream(self) -> CustomStream:
        """The custom stream of this node run; ``stream.send(data)`` emits ``data``."""
        return CustomStream(self.stream_writer)


_RUNTIME_FIELDS = tuple(field.name for field in dataclasses.fields(Runtime))
_DEFAULT_RUNTIME: NodeRuntime[Any] = NodeRuntime()
_set = object.__setattr__


def to_node_runtime(runtime: Runtime[Any] | None) -> NodeRuntime[Any]:
    """Return ``runtime`` as a `NodeRuntime`, sharing every field with it.

    ``None`` (a node awaited directly, outside a graph) gives a runtime whose
    stream writes go to `emit`'s outside-graph sink.
    """
    if runtime is None:
        return _outside_graph_runtime()
    if type(runtime) is NodeRuntime:
        return runtime
    # Copy slot by slot: several times cheaper than dataclasses.replace, and this
    # runs on every call of a node whose execute() takes `runtime`.
    node_runtime: NodeRuntime[Any] = object.__new__(NodeRuntime)
    for name in _RUNTIME_FIELDS:
        _set(node_runtime, name, getattr(runtime, name))
    return node_runtime


def _outside_graph_runtime() -> NodeRuntime[Any]:
    if outside_graph_sink.get() is None:
        return _DEFAULT_RUNTIME
    return NodeRuntime(stream_writer=_write_outside_graph)


def _write_outside_graph(data: Any) -> None:
    sink = outside_graph_sink.get()
    if sink is not None:
        sink(data)


def emit(data: Any) -> None:
    """Write ``data`` to the custom stream of the node running in this context.

    Works in sync and async nodes and in tasks they start (the stream writer
    travels in context variables). Outside a graph run, ``data`` goes to the
    testing kit's capture when one is active, and is dropped otherwise.

    Example::

        emit({"done": 3, "total": 10})
    """
    try:
        writer = get_stream_writer()
    except RuntimeError:
        _write_outside_graph(data)
        return
    writer(data)


def heartbeat() -> None:
    """Record progress for the running node's idle timeout (LangGraph's ``TimeoutPolicy``).

    A no-op outside a graph run, or when the node has no idle timeout.
    """
    try:
        runtime = get_runtime()
    except RuntimeError:
        return
    runtime.heartbeat()
