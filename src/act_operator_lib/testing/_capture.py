"""Capture what `emit` and ``runtime.stream.send`` write when a node runs outside a graph."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from act_operator_lib import streaming

__all__ = ["CapturedStream", "capture_custom_stream"]


class CapturedStream:
    """The custom-stream items captured by `capture_custom_stream`, in order.

    Example::

        with capture_custom_stream() as stream:
            await Progress()({"items": [1, 2]})
        assert stream.items == [{"done": 0}, {"done": 1}]
    """

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Any] = []
        """Every captured item, oldest first."""

    def clear(self) -> None:
        """Forget what was captured so far."""
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __repr__(self) -> str:
        return f"CapturedStream({self.items!r})"


@contextlib.contextmanager
def capture_custom_stream() -> Iterator[CapturedStream]:
    """Collect the custom-stream writes of nodes awaited directly (outside a graph).

    Inside a graph LangGraph delivers the items itself (`run_node` collects them);
    this is for ``await node(state)`` in a unit test.
    """
    captured = CapturedStream()
    token = streaming.outside_graph_sink.set(captured.items.append)
    try:
        yield captured
    finally:
        streaming.outside_graph_sink.reset(token)
