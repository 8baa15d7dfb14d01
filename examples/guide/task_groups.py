"""Guide: Concurrency Control / Task Groups.

``asyncio.TaskGroup`` is the right tool for a few different calls that must all
succeed: if one fails, the others are cancelled and awaited. It raises an
``ExceptionGroup``, so catch with ``except*``. For one function over many items,
``map_concurrent`` gives the same guarantee, a bound, and the original exception.
``python -m examples.guide.task_groups``
"""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, map_concurrent


async def operation(name: str, delay: float, fail: bool = False) -> str:
    await asyncio.sleep(delay)
    if fail:
        raise LookupError(f"{name} found nothing")
    return f"{name} done"


class State(TypedDict, total=False):
    fail: bool
    results: list[str]
    error: str


class ThreeOperations(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        error = ""
        try:
            async with asyncio.TaskGroup() as group:
                first = group.create_task(operation("first", 0.01))
                second = group.create_task(operation("second", 0.02, fail=state["fail"]))
                third = group.create_task(operation("third", 0.03))
        except* LookupError as errors:  # the others were cancelled and awaited
            error = str(errors.exceptions[0])
        if error:
            return {"error": error}
        return {"results": [first.result(), second.result(), third.result()]}


class ManyOperations(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        names = [f"item{number}" for number in range(6)]
        try:
            results = await map_concurrent(
                lambda name: operation(name, 0.01, fail=state["fail"] and name == "item4"),
                names,
                limit=3,
            )
        except LookupError as error:  # the original exception, not a group
            return {"error": str(error)}
        return {"results": results}


def build_graph(node: AsyncBaseNode) -> Any:
    builder = StateGraph(State)
    builder.add_node("work", node)
    builder.add_edge(START, "work")
    return builder.compile()


async def main() -> dict[str, Any]:
    outcomes = {}
    for node in (ThreeOperations(), ManyOperations()):
        graph = build_graph(node)
        for fail in (False, True):
            result = await graph.ainvoke({"fail": fail})
            key = f"{node.name}, fail={fail}"
            outcomes[key] = result.get("error") or result["results"]
            print(f"{key}: {outcomes[key]}")
    return outcomes


if __name__ == "__main__":
    asyncio.run(main())
