"""Guide: Concurrency Control / asyncio.gather.

When the node needs every answer, plain ``asyncio.gather`` is right: the first error
fails the node (``return_exceptions=True`` would hide it in a list). When partial
results are useful, `gather_within` keys successes and failures by name instead of by
position, and puts a deadline on the lot. ``python -m examples.guide.gather``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, gather_within


class State(TypedDict, total=False):
    user_id: int
    user: dict[str, Any]
    posts: list[str]
    comments: list[str]
    widgets: dict[str, str]
    failed_widgets: dict[str, str]


async def fetch(kind: str, user_id: int, fail: bool = False) -> Any:
    await asyncio.sleep(0.01)  # stands in for an API call
    if fail:
        raise ConnectionError(f"{kind} service is down")
    return {"id": user_id} if kind == "user" else [f"{kind} of {user_id}"]


class UserPage(AsyncBaseNode):
    """All three are required: fail fast."""

    timeout = 5

    async def execute(self, state: State) -> dict[str, Any]:
        user, posts, comments = await asyncio.gather(
            fetch("user", state["user_id"]),
            fetch("posts", state["user_id"]),
            fetch("comments", state["user_id"]),
        )
        return {"user": user, "posts": posts, "comments": comments}


class Widgets(AsyncBaseNode):
    """Optional extras: keep what worked, report what didn't."""

    async def execute(self, state: State) -> dict[str, Any]:
        outcome = await gather_within(
            {
                "friends": fetch("friends", state["user_id"]),
                "photos": fetch("photos", state["user_id"], fail=True),
                "events": fetch("events", state["user_id"]),
            },
            timeout=2,
        )
        return {
            "widgets": outcome.results,
            "failed_widgets": {name: str(error) for name, error in outcome.errors.items()},
        }


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("user_page", UserPage())
    builder.add_node("widgets", Widgets())
    builder.add_edge(START, "user_page")
    builder.add_edge("user_page", "widgets")
    return builder.compile()


async def main() -> dict[str, Any]:
    result = await build_graph().ainvoke({"user_id": 7})
    print("page:", result["user"], result["posts"], result["comments"])
    print("widgets:", result["widgets"], "failed:", result["failed_widgets"])
    return result


if __name__ == "__main__":
    asyncio.run(main())
