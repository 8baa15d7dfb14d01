"""Guide: Concurrency Control / asyncio.wait.

``asyncio.wait(..., return_when=FIRST_COMPLETED)`` is a race; `first_completed` runs
it properly: the first *success* wins (a fast failure does not), and the losers are
cancelled and awaited before it returns. For "whatever finishes in N seconds", see
`gather_within` in ``timeout_errors.py``. ``python -m examples.guide.wait``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, first_completed

CANCELLED: list[str] = []


async def mirror(name: str, delay: float, fail: bool = False) -> str:
    try:
        await asyncio.sleep(delay)
    except asyncio.CancelledError:
        CANCELLED.append(name)
        raise
    if fail:
        raise ConnectionError(f"{name} is down")
    return f"{name} answered"


class State(TypedDict, total=False):
    first_result: str


class FastestMirror(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        first = await first_completed(
            mirror("broken", 0.001, fail=True),  # fails first: does not win
            mirror("fast", 0.01),
            mirror("slow", 10),  # cancelled and awaited before first_completed returns
        )
        return {"first_result": first}


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("fastest", FastestMirror())
    builder.add_edge(START, "fastest")
    return builder.compile()


async def main() -> dict[str, Any]:
    CANCELLED.clear()
    result = await build_graph().ainvoke({})
    print("winner:", result["first_result"], "| cancelled:", CANCELLED)
    return {"first_result": result["first_result"], "cancelled": list(CANCELLED)}


if __name__ == "__main__":
    asyncio.run(main())
