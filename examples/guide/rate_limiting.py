"""Guide: Advanced Patterns / Rate Limiting.

One `RateLimiter` object is one budget: share it between nodes, runs and tasks, and it
spaces calls evenly on the event loop's clock, serving waiters in order. Use it as a
node's ``rate_limiter`` policy (each call takes a token) or pass it to ``map_concurrent``
(each item takes one). ``python -m examples.guide.rate_limiting``
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send

from act_operator_lib import AsyncBaseNode, RateLimiter, map_concurrent

SEARCH_API = RateLimiter(50)  # 50 calls a second, whoever makes them


async def call_api(item: str) -> str:
    await asyncio.sleep(0.01)  # stands in for the rate-limited API
    return f"result for {item}"


class State(TypedDict, total=False):
    items: list[str]
    item: str
    results: Annotated[list[str], operator.add]


class LookupOne(AsyncBaseNode):
    """Fanned out with Send: every parallel call of this node takes a token first."""

    rate_limiter = SEARCH_API

    async def execute(self, state: State) -> dict[str, Any]:
        return {"results": [await call_api(state["item"])]}


class LookupMany(AsyncBaseNode):
    """A loop over items inside one node: each item takes a token from the same budget."""

    async def execute(self, state: State) -> dict[str, Any]:
        results = await map_concurrent(call_api, state["items"], limit=5, rate_limiter=SEARCH_API)
        return {"results": results}


def fan_out(state: State) -> list[Send]:
    return [Send("lookup_one", {"item": item}) for item in state["items"]]


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("lookup_one", LookupOne())
    builder.add_node("lookup_many", LookupMany())
    builder.add_conditional_edges(START, fan_out, ["lookup_one"])
    builder.add_edge(START, "lookup_many")
    return builder.compile()


async def main() -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    granted_before = SEARCH_API.statistics().granted
    started = loop.time()
    result = await build_graph().ainvoke({"items": ["a", "b", "c", "d", "e"]})
    elapsed = loop.time() - started
    statistics = SEARCH_API.statistics()
    print(f"{len(result['results'])} calls in {elapsed:.2f}s under {SEARCH_API}")
    granted = statistics.granted - granted_before
    print(f"tokens granted: {granted}, waited {statistics.total_wait:.2f}s in all")
    return {"results": result["results"], "granted": granted}


if __name__ == "__main__":
    asyncio.run(main())
