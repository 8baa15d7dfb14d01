"""A graph with one map_durable node, run in a subprocess that the crash test kills.

``python tests/_durable_crash_worker.py STORE CHECKPOINTS LOG THREAD ITEMS LIMIT FLUSH_EVERY``
runs the graph on a SQLite store and checkpointer; each call appends its item to LOG
(one ``write`` on an ``O_APPEND`` file, so what was started survives a SIGKILL).
`build_graph` and `count_records` are shared with the test and the benchmark, which
watch the store while the worker runs and rerun the same graph in their own process
after the kill.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.store.sqlite.aio import AsyncSqliteStore

from act_operator_lib import map_durable

DELAY = 0.002


class FanState(TypedDict, total=False):
    count: int
    results: list[int]


def build_graph(
    work: Callable[[int], Awaitable[int]], *, limit: int, flush_every: int
) -> StateGraph[Any]:
    """The graph: START -> fan, where fan maps ``work`` durably over range(count)."""

    async def fan(state: FanState) -> FanState:
        results = await map_durable(
            work, range(state["count"]), key=str, limit=limit, flush_every=flush_every
        )
        return {"results": results}

    builder: StateGraph[Any] = StateGraph(FanState)
    builder.add_node("fan", fan)
    builder.add_edge(START, "fan")
    return builder


def count_records(path: Path, prefix: str) -> int:
    """How many records the SQLite store at ``path`` holds under ``prefix`` right now.

    ``prefix`` is a namespace joined with "." (the store's own encoding); records in
    namespaces below it count too (map_durable adds the task id). Read-only, from
    another process than the worker's; 0 while the file or its table does not exist yet.
    """
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
            row = connection.execute(
                "SELECT count(*) FROM store WHERE prefix = ? OR substr(prefix, 1, ?) = ?",
                (prefix, len(prefix) + 1, prefix + "."),
            ).fetchone()
        return int(row[0])
    except sqlite3.OperationalError:
        return 0


async def run(argv: list[str]) -> None:
    store_path, checkpoints_path, log_path, thread_id = argv[:4]
    items, limit, flush_every = (int(value) for value in argv[4:7])
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    async def work(item: int) -> int:
        os.write(log, f"{item}\n".encode())
        await asyncio.sleep(DELAY)
        return item * 2

    async with (
        AsyncSqliteStore.from_conn_string(store_path) as store,
        AsyncSqliteSaver.from_conn_string(checkpoints_path) as saver,
    ):
        await store.setup()
        graph = build_graph(work, limit=limit, flush_every=flush_every).compile(
            checkpointer=saver, store=store
        )
        await graph.ainvoke({"count": items}, {"configurable": {"thread_id": thread_id}})
    os.close(log)


if __name__ == "__main__":
    asyncio.run(run(sys.argv[1:]))
