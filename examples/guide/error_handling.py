"""Guide: Error Handling / Try-Except in Async.

Catch what the node can answer for, and let everything else raise: a 404 becomes a
result, a timeout (``TimeoutError``: ``asyncio.TimeoutError`` is the same class since
Python 3.11) becomes a result, and a bug (``ValueError`` here) fails the run with its
traceback instead of turning into ``{"error": str(e)}``.
``python -m examples.guide.error_handling``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import aiohttp
from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, HTTPResource
from examples.guide._local_api import local_api


class State(TypedDict, total=False):
    api: str
    user_id: str
    user: dict[str, Any] | None
    error: str | None


class LookUpUser(AsyncBaseNode):
    http = HTTPResource(timeout=0.2)

    async def execute(self, state: State) -> dict[str, Any]:
        user_id = int(state["user_id"])  # a malformed id is a caller's bug: let it raise
        session = await self.http()
        try:
            async with session.get(f"{state['api']}/users/{user_id}?delay=0.01") as response:
                response.raise_for_status()
                return {"user": await response.json(), "error": None}
        except aiohttp.ClientResponseError as error:
            if error.status != 404:
                raise
            return {"user": None, "error": "not found"}
        except TimeoutError:
            return {"user": None, "error": "timeout"}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("look_up", LookUpUser())
    builder.add_edge(START, "look_up")
    return builder.compile()


async def main() -> dict[str, Any]:
    graph = build_graph()
    outcomes: dict[str, Any] = {}
    async with local_api() as api:
        for user_id in ["1", "42", "not-a-number"]:
            try:
                result = await graph.ainvoke({"api": api.url, "user_id": user_id})
                outcomes[user_id] = result["user"] or result["error"]
            except ValueError as error:  # the bug reaches the caller, traceback intact
                outcomes[user_id] = f"raised {type(error).__name__}: {error}"
            print(f"user {user_id!r}: {outcomes[user_id]}")
    return outcomes


if __name__ == "__main__":
    asyncio.run(main())
