"""Guide: Core Async Patterns / Concurrent Operations.

Independent requests run at once: ``asyncio.gather`` of a fixed set of calls is right
when the node needs every answer (the first failure fails the node). The node takes
about as long as the slowest call, not the sum. Between nodes, let LangGraph do it:
nodes with edges from the same node, or ``Send`` fan-out (``rate_limiting.py``), run in
the same step. ``python -m examples.guide.concurrent_operations``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, HTTPResource
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    api: str
    user_id: int
    city: str
    topic: str
    user: dict[str, Any]
    weather: dict[str, Any]
    news: dict[str, Any]


class Dashboard(AsyncBaseNode):
    http = HTTPResource(timeout=10)
    timeout = 5

    async def execute(self, state: State) -> dict[str, Any]:
        api = state["api"]
        user, weather, news = await asyncio.gather(  # all three in flight at once
            self.get_json(f"{api}/users/{state['user_id']}?delay=0.05"),
            self.get_json(f"{api}/weather/{state['city']}?delay=0.05"),
            self.get_json(f"{api}/news/{state['topic']}?delay=0.05"),
        )
        return {"user": user, "weather": weather, "news": news}

    async def get_json(self, url: str) -> Any:
        session = await self.http()
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("dashboard", Dashboard())
    builder.add_edge(START, "dashboard")
    return builder.compile()


async def main() -> dict[str, Any]:
    async with local_api() as api:
        result = await build_graph().ainvoke(
            {"api": api.url, "user_id": 1, "city": "Paris", "topic": "python"}
        )
        connections = len(api.connections)
    print("user:", result["user"], "weather:", result["weather"], "news:", result["news"])
    print(f"over {connections} connections at once")
    return {**result, "connections": connections}


if __name__ == "__main__":
    asyncio.run(main())
