"""Guide: Performance Optimization / Cache results.

``@cached(ttl=...)`` on the expensive call, not a dict on the node: entries expire,
concurrent calls with the same key share one request (single-flight), failures are not
cached, and the cache is bounded. The cached object is shared by every caller, so
copy it before changing it (or decorate with ``cached(..., copy=True)``).
``python -m examples.guide.caching``
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import START, StateGraph
from langgraph.types import Send

from act_operator_lib import AsyncBaseNode, HTTPResource, cached
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    api: str
    cities: list[str]
    city: str
    forecasts: Annotated[list[dict[str, Any]], operator.add]


class Forecast(AsyncBaseNode):
    http = HTTPResource(timeout=10)

    @cached(ttl=600, key=lambda self, api, city: f"{api} {city.lower()}")
    async def forecast(self, api: str, city: str) -> dict[str, Any]:
        session = await self.http()
        async with session.get(f"{api}/weather/{city.lower()}?delay=0.02") as response:
            response.raise_for_status()
            return await response.json()

    async def execute(self, state: State) -> dict[str, Any]:
        forecast = dict(await self.forecast(state["api"], state["city"]))  # a copy to change
        forecast["asked_as"] = state["city"]
        return {"forecasts": [forecast]}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("forecast", Forecast())
    builder.add_conditional_edges(
        START,
        lambda state: [Send("forecast", {"api": state["api"], "city": c}) for c in state["cities"]],
        ["forecast"],
    )
    return builder.compile()


async def main() -> dict[str, Any]:
    async with local_api() as api:
        graph = build_graph()
        cities = ["Paris", "paris", "Oslo", "PARIS", "oslo"]
        first = await graph.ainvoke({"api": api.url, "cities": cities})  # concurrent calls
        again = await graph.ainvoke({"api": api.url, "cities": ["Oslo"]})  # from the cache
        requests = api.requests
    print(f"{len(first['forecasts']) + len(again['forecasts'])} forecasts, {requests} requests")
    return {"forecasts": first["forecasts"] + again["forecasts"], "requests": requests}


if __name__ == "__main__":
    asyncio.run(main())
