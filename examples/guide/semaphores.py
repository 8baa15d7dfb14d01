"""Guide: Concurrency Control / Semaphores (and Common Pitfall #4).

Bound how many calls run at once. Inside a node, ``map_concurrent(limit=...)`` runs
``limit`` workers over the items (not one coroutine per item behind a semaphore). Across
runs and fanned-out calls of a node, the ``max_concurrency`` policy does it. Neither
is a *rate* limit: for calls per second, see ``rate_limiting.py``.
``python -m examples.guide.semaphores``
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send

from act_operator_lib import AsyncBaseNode, map_concurrent


class InFlight:
    """Counts calls running at once, and the most seen."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    async def run(self, item: int) -> str:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await asyncio.sleep(0.01)  # stands in for an API call
            return f"processed {item}"
        finally:
            self.now -= 1


class State(TypedDict, total=False):
    items: list[int]
    item: int
    processed: list[str]
    results: Annotated[list[str], operator.add]


class ProcessAll(AsyncBaseNode):
    def __init__(self, counter: InFlight, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counter = counter

    async def execute(self, state: State) -> dict[str, Any]:
        return {"processed": await map_concurrent(self.counter.run, state["items"], limit=3)}


class ProcessOne(AsyncBaseNode):
    max_concurrency = 2  # however many Sends, at most 2 run at once

    def __init__(self, counter: InFlight, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counter = counter

    async def execute(self, state: State) -> dict[str, Any]:
        return {"results": [await self.counter.run(state["item"])]}


def build_graph(in_node: InFlight, across_calls: InFlight) -> Any:
    builder = StateGraph(State)
    builder.add_node("process_all", ProcessAll(in_node))
    builder.add_node("process_one", ProcessOne(across_calls))
    builder.add_edge(START, "process_all")
    builder.add_conditional_edges(
        "process_all",
        lambda state: [Send("process_one", {"item": item}) for item in state["items"]],
        ["process_one"],
    )
    return builder.compile()


async def main() -> dict[str, Any]:
    in_node, across_calls = InFlight(), InFlight()
    result = await build_graph(in_node, across_calls).ainvoke({"items": list(range(10))})
    print(f"{len(result['processed'])} processed in one node, {len(result['results'])} fanned out")
    print(f"at most {in_node.peak} at once in map_concurrent(limit=3)")
    print(f"at most {across_calls.peak} fanned-out calls at once with max_concurrency=2")
    return {
        "processed": result["processed"],
        "results": sorted(result["results"]),
        "peak_in_node": in_node.peak,
        "peak_across_calls": across_calls.peak,
    }


if __name__ == "__main__":
    asyncio.run(main())
