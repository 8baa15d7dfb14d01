"""Guide: Advanced Patterns / Timeout Handling.

The deadline is a node policy, not a ``wait_for`` inside ``execute``: ``timeout = 0.1``
cancels the attempt (its cleanup runs), then raises `NodeTimeoutError`, a builtin
``TimeoutError`` naming the node. Per-item deadlines inside a node come from
``map_concurrent(timeout=...)``. ``python -m examples.guide.timeouts``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, ItemTimeoutError, NodeTimeoutError, map_concurrent


class State(TypedDict, total=False):
    delay: float
    delays: list[float]
    result: str
    results: list[str | None]


class SlowOperation(AsyncBaseNode):
    timeout = 0.1  # seconds per attempt

    async def execute(self, state: State) -> dict[str, Any]:
        try:
            await asyncio.sleep(state["delay"])  # stands in for a slow API call
        except asyncio.CancelledError:
            print("slow operation cancelled: cleaning up")
            raise
        return {"result": "done"}


class ManyOperations(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        outcomes = await map_concurrent(
            self.operation, state["delays"], limit=5, timeout=0.1, return_exceptions=True
        )
        results = [
            None if isinstance(outcome, ItemTimeoutError) else outcome for outcome in outcomes
        ]
        return {"results": results}

    async def operation(self, delay: float) -> str:
        await asyncio.sleep(delay)
        return f"took {delay}s"


def build_graph(node: AsyncBaseNode) -> Any:
    builder = StateGraph(State)
    builder.add_node("work", node)
    builder.add_edge(START, "work")
    return builder.compile()


async def main() -> dict[str, Any]:
    graph = build_graph(SlowOperation())
    fast = await graph.ainvoke({"delay": 0.01})
    print("fast call:", fast["result"])
    try:
        await graph.ainvoke({"delay": 10})
    except NodeTimeoutError as error:  # also `except TimeoutError`
        timed_out = f"node {error.node!r} timed out after {error.timeout}s"
        print(timed_out)
    many = await build_graph(ManyOperations()).ainvoke({"delays": [0.01, 10, 0.02]})
    print("per-item timeouts:", many["results"])
    return {"fast": fast["result"], "timed_out": timed_out, "results": many["results"]}


if __name__ == "__main__":
    asyncio.run(main())
