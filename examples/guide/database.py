"""Guide: Integration Patterns / Async Database Operations.

The pool is a class attribute: `PostgresResource` (asyncpg, DSN from ``DATABASE_URL``,
no credentials in code) or `SQLiteResource` (aiosqlite). Opened once per event loop,
even when the first calls race; closed when the graph's ``async with`` exits. Runs on
SQLite in a temporary directory unless ``DATABASE_URL`` is set.
``python -m examples.guide.database`` or
``DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m examples.guide.database``
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseGraph, PostgresResource, SQLiteResource

SQLITE_PATH = Path(tempfile.gettempdir()) / "act-operator-lib-guide-users.db"
USERS = [(1, "Alice"), (2, "Bob"), (3, "Carol")]


class State(TypedDict, total=False):
    user_ids: list[int]
    users: list[dict[str, Any]]


class PostgresUsers(AsyncBaseNode):
    db = PostgresResource(max_size=5)  # DSN from $DATABASE_URL, read when the pool opens

    async def set_up(self) -> None:
        pool = await self.db()
        await pool.execute("CREATE TABLE IF NOT EXISTS guide_users (id int PRIMARY KEY, name text)")
        await pool.executemany(
            "INSERT INTO guide_users VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", USERS
        )

    async def execute(self, state: State) -> dict[str, Any]:
        pool = await self.db()
        rows = await pool.fetch(
            "SELECT id, name FROM guide_users WHERE id = any($1::int[]) ORDER BY id",
            state["user_ids"],
        )
        return {"users": [dict(row) for row in rows]}


class SQLiteUsers(AsyncBaseNode):
    db = SQLiteResource(SQLITE_PATH)

    async def set_up(self) -> None:
        db = await self.db()
        await db.execute(
            "CREATE TABLE IF NOT EXISTS guide_users (id INTEGER PRIMARY KEY, name TEXT)"
        )
        await db.executemany("INSERT OR IGNORE INTO guide_users VALUES (?, ?)", USERS)
        await db.commit()

    async def execute(self, state: State) -> dict[str, Any]:
        db = await self.db()
        marks = ", ".join("?" * len(state["user_ids"]))
        query = f"SELECT id, name FROM guide_users WHERE id IN ({marks}) ORDER BY id"
        async with db.execute(query, state["user_ids"]) as cursor:
            return {"users": [{"id": row[0], "name": row[1]} for row in await cursor.fetchall()]}


class UsersGraph(BaseGraph):
    def __init__(self) -> None:
        super().__init__()
        self.users = PostgresUsers() if os.environ.get("DATABASE_URL") else SQLiteUsers()

    def build(
        self,
        checkpointer: Any = None,
        interrupt_before: list[str] | None = None,
        interrupt_after: list[str] | None = None,
        debug: bool = False,
    ) -> Any:
        builder = StateGraph(State)
        builder.add_node("users", self.users)
        builder.add_edge(START, "users")
        return builder.compile(checkpointer=checkpointer, debug=debug)


async def main() -> dict[str, Any]:
    async with UsersGraph() as cast:  # closes the pool (or connection) on exit
        graph = cast()
        await cast.users.set_up()
        results = await asyncio.gather(
            *(graph.ainvoke({"user_ids": ids}) for ids in ([1, 2], [3], [2, 42]))
        )
    backend = cast.users.name
    pools = cast.users.db.statistics()
    for result in results:
        print(f"{backend}: {result['users']}")
    print("pools:", pools)
    return {"backend": backend, "users": [result["users"] for result in results], "pools": pools}


if __name__ == "__main__":
    asyncio.run(main())
