"""map_durable against non-durable map_concurrent and LangGraph's own durable fan-outs.

Throughput: 10,000 items, each ``await asyncio.sleep(0.01)``, at most 100 at once
(ideal 1.0 s). Contenders: `map_concurrent` (no durability, the floor), `map_durable`
recording into an `AsyncSqliteStore` on local disk, the same into an
`AsyncPostgresStore` on 127.0.0.1 (when reachable), and LangGraph's two native ways
with an `AsyncSqliteSaver`: the ``Send`` fan-out (one checkpointed task per item) and
the functional API's ``@task`` called from a node (each call's result is a checkpoint
write, and a resumed node skips the calls that finished), both with
``max_concurrency=100``, each run once on all items (slow: measured, not
extrapolated). Best of ``ROUNDS``, interleaved.

Record cost: 100,000 items of a function that returns at once, limit 100, through
`map_concurrent` and through `map_durable` on each store; the difference per item is
what recording one result costs (check, buffer, batched write, and reading the
earlier records up front).

Crash: the test suite's worker (``tests/_durable_crash_worker.py``: 4,000 items of
``sleep(0.002)``, limit 50, ``flush_every=100``, SQLite store) is SIGKILLed once
``kill_after`` results are recorded, and the run is resumed in this process; the
items run twice are counted against the bound ``2 x (flush_every + limit)``.

``DURABLE_BENCH_SCALE=0.2`` runs every size at a fifth (a quick check on a busy
machine); the report says which sizes ran.
"""

from __future__ import annotations

import asyncio
import importlib.util
import operator
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.func import task
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.sqlite.aio import AsyncSqliteStore
from langgraph.types import Send

from act_operator_lib.concurrency import map_concurrent
from act_operator_lib.durable import (
    DEFAULT_FLUSH_EVERY,
    DEFAULT_FLUSH_INTERVAL,
    NAMESPACE_ROOT,
    forget_durable,
    map_durable,
)

SCALE = float(os.environ.get("DURABLE_BENCH_SCALE", "1"))
ITEMS = round(10_000 * SCALE)
SEND_ITEMS = round(10_000 * SCALE)
TASK_ITEMS = round(10_000 * SCALE)
TASK_SMALL_ITEMS = round(2_000 * SCALE)
RECORD_ITEMS = round(100_000 * SCALE)
LIMIT = 100
DELAY = 0.01
ROUNDS = 2
POSTGRES_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
WORKER = Path(__file__).resolve().parent.parent / "tests" / "_durable_crash_worker.py"
CRASH_ITEMS, CRASH_LIMIT, CRASH_FLUSH_EVERY = 4_000, 50, 100
CRASH_RUNS = 3
SEND = "LangGraph Send + SQLite checkpointer (one run)"
TASK = "LangGraph @task in a node + SQLite checkpointer (one run)"
TASK_SMALL = "@task, fewer items"


async def work(item: int) -> int:
    await asyncio.sleep(DELAY)
    return item


async def _timed(run: Callable[[], Awaitable[list[Any]]], expected: int) -> float:
    started = time.perf_counter()
    results = await run()
    elapsed = time.perf_counter() - started
    assert len(results) == expected
    return elapsed


async def _timed_durable(store: BaseStore) -> float:
    """One fresh run (nothing recorded yet); deleting its records is not timed."""
    namespace = f"bench-{uuid.uuid4().hex}"
    try:
        return await _timed(
            lambda: map_durable(
                work, range(ITEMS), key=str, limit=LIMIT, store=store, namespace=namespace
            ),
            ITEMS,
        )
    finally:
        await forget_durable(store=store, namespace=namespace)


class FanOut(TypedDict):
    items: list[int]
    results: Annotated[list[int], operator.add]


class One(TypedDict):
    item: int


async def _send_work(state: One) -> dict[str, list[int]]:
    return {"results": [await work(state["item"])]}


def _fan_out(state: FanOut) -> list[Send]:
    return [Send("work", {"item": item}) for item in state["items"]]


async def _send(saver: AsyncSqliteSaver, count: int) -> list[int]:
    builder = StateGraph(FanOut)
    builder.add_node("work", _send_work)
    builder.add_conditional_edges(START, _fan_out, ["work"])
    builder.add_edge("work", END)
    graph = builder.compile(checkpointer=saver)
    config: Any = {"max_concurrency": LIMIT, "configurable": {"thread_id": uuid.uuid4().hex}}
    state = await graph.ainvoke({"items": list(range(count)), "results": []}, config)
    results: list[int] = state["results"]
    return results


@task
async def _task_work(item: int) -> int:
    return await work(item)


async def _task_node(state: FanOut) -> dict[str, list[int]]:
    return {"results": list(await asyncio.gather(*(_task_work(item) for item in state["items"])))}


