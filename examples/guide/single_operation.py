"""Guide: Core Async Patterns / Single Async Operation.

One HTTP request from an async node, on the node's pooled session (`HTTPResource`)
instead of a new ``aiohttp.ClientSession`` per call. ``python -m examples.guide.single_operation``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, HTTPResource
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    url: str
    data: dict[str, Any]


class Fetch(AsyncBaseNode):
    http = HTTPResource(timeout=10)  # one session per event loop, closed at loop shutdown

    async def execute(self, state: State) -> dict[str, Any]:
        session = await self.http()
        async with session.get(state["url"]) as response:
            response.raise_for_status()
            return {"data": await response.json()}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("fetch", Fetch())
    builder.add_edge(START, "fetch")
    return builder.compile()


async def main() -> dict[str, Any]:
    async with local_api() as api:
        result = await build_graph().ainvoke({"url": f"{api.url}/users/1"})
    print("fetched:", result["data"])
    return result["data"]


if __name__ == "__main__":
    asyncio.run(main())
