"""Guide: Core Async Patterns / Multiple Sequential Operations.

Each request needs the previous answer, so they are awaited one after another on one
pooled session; the node's ``timeout`` bounds the whole chain.
``python -m examples.guide.sequential_operations``
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
    user: dict[str, Any]
    posts: list[dict[str, Any]]
    comments: list[dict[str, Any]]


class UserActivity(AsyncBaseNode):
    http = HTTPResource(timeout=10)
    timeout = 5  # seconds for the three requests together

    async def execute(self, state: State) -> dict[str, Any]:
        api = state["api"]
        user = await self.get_json(f"{api}/users/{state['user_id']}")
        posts = await self.get_json(f"{api}/users/{user['id']}/posts")  # needs the user
        comments = await self.get_json(f"{api}/posts/{posts[0]['id']}/comments")  # the post
        return {"user": user, "posts": posts, "comments": comments}

    async def get_json(self, url: str) -> Any:
        session = await self.http()
        async with session.get(url) as response:
            response.raise_for_status()
            return await response.json()


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("activity", UserActivity())
    builder.add_edge(START, "activity")
    return builder.compile()


async def main() -> dict[str, Any]:
    async with local_api() as api:
        result = await build_graph().ainvoke({"api": api.url, "user_id": 2})
    print(f"{result['user']['name']}: {result['posts']} -> {result['comments']}")
    return result


if __name__ == "__main__":
    asyncio.run(main())