async def _task(saver: AsyncSqliteSaver, count: int) -> list[int]:
    builder = StateGraph(FanOut)
    builder.add_node("fan", _task_node)
    builder.add_edge(START, "fan")
    graph = builder.compile(checkpointer=saver)
    config: Any = {"max_concurrency": LIMIT, "configurable": {"thread_id": uuid.uuid4().hex}}
    state = await graph.ainvoke({"items": list(range(count)), "results": []}, config)
    results: list[int] = state["results"]
    return results


def _postgres_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


async def _throughput(directory: Path) -> dict[str, float]:
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    async with AsyncSqliteStore.from_conn_string(str(directory / "store.db")) as sqlite_store:
        await sqlite_store.setup()
        postgres = AsyncPostgresStore.from_conn_string(POSTGRES_DSN)
        postgres_store = await postgres.__aenter__() if _postgres_reachable() else None
        try:
            if postgres_store is not None:
                await postgres_store.setup()
            for _ in range(ROUNDS):
                keep(
                    "map_concurrent (not durable)",
                    await _timed(lambda: map_concurrent(work, range(ITEMS), limit=LIMIT), ITEMS),
                )
                keep("map_durable, SQLite store", await _timed_durable(sqlite_store))
                if postgres_store is not None:
                    keep("map_durable, PostgreSQL store", await _timed_durable(postgres_store))
        finally:
            if postgres_store is not None:
                await postgres.__aexit__(None, None, None)
    async with AsyncSqliteSaver.from_conn_string(str(directory / "send.db")) as saver:
        best[SEND] = await _timed(lambda: _send(saver, SEND_ITEMS), SEND_ITEMS)
    async with AsyncSqliteSaver.from_conn_string(str(directory / "task.db")) as saver:
        best[TASK] = await _timed(lambda: _task(saver, TASK_ITEMS), TASK_ITEMS)
        best[TASK_SMALL] = await _timed(lambda: _task(saver, TASK_SMALL_ITEMS), TASK_SMALL_ITEMS)
    return best


async def instant(item: int) -> int:
    return item


async def _record_cost(directory: Path) -> dict[str, float]:
    """Seconds for RECORD_ITEMS instant items, not durable and durable on each store."""
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, seconds), seconds)

    async def durable(store: BaseStore) -> float:
        namespace = f"bench-{uuid.uuid4().hex}"
        try:
            return await _timed(
                lambda: map_durable(
                    instant,
                    range(RECORD_ITEMS),
                    key=str,
                    limit=LIMIT,
                    store=store,
                    namespace=namespace,
                ),
                RECORD_ITEMS,
            )
        finally:
            await forget_durable(store=store, namespace=namespace)

    async with AsyncSqliteStore.from_conn_string(str(directory / "records.db")) as sqlite_store:
        await sqlite_store.setup()
        postgres = AsyncPostgresStore.from_conn_string(POSTGRES_DSN)
        postgres_store = await postgres.__aenter__() if _postgres_reachable() else None
        try:
            if postgres_store is not None:
                await postgres_store.setup()
            for _ in range(ROUNDS):
                keep(
                    "map_concurrent (not durable)",
                    await _timed(
                        lambda: map_concurrent(instant, range(RECORD_ITEMS), limit=LIMIT),
                        RECORD_ITEMS,
                    ),
                )
                keep("map_durable, InMemoryStore", await durable(InMemoryStore()))
                keep("map_durable, SQLite store", await durable(sqlite_store))
                if postgres_store is not None:
                    keep("map_durable, PostgreSQL store", await durable(postgres_store))
        finally:
            if postgres_store is not None:
                await postgres.__aexit__(None, None, None)
    return best


