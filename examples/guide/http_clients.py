"""Guide: Integration Patterns / Async HTTP Clients.

GET and POST on the node's pooled session (`HTTPResource`): keep-alive connections
are reused across calls and runs, every request has a timeout, and the session is
closed for you. Errors: ``raise_for_status()`` gives ``aiohttp.ClientResponseError``;
a refused connection gives `ResourceUnavailableError` naming host and port.
``python -m examples.guide.http_clients``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import aiohttp
from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, HTTPResource, ResourceUnavailableError
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    api: str
    query: str
    data: Any
    result: Any
    error: str | None


class SearchAPI(AsyncBaseNode):
    http = HTTPResource(timeout=10, connect_timeout=2, headers={"User-Agent": "guide-example"})

    async def execute(self, state: State) -> dict[str, Any]:
        session = await self.http()
        try:
            async with session.get(f"{state['api']}/users/1") as response:
                response.raise_for_status()
                data = await response.json()
            async with session.post(
                f"{state['api']}/echo", json={"query": state["query"]}
            ) as response:
                response.raise_for_status()
                result = await response.json()
        except aiohttp.ClientResponseError as error:
            return {"error": f"HTTP {error.status} from {error.request_info.url}"}
        except ResourceUnavailableError as error:  # also an aiohttp.ClientConnectionError
            return {"error": str(error)}
        return {"data": data, "result": result, "error": None}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("search", SearchAPI())
    builder.add_edge(START, "search")
    return builder.compile()


async def main() -> dict[str, Any]:
    graph = build_graph()
    async with local_api() as api:
        result = await graph.ainvoke({"api": api.url, "query": "async nodes"})
        address = api.url
    print("GET:", result["data"], "POST:", result["result"])
    down = await graph.ainvoke({"api": address, "query": "anyone there?"})  # server stopped
    print("server down:", down["error"])
    return {"data": result["data"], "result": result["result"], "down": down["error"]}


if __name__ == "__main__":
    asyncio.run(main())
