"""Guide: Performance Optimization / Batch operations (and #3, concurrency levels).

Slicing items into batches of 10 and gathering each batch waits for the slowest item
of every batch while the other slots idle. ``map_concurrent(limit=10)`` keeps 10 calls
in flight: a slot is refilled as soon as any call finishes, results stay in input
order, and ``progress=True`` reports ``{"done", "total"}`` to the custom stream.
Tune ``limit`` against the service (measure 5, 10, 20, 50), not the batch size.
``python -m examples.guide.batching``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, HTTPResource, map_concurrent
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    api: str
    items: list[int]
    squares: list[int]


class SquareAll(AsyncBaseNode):
    http = HTTPResource(limit=10, timeout=10)

    async def execute(self, state: State) -> dict[str, Any]:
        squares = await map_concurrent(
            lambda item: self.square(state["api"], item), state["items"], limit=10, progress=True
        )
        return {"squares": squares}

    async def square(self, api: str, item: int) -> int:
        delay = 0.1 if item % 10 == 0 else 0.01  # one slow item in ten
        session = await self.http()
        async with session.get(f"{api}/items/{item}?delay={delay}") as response:
            response.raise_for_status()
            return (await response.json())["square"]


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("square_all", SquareAll())
    builder.add_edge(START, "square_all")
    return builder.compile()


async def main() -> dict[str, Any]:
    progress: list[dict[str, Any]] = []
    final: dict[str, Any] = {}
    async with local_api() as api:
        async for mode, chunk in build_graph().astream(
            {"api": api.url, "items": list(range(40))}, stream_mode=["custom", "values"]
        ):
            if mode == "custom":
                progress.append(chunk)
                print("progress:", chunk)
            else:
                final = chunk
    print("squares:", final["squares"][:5], "...", final["squares"][-1])
    return {"squares": final["squares"], "progress": progress}


if __name__ == "__main__":
    asyncio.run(main())
