"""Guide: Error Handling / Timeout Errors.

Several named operations under one deadline: `gather_within` returns what finished in
time (``results``), what failed (``errors``) and what it cancelled *and awaited*
(``unfinished``), keyed by name. No bare coroutines passed to ``asyncio.wait``, no
matching tasks back to names, nothing left running after the node returns.
``python -m examples.guide.timeout_errors``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, gather_within


class State(TypedDict, total=False):
    results: dict[str, str]
    errors: dict[str, str]
    unfinished: list[str]


async def operation(name: str, delay: float, fail: bool = False) -> str:
    await asyncio.sleep(delay)
    if fail:
        raise ConnectionError(f"{name} lost its connection")
    return f"{name} done"


class Dashboard(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        outcome = await gather_within(
            {
                "quick": operation("quick", 0.01),
                "op1": operation("op1", 0.03),
                "op2": operation("op2", 0.02, fail=True),
                "op3": operation("op3", 10),  # past the deadline: cancelled and awaited
            },
            timeout=0.2,
        )
        return {
            "results": outcome.results,
            "errors": {name: repr(error) for name, error in outcome.errors.items()},
            "unfinished": list(outcome.unfinished),
        }


def build_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("dashboard", Dashboard())
    builder.add_edge(START, "dashboard")
    return builder.compile()


async def main() -> dict[str, Any]:
    result = await build_graph().ainvoke({})
    print("in time:", result["results"])
    print("failed:", result["errors"])
    print("cancelled at the deadline:", result["unfinished"])
    return result


if __name__ == "__main__":
    asyncio.run(main())