async def _crash_once(directory: Path, worker: Any, seed: int) -> tuple[int, int, int]:
    """Kill the worker mid-run, resume here; (recorded at kill, started, re-executed)."""
    store_path, checkpoints, log = directory / "store.db", directory / "ckpt.db", directory / "log"
    thread_id = "crash"
    prefix = ".".join((*NAMESPACE_ROOT, thread_id, "fan"))
    kill_after = random.Random(seed).randrange(1, CRASH_ITEMS // 2)
    arguments = [
        store_path,
        checkpoints,
        log,
        thread_id,
        CRASH_ITEMS,
        CRASH_LIMIT,
        CRASH_FLUSH_EVERY,
    ]
    process = subprocess.Popen([sys.executable, str(WORKER), *map(str, arguments)])
    try:
        while worker.count_records(store_path, prefix) < kill_after:
            if process.poll() is not None:
                raise RuntimeError("the crash worker finished before it was killed")
            await asyncio.sleep(0.002)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    started = {int(line) for line in log.read_text().split()}
    recorded = worker.count_records(store_path, prefix)
    called: list[int] = []

    async def again(item: int) -> int:
        called.append(item)
        await asyncio.sleep(0)
        return item * 2

    async with (
        AsyncSqliteStore.from_conn_string(str(store_path)) as store,
        AsyncSqliteSaver.from_conn_string(str(checkpoints)) as saver,
    ):
        graph = worker.build_graph(again, limit=CRASH_LIMIT, flush_every=CRASH_FLUSH_EVERY).compile(
            checkpointer=saver, store=store
        )
        state = await graph.ainvoke(None, {"configurable": {"thread_id": thread_id}})
    assert state["results"] == [item * 2 for item in range(CRASH_ITEMS)]
    assert worker.count_records(store_path, prefix) == CRASH_ITEMS
    return recorded, len(started), len(started & set(called))


async def _crashes() -> list[tuple[int, int, int]]:
    spec = importlib.util.spec_from_file_location("_durable_crash_worker", WORKER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    figures = []
    for run in range(CRASH_RUNS):
        with tempfile.TemporaryDirectory() as directory:
            figures.append(await _crash_once(Path(directory), module, seed=run))
    return figures


def main() -> str:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as directory:
        best = asyncio.run(_throughput(Path(directory)))
        records = asyncio.run(_record_cost(Path(directory)))
    crashes = asyncio.run(_crashes())
    task_small = best.pop(TASK_SMALL)
    floor = best["map_concurrent (not durable)"]
    send = best[SEND]
    lines = [
        "## Durable fan-out",
        "",
        "Command: `.venv/bin/python -m benchmarks durable`",
        "",
        f"{ITEMS:,} items, each `await asyncio.sleep({DELAY})`, limit {LIMIT} (ideal "
        f"{ITEMS * DELAY / LIMIT:.2f} s); map_durable with its defaults (flush_every="
        f"{DEFAULT_FLUSH_EVERY}, flush_interval={DEFAULT_FLUSH_INTERVAL:g} s), stores on local "
        f"disk / 127.0.0.1; best of {ROUNDS}, interleaved, in one process. LangGraph's own "
        f"durable fan-outs, one run each with `max_concurrency={LIMIT}`: `Send` (one "
        f"checkpointed task per item) and `@task` (functional API) called from a node, "
        "whose results are checkpoint writes and which a resumed node skips once finished.",
        "",
        "| Contender | Seconds | vs map_concurrent |",
        "|---|---:|---:|",
    ]
    for name, seconds in best.items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / floor:.2f}x |")
    durable_sqlite = best["map_durable, SQLite store"]
    lines += [
        "",
        f"Goals: map_durable (SQLite) / map_concurrent = {durable_sqlite / floor:.2f} "
        f"(goal <= 1.3); Send (SQLite) / map_durable (SQLite) = "
        f"{send / durable_sqlite:.1f} (goal >= 10); @task (SQLite) / map_durable (SQLite) = "
        f"{best[TASK] / durable_sqlite:.1f}. Send and @task were run on all {SEND_ITEMS:,} "
        f"items, not extrapolated. @task on {TASK_SMALL_ITEMS:,} items took "
        f"{task_small:.2f} s ({task_small / TASK_SMALL_ITEMS * 1e3:.2f} ms per "
        f"item, against {best[TASK] / TASK_ITEMS * 1e3:.2f} ms at {TASK_ITEMS:,}).",
    ]
    if "map_durable, PostgreSQL store" in best:
        postgres = best["map_durable, PostgreSQL store"]
        lines[-1] += (
            f" PostgreSQL: map_durable / map_concurrent = {postgres / floor:.2f}, "
            f"Send / map_durable = {send / postgres:.1f}."
        )
    record_floor = records["map_concurrent (not durable)"]
    lines += [
        "",
        f"Cost of a record: {RECORD_ITEMS:,} items of a function that returns at once, "
        f"limit {LIMIT}, defaults as above, best of {ROUNDS}; extra per item = "
        "(map_durable - map_concurrent) / items: the check, buffer, batched write, and "
        "the up-front read of earlier records.",
        "",
        "| Contender | Seconds | µs per item | Extra µs per item |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in records.items():
        per_item = seconds / RECORD_ITEMS * 1e6
        extra = (seconds - record_floor) / RECORD_ITEMS * 1e6
        lines.append(f"| {name} | {seconds:.3f} | {per_item:.1f} | {extra:.1f} |")
    bound = 2 * (CRASH_FLUSH_EVERY + CRASH_LIMIT)
    lines += [
        "",
        f"Crash (SIGKILL mid-run, then resume; {CRASH_ITEMS:,} items, limit {CRASH_LIMIT}, "
        f"flush_every={CRASH_FLUSH_EVERY}; bound on items run twice: 2 x (flush_every + "
        f"limit) = {bound}):",
        "",
        "| Run | Recorded at kill | Started before kill | Run again after resume |",
        "|---:|---:|---:|---:|",
    ]
    for run, (recorded, started, again) in enumerate(crashes, 1):
        lines.append(f"| {run} | {recorded:,} | {started:,} | {again} |")
    return "\n".join(lines) + "\n"
