"""Guide: Advanced Patterns / Async Generators.

A node consumes an async generator and processes items as they arrive, a few at a time
(`as_completed` takes an async iterable), sending each result to the graph's ``custom``
stream so the caller sees them before the node returns.
``python -m examples.guide.async_generators``
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, as_completed


class State(TypedDict, total=False):
    query: str
    processed: list[dict[str, Any]]


async def fetch_stream(query: str) -> AsyncIterator[dict[str, Any]]:
    """Yields items one at a time, like a paginated API or a message feed."""
    for number in range(5):
        await asyncio.sleep(0.01)
        yield {"query": query, "item": number}


class ProcessStream(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        processed: list[dict[str, Any]] = []
        async with as_completed(self.process, fetch_stream(state["query"]), limit=3) as done:
            async for index, result in done:
                self.emit({"index": index, **result})  # visible while the node runs
                processed.append(result)
        processed.sort(key=lambda result: result["item"])
        return {"processed": processed}

    async def process(self, item: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        return {**item, "processed": True}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("process", ProcessStream())
    builder.add_edge(START, "process")
    return builder.compile()


async def main() -> dict[str, Any]:
    streamed: list[Any] = []
    final: dict[str, Any] = {}
    async for mode, chunk in build_graph().astream(
        {"query": "langgraph"}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            print("as it arrives:", chunk)
            streamed.append(chunk)
        else:
            final = chunk
    print("processed:", [item["item"] for item in final["processed"]])
    return {"streamed": streamed, "processed": final["processed"]}


if __name__ == "__main__":
    asyncio.run(main())
