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

`relay_tokens` streams an LLM's answer to the custom stream token by token and
returns the whole `AIMessage`; `capture_custom_stream` collects what `emit` sends
when a node is called outside a graph (in a unit test).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from operator import attrgetter
from typing import Any, Generic, cast

from langchain_core.messages import AIMessage, AIMessageChunk, message_chunk_to_message
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime, get_runtime
from langgraph.typing import ContextT

__all__ = [
    "CustomStream",
    "NodeRuntime",
    "capture_custom_stream",
    "emit",
    "heartbeat",
    "relay_tokens",
    "to_node_runtime",
]

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
        if not callable(writer):
            raise TypeError(
                "CustomStream(writer=...) must be a function taking one chunk, e.g. "
                f"langgraph.config.get_stream_writer(), got {type(writer).__name__}"
            )
        self._writer = writer

    def send(self, data: Any) -> None:
        """Write ``data`` to LangGraph's ``custom`` stream mode."""
        self._writer(data)

    __call__ = send

    def __repr__(self) -> str:
        return f"CustomStream({self._writer!r})"


class NodeRuntime(Runtime[ContextT], Generic[ContextT]):
    """LangGraph's `Runtime`, plus ``stream`` for the guide's ``runtime.stream.send``.

    It is a `Runtime` (``isinstance`` holds; ``override``, ``merge``, equality work)
    and every field reads through to the runtime LangGraph gave the node, so code
    written against LangGraph's API works unchanged.
    """

    # A view over LangGraph's runtime rather than a copy of it: wrapping costs one
    # slot write per call instead of one per field (see docs/design.md).
    __slots__ = ("_runtime",)
    _runtime: Runtime[Any]

    def __init__(self, **fields: Any) -> None:
        _set(self, "_runtime", Runtime(**fields))

    @property
    def stream(self) -> CustomStream:
        """The custom stream of this node run; ``stream.send(data)`` emits ``data``."""
        return CustomStream(self.stream_writer)

    def __reduce__(self) -> tuple[Callable[..., NodeRuntime[Any]], tuple[Runtime[Any]]]:
        return (to_node_runtime, (self._runtime,))


_set = object.__setattr__
_RUNTIME_FIELDS = tuple(field.name for field in dataclasses.fields(Runtime))
for _field in _RUNTIME_FIELDS:
    setattr(NodeRuntime, _field, property(attrgetter(f"_runtime.{_field}")))
del _field
_DEFAULT_RUNTIME: NodeRuntime[Any] = NodeRuntime()


def to_node_runtime(runtime: Runtime[Any] | None) -> NodeRuntime[Any]:
    """Return ``runtime`` as a `NodeRuntime` that reads every field from it.

    ``None`` (a node awaited directly, outside a graph) gives a runtime whose
    stream writes go to `emit`'s outside-graph sink.
    """
    if runtime is None:
        return _outside_graph_runtime()
    if type(runtime) is NodeRuntime:
        return runtime
    node_runtime: NodeRuntime[Any] = object.__new__(NodeRuntime)
    _set(node_runtime, "_runtime", runtime)
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


@contextmanager
def capture_custom_stream() -> Iterator[list[Any]]:
    """Collect what `emit` and ``runtime.stream.send`` write outside a graph run.

    For unit tests that call a node directly: inside the block, custom-stream data
    is appended to the yielded list instead of being dropped. Inside a graph run
    the data still goes to LangGraph's stream. Blocks nest; the innermost wins.

    Example::

        with capture_custom_stream() as sent:
            await Progress()({"items": ["a", "b"]})
        assert sent == [{"done": 0}, {"done": 1}]
    """
    sent: list[Any] = []
    token = outside_graph_sink.set(sent.append)
    try:
        yield sent
    finally:
        outside_graph_sink.reset(token)


async def relay_tokens(
    llm: Runnable[Any, Any],
    messages: Any,
    *,
    config: RunnableConfig | None = None,
) -> AIMessage:
    """Stream ``llm``'s answer to the custom stream and return it as one `AIMessage`.

    Each chunk's text is sent with `emit` as it arrives (chunks without text, such
    as tool-call fragments, are not sent). The chunks are merged with
    ``AIMessageChunk.__add__``, so tool calls, usage metadata and response metadata
    survive, unlike joining ``chunk.content`` strings. ``config`` is passed to
    ``llm.astream``; inside a node it can be left out, the run's config travels in
    context variables, so ``stream_mode="messages"`` sees the tokens as well.

    Example::

        class Answer(AsyncBaseNode):
            async def execute(self, state):
                reply = await relay_tokens(self.llm, state["messages"])
                return {"messages": [reply]}

    Raises:
        TypeError: ``llm`` streamed something other than `AIMessageChunk` (a chain
            ending in an output parser, say); relay the chat model itself.
    """
    if not callable(getattr(llm, "astream", None)):
        raise TypeError(
            "relay_tokens(llm=...) must be a LangChain chat model (a Runnable with "
            f"astream()), e.g. ChatOpenAI(...), got {type(llm).__name__}"
        )
    merged: AIMessageChunk | None = None
    async for chunk in llm.astream(messages, config=config):
        if not isinstance(chunk, AIMessageChunk):
            raise TypeError(
                f"relay_tokens() needs a chat model streaming AIMessageChunk, got a "
                f"{type(chunk).__name__} from {type(llm).__name__}; pass the chat model "
                "itself (or model.bind_tools(...)), not a chain ending in a parser."
            )
        text = chunk.text
        if text:
            emit(text)
        merged = chunk if merged is None else merged + chunk
    if merged is None:
        return AIMessage(content="")
    # An AIMessageChunk always converts to an AIMessage.
    return cast("AIMessage", message_chunk_to_message(merged))
