"""Quick start: a sync and an async node in a real StateGraph, invoked and streamed."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from act_operator_lib import AsyncBaseNode, BaseGraph, BaseNode


class State(TypedDict, total=False):
    query: str
    words: list[str]
    answer: str


class Split(BaseNode):
    """Sync node: a simple CPU-bound transform."""

    def execute(self, state: State) -> dict[str, Any]:
        return {"words": state["query"].split()}


class Answer(AsyncBaseNode):
    """Async node: awaits I/O concurrently and streams progress to the custom stream."""

    async def execute(self, state: State, runtime: Any) -> dict[str, Any]:
        async def look_up(word: str) -> str:
            await asyncio.sleep(0.01)  # stands in for an API call
            runtime.stream.send({"looked_up": word})
            return word.upper()

        found = await asyncio.gather(*(look_up(word) for word in state["words"]))
        return {"answer": " ".join(found)}


class QuickstartGraph(BaseGraph):
    def build(
        self,
        checkpointer: Any = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        builder = StateGraph(State)
        builder.add_node("split", Split())
        builder.add_node("answer", Answer())
        builder.add_edge(START, "split")
        builder.add_edge("split", "answer")
        builder.add_edge("answer", END)
        return builder.compile(checkpointer=checkpointer, debug=debug)


async def main() -> None:
    graph = QuickstartGraph()()
    print("invoke:", await graph.ainvoke({"query": "async nodes made easy"}))
    async for mode, chunk in graph.astream(
        {"query": "stream me"}, stream_mode=["custom", "updates"]
    ):
        print(f"{mode}:", chunk)


if __name__ == "__main__":
    asyncio.run(main())
