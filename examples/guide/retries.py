"""Guide: Error Handling / Async Error Recovery (retries).

Retries are a node policy: LangGraph's own ``RetryPolicy`` type, with ``retry_on``
naming what is transient. Backoff is capped (``max_interval``) and jittered; the
``Retry-After`` header of a 429/503 answer sets the next delay (read from the
``aiohttp.ClientResponseError`` that ``raise_for_status()`` raises). Bugs,
cancellation and ``interrupt()`` are never retried, and after the last attempt the
error is raised, not returned. ``python -m examples.guide.retries``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import aiohttp
from langgraph.graph import START, StateGraph
from langgraph.types import RetryPolicy

from act_operator_lib import AsyncBaseNode, HTTPResource
from examples.guide._local_api import local_api


def unavailable(error: Exception) -> bool:
    """A 429/503 answer: worth another try (after its Retry-After, if it has one)."""
    return isinstance(error, aiohttp.ClientResponseError) and error.status in (429, 503)


class State(TypedDict, total=False):
    url: str
    data: dict[str, Any]


class FetchFlaky(AsyncBaseNode):
    http = HTTPResource(timeout=5)
    retry = RetryPolicy(
        max_attempts=4, initial_interval=0.01, max_interval=0.1, retry_on=unavailable
    )

    async def execute(self, state: State) -> dict[str, Any]:
        session = await self.http()
        async with session.get(state["url"]) as response:
            response.raise_for_status()
            return {"data": await response.json()}


def build_graph(node: FetchFlaky) -> Any:
    builder = StateGraph(State)
    builder.add_node("fetch", node)
    builder.add_edge(START, "fetch")
    return builder.compile()


async def main() -> dict[str, Any]:
    node = FetchFlaky()
    graph = build_graph(node)
    async with local_api() as api:
        result = await graph.ainvoke({"url": f"{api.url}/flaky/report?failures=2"})
        recovered = node.statistics().retries
        print(f"recovered after {recovered} retries: {result['data']}")
        try:
            await graph.ainvoke({"url": f"{api.url}/flaky/down?failures=100"})
        except aiohttp.ClientResponseError as error:
            gave_up = f"gave up after {api.hits['/flaky/down']} attempts: {error}"
            print(gave_up)
    return {"data": result["data"], "retries": recovered, "gave_up": gave_up}


if __name__ == "__main__":
    asyncio.run(main())
