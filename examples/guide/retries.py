"""Guide: Error Handling / Async Error Recovery (retries).

Retries are a node policy: LangGraph's own ``RetryPolicy`` type, with ``retry_on``
naming what is transient. Backoff is capped (``max_interval``) and jittered; a
``retry_after`` attribute on the error (from a 429/503 ``Retry-After`` header) sets the
next delay. Bugs, cancellation and ``interrupt()`` are never retried, and after the
last attempt the error is raised, not returned. ``python -m examples.guide.retries``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import RetryPolicy

from act_operator_lib import AsyncBaseNode, HTTPResource
from examples.guide._local_api import local_api


class ServiceUnavailable(Exception):
    """A 429/503 answer: worth another try, after ``retry_after`` seconds if given."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}, retry after {retry_after}s")
        self.retry_after = retry_after


class State(TypedDict, total=False):
    url: str
    data: dict[str, Any]


class FetchFlaky(AsyncBaseNode):
    http = HTTPResource(timeout=5)
    retry = RetryPolicy(
        max_attempts=4, initial_interval=0.01, max_interval=0.1, retry_on=ServiceUnavailable
    )

    async def execute(self, state: State) -> dict[str, Any]:
        session = await self.http()
        async with session.get(state["url"]) as response:
            if response.status in (429, 503):
                retry_after = response.headers.get("Retry-After")
                raise ServiceUnavailable(
                    response.status, float(retry_after) if retry_after else None
                )
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
        except ServiceUnavailable as error:
            gave_up = f"gave up after {api.hits['/flaky/down']} attempts: {error}"
            print(gave_up)
    return {"data": result["data"], "retries": recovered, "gave_up": gave_up}


if __name__ == "__main__":
    asyncio.run(main())
