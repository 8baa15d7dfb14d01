"""Guide: Advanced Patterns / Connection Pooling (and Performance Optimization #1).

The session is declared once on the class (`HTTPResource`): opened on first use in the
running event loop, shared by every run and task there (at most ``limit`` connections),
and closed when the graph's ``async with`` block exits. No ``if self.session is None``.
``python -m examples.guide.connection_pooling``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseGraph, HTTPResource, map_concurrent
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    urls: list[str]
    results: list[dict[str, Any]]


class FetchAll(AsyncBaseNode):
    http = HTTPResource(limit=4, timeout=10)  # a pool of at most 4 keep-alive connections

    async def execute(self, state: State) -> dict[str, Any]:
        return {"results": await map_concurrent(self.fetch, state["urls"], limit=8)}

    async def fetch(self, url: str) -> dict[str, Any]:
        session = await self.http()
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()


class PooledGraph(BaseGraph):
    def build(
        self,
        checkpointer: Any = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> Any:
        self.fetch_all = FetchAll()
        builder = StateGraph(State)
        builder.add_node("fetch_all", self.fetch_all)
        builder.add_edge(START, "fetch_all")
        return builder.compile(checkpointer=checkpointer, debug=debug)


async def main() -> dict[str, Any]:
    async with local_api() as api:
        async with PooledGraph() as cast:  # closes the session on exit
            graph = cast()
            urls = [f"{api.url}/items/{number}" for number in range(10)]
            for _ in range(3):  # three runs, one session
                result = await graph.ainvoke({"urls": urls})
        requests, connections = api.requests, len(api.connections)
    statistics = cast.fetch_all.http.statistics()
    print(f"{requests} requests over {connections} connections; session: {statistics}")
    return {
        "results": result["results"],
        "requests": requests,
        "connections": connections,
        "sessions": statistics,
    }


if __name__ == "__main__":
    asyncio.run(main())
