"""Guide: Core Async Patterns / Async Context Managers.

Two lifetimes. Per call: a helper decorated with ``@asynccontextmanager`` (a plain
function returning the context manager, not an ``async def`` that returns one, which is
the guide's bug). Pooled: a `Resource`, opened once per event loop and closed when the
`BaseGraph` used as a context manager exits. ``python -m examples.guide.context_managers``
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseGraph, Resource

EVENTS: list[str] = []


class Connection:
    """Stands in for a database driver's connection."""

    async def connect(self) -> None:
        await asyncio.sleep(0.01)
        EVENTS.append("connect")

    async def disconnect(self) -> None:
        await asyncio.sleep(0.01)
        EVENTS.append("disconnect")

    async def execute(self, query: str) -> str:
        await asyncio.sleep(0.01)
        return f"rows for {query!r}"


class ConnectionResource(Resource[Connection]):
    async def open(self) -> Connection:
        connection = Connection()
        await connection.connect()
        return connection

    async def close(self, value: Connection) -> None:
        await value.disconnect()


class State(TypedDict, total=False):
    query: str
    result: str
    audit: str


class Query(AsyncBaseNode):
    """Pooled: every run on this loop shares one connection."""

    db = ConnectionResource()

    async def execute(self, state: State) -> dict[str, Any]:
        async with self.db as connection:  # leaving the block keeps the pool open
            return {"result": await connection.execute(state["query"])}


class Audit(AsyncBaseNode):
    """Per call: a connection opened and closed around each use."""

    @asynccontextmanager
    async def get_connection(self) -> AsyncIterator[Connection]:
        connection = Connection()
        await connection.connect()
        try:
            yield connection
        finally:
            await connection.disconnect()

    async def execute(self, state: State) -> dict[str, Any]:
        async with self.get_connection() as connection:
            return {"audit": await connection.execute("INSERT INTO audit ...")}


class QueryGraph(BaseGraph):
    def build(
        self,
        checkpointer: Any = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> Any:
        builder = StateGraph(State)
        builder.add_node("query", Query())
        builder.add_node("audit", Audit())
        builder.add_edge(START, "query")
        builder.add_edge("query", "audit")
        return builder.compile(
            checkpointer=checkpointer,
            interrupt_before=interrupt_before,
            interrupt_after=interrupt_after,
            debug=debug,
        )


async def main() -> dict[str, Any]:
    EVENTS.clear()
    async with QueryGraph() as cast:  # closes Query's pooled connection on exit
        graph = cast()
        results = [await graph.ainvoke({"query": f"SELECT {n}"}) for n in range(3)]
        EVENTS.append("graph done")
    print("results:", [result["result"] for result in results])
    print("events:", EVENTS)
    return {"results": results, "events": list(EVENTS)}


if __name__ == "__main__":
    asyncio.run(main())
