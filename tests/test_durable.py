"""map_durable: results recorded in LangGraph's store survive failures and crashes.

Real graphs, real stores (InMemoryStore, AsyncSqliteStore on a temporary file,
AsyncPostgresStore on 127.0.0.1), and a subprocess killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import operator
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.store.sqlite.aio import AsyncSqliteStore
from langgraph.types import Command, RetryPolicy, Send, interrupt

from _durable_crash_worker import build_graph, count_records
from act_operator_lib import (
    DuplicateItemKeyError,
    DurableContextError,
    RecordedItemError,
    ResultNotSerializableError,
    forget_durable,
    map_durable,
)
from act_operator_lib.durable import NAMESPACE_ROOT

WORKER = Path(__file__).with_name("_durable_crash_worker.py")
ITEMS = 40


class State(TypedDict, total=False):
    results: list[Any]


class Calls:
    """An item function that counts its calls and can fail once on chosen items."""

    def __init__(self, fail_once: set[int] | None = None) -> None:
        self.called: list[int] = []
        self.fail_once = set(fail_once or ())

    async def __call__(self, item: int) -> int:
        self.called.append(item)
        await asyncio.sleep(0)
        if item in self.fail_once:
            self.fail_once.discard(item)
            raise RuntimeError(f"item {item} failed")
        return item * 10


@pytest.fixture
def thread_id() -> str:
    return f"durable-test-{uuid.uuid4().hex}"


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, thread_id: str
) -> AsyncIterator[BaseStore]:
    """Each kind of LangGraph store; PostgreSQL records are deleted afterwards."""
    if request.param == "memory":
        yield InMemoryStore()
    elif request.param == "sqlite":
        async with AsyncSqliteStore.from_conn_string(str(tmp_path / "store.db")) as sqlite_store:
            await sqlite_store.setup()
            yield sqlite_store
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        async with AsyncPostgresStore.from_conn_string(dsn) as postgres_store:
            await postgres_store.setup()
            try:
                yield postgres_store
            finally:
                await forget_durable(store=postgres_store, thread_id=thread_id)


def fan_out_graph(
    fn: Callable[[int], Awaitable[Any]],
    store: BaseStore | None,
    *,
    limit: int = 1,
    retry: RetryPolicy | None = None,
    after: Callable[[list[Any]], object] | None = None,
    **options: Any,
) -> Any:
    """START -> fan: map_durable(fn, range(ITEMS)); ``after`` sees what it returned."""

    async def fan(state: State) -> State:
        results = await map_durable(fn, range(ITEMS), key=str, limit=limit, **options)
        if after is not None:
            after(results)
        return {"results": results}

    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("fan", fan, retry_policy=retry)
    builder.add_edge(START, "fan")
    return builder.compile(checkpointer=InMemorySaver(), store=store)


async def recorded_keys(store: BaseStore, thread_id: str, node: str | None = "fan") -> set[str]:
    """The keys recorded under the thread (and node, unless None), by every task."""
    prefix = (*NAMESPACE_ROOT, thread_id) if node is None else (*NAMESPACE_ROOT, thread_id, node)
    found: set[str] = set()
    offset = 0
    while page := await store.asearch(prefix, limit=500, offset=offset):
        found.update(item.key for item in page)
        offset += len(page)
    return found


async def test_results_come_back_in_input_order_and_are_recorded(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls()
    graph = fan_out_graph(calls, store, limit=8)
    state = await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert state["results"] == [item * 10 for item in range(ITEMS)]
    assert await recorded_keys(store, thread_id) == {str(item) for item in range(ITEMS)}


async def test_rerun_after_node_failure_calls_fn_only_for_unrecorded_items(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls(fail_once={25})
    graph = fan_out_graph(calls, store, limit=4, flush_every=3)
    config = {"configurable": {"thread_id": thread_id}}
    with pytest.raises(RuntimeError, match="item 25 failed"):
        await graph.ainvoke({}, config)
    recorded = await recorded_keys(store, thread_id)
    assert recorded, "the results finished before the failure are flushed"
    assert "25" not in recorded
    first_run = len(calls.called)
    state = await graph.ainvoke(None, config)
    assert state["results"] == [item * 10 for item in range(ITEMS)]
    rerun = calls.called[first_run:]
    assert sorted(rerun) == sorted(item for item in range(ITEMS) if str(item) not in recorded)


async def test_resume_after_interrupt_does_not_call_fn_again(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls()
    graph = fan_out_graph(calls, store, limit=8, after=lambda results: interrupt("approve?"))
    config = {"configurable": {"thread_id": thread_id}}
    paused = await graph.ainvoke({}, config)
    assert "__interrupt__" in paused
    state = await graph.ainvoke(Command(resume="yes"), config)
    assert state["results"] == [item * 10 for item in range(ITEMS)]
    assert sorted(calls.called) == list(range(ITEMS))


async def test_node_retry_reuses_the_failed_attempts_results(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls(fail_once={30})
    retry = RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False, retry_on=RuntimeError)
    graph = fan_out_graph(calls, store, limit=1, flush_every=1000, retry=retry)
    state = await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert state["results"] == [item * 10 for item in range(ITEMS)]
    # limit=1: the first attempt ran 0..30 and recorded 0..29 (flushed on failure);
    # the retry ran only 30..39.
    assert calls.called == [*range(31), *range(30, ITEMS)]


class Loop(TypedDict, total=False):
    visits: int
    results: Annotated[list[list[int]], operator.add]


async def test_a_graph_looping_through_the_node_computes_each_visit_anew(
    store: BaseStore, thread_id: str
) -> None:
    async def fan(state: Loop) -> Loop:
        visit = state.get("visits", 0) + 1

        async def work(item: int) -> int:
            await asyncio.sleep(0)
            return visit * 100 + item

        results = await map_durable(work, range(3), key=str, limit=2)
        return {"visits": visit, "results": [results]}

    builder: StateGraph[Any] = StateGraph(Loop)
    builder.add_node("fan", fan)
    builder.add_edge(START, "fan")
    builder.add_conditional_edges("fan", lambda state: "fan" if state["visits"] < 2 else END)
    graph = builder.compile(checkpointer=InMemorySaver(), store=store)
    state = await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert state["results"] == [[100, 101, 102], [200, 201, 202]]


class Batches(TypedDict, total=False):
    results: Annotated[list[tuple[int, list[int]]], operator.add]


class Batch(TypedDict):
    base: int


async def test_a_retried_send_task_gets_its_own_records_not_a_sibling_tasks(
    store: BaseStore, thread_id: str
) -> None:
    first_done = asyncio.Event()
    attempts: dict[int, int] = {}

    async def work(state: Batch) -> Batches:
        base = state["base"]
        attempts[base] = attempts.get(base, 0) + 1
        if base == 200 and attempts[base] == 1:
            # Fail only once the sibling task has recorded its results.
            await first_done.wait()
            raise ConnectionError("transient")

        async def add(item: int) -> int:
            await asyncio.sleep(0)
            return base + item

        results = await map_durable(add, range(3), key=str, limit=2)
        if base == 100:
            first_done.set()
        return {"results": [(base, results)]}

    builder: StateGraph[Any] = StateGraph(Batches)
    builder.add_node(
        "work",
        work,
        retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False),
    )
    builder.add_conditional_edges(
        START, lambda state: [Send("work", {"base": base}) for base in (100, 200)], ["work"]
    )
    graph = builder.compile(checkpointer=InMemorySaver(), store=store)
    state = await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert dict(state["results"]) == {100: [100, 101, 102], 200: [200, 201, 202]}
    assert attempts == {100: 1, 200: 2}


def fail_first_attempt(seen: list[list[Any]]) -> Callable[[list[Any]], None]:
    """An ``after`` that keeps each attempt's results and fails the node the first time."""

    def after(results: list[Any]) -> None:
        seen.append(results)
        if len(seen) == 1:
            raise ConnectionError("the node failed after map_durable returned")

    return after


async def test_a_send_task_resumed_after_an_interrupt_reuses_its_records(
    store: BaseStore, thread_id: str
) -> None:
    calls: dict[int, list[int]] = {100: [], 200: []}

    async def work(state: Batch) -> Batches:
        base = state["base"]

        async def add(item: int) -> int:
            calls[base].append(item)
            await asyncio.sleep(0)
            return base + item

        results = await map_durable(add, range(3), key=str, limit=2)
        if base == 200:
            interrupt("approve?")
        return {"results": [(base, results)]}

    builder: StateGraph[Any] = StateGraph(Batches)
    builder.add_node("work", work)
    builder.add_conditional_edges(
        START, lambda state: [Send("work", {"base": base}) for base in (100, 200)], ["work"]
    )
    graph = builder.compile(checkpointer=InMemorySaver(), store=store)
    config = {"configurable": {"thread_id": thread_id}}
    assert "__interrupt__" in await graph.ainvoke({}, config)
    state = await graph.ainvoke(Command(resume="yes"), config)
    assert dict(state["results"]) == {100: [100, 101, 102], 200: [200, 201, 202]}
    assert {base: sorted(items) for base, items in calls.items()} == {
        100: [0, 1, 2],
        200: [0, 1, 2],
    }


async def test_an_explicit_namespace_shares_records_between_visits(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls()

    async def fan(state: Loop) -> Loop:
        results = await map_durable(calls, range(3), key=str, limit=2, namespace=thread_id)
        return {"visits": state.get("visits", 0) + 1, "results": [results]}

    builder: StateGraph[Any] = StateGraph(Loop)
    builder.add_node("fan", fan)
    builder.add_edge(START, "fan")
    builder.add_conditional_edges("fan", lambda state: "fan" if state["visits"] < 2 else END)
    graph = builder.compile(checkpointer=InMemorySaver(), store=store)
    state = await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert state["results"] == [[0, 10, 20], [0, 10, 20]]
    assert calls.called == [0, 1, 2]
    await forget_durable(store=store, namespace=thread_id)


async def test_recorded_failure_is_returned_as_recorded_item_error(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls(fail_once={7})
    attempts: list[list[Any]] = []
    graph = fan_out_graph(
        calls, store, limit=4, return_exceptions=True, after=fail_first_attempt(attempts)
    )
    config = {"configurable": {"thread_id": thread_id}}
    with pytest.raises(ConnectionError):
        await graph.ainvoke({}, config)
    assert isinstance(attempts[0][7], RuntimeError)
    again = await graph.ainvoke(None, config)
    error = again["results"][7]
    assert isinstance(error, RecordedItemError)
    assert (error.key, error.error_type, error.message) == (
        "7",
        "builtins.RuntimeError",
        "item 7 failed",
    )
    assert len(calls.called) == ITEMS


async def test_forget_durable_makes_the_resumed_node_start_over(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls()
    graph = fan_out_graph(calls, store, limit=8, after=fail_first_attempt([]))
    config = {"configurable": {"thread_id": thread_id}}
    with pytest.raises(ConnectionError):
        await graph.ainvoke({}, config)
    assert await forget_durable(store=store, thread_id=thread_id, node="fan") == ITEMS
    assert await recorded_keys(store, thread_id) == set()
    await graph.ainvoke(None, config)
    assert len(calls.called) == 2 * ITEMS


async def test_forget_durable_inside_a_node_forgets_that_node(
    store: BaseStore, thread_id: str
) -> None:
    forgotten: list[int] = []

    async def fan(state: State) -> State:
        results = await map_durable(Calls(), range(ITEMS), key=str, limit=4)
        forgotten.append(await forget_durable())
        return {"results": results}

    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("fan", fan)
    builder.add_edge(START, "fan")
    graph = builder.compile(store=store)
    await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert forgotten == [ITEMS]
    assert await recorded_keys(store, thread_id) == set()


async def test_many_records_are_read_back_in_batches(store: BaseStore, thread_id: str) -> None:
    items = range(2_500)
    first = await map_durable(Calls(), items, key=str, limit=50, store=store, namespace=thread_id)
    calls = Calls()
    again = await map_durable(calls, items, key=str, limit=50, store=store, namespace=thread_id)
    assert again == first == [item * 10 for item in items]
    assert calls.called == []


async def test_cancelling_the_caller_flushes_finished_results(thread_id: str) -> None:
    store = InMemoryStore()
    started = asyncio.Event()

    async def work(item: int) -> int:
        if item == 5:
            started.set()
            await asyncio.Event().wait()
        return item

    task = asyncio.create_task(
        map_durable(work, range(10), key=str, limit=1, store=store, namespace=thread_id)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    page = await store.asearch((*NAMESPACE_ROOT, thread_id), limit=100)
    assert sorted(int(item.key) for item in page) == [0, 1, 2, 3, 4]


async def test_unserializable_result_names_the_item_key(thread_id: str) -> None:
    store = InMemoryStore()

    async def work(item: int) -> Any:
        return {"when": object()} if item == 3 else item

    with pytest.raises(ResultNotSerializableError, match=r"item '3'.*result\['when'\]") as caught:
        await map_durable(work, range(6), key=str, limit=1, store=store, namespace=thread_id)
    assert caught.value.key == "3"
    page = await store.asearch((*NAMESPACE_ROOT, thread_id), limit=100)
    assert sorted(item.key for item in page) == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ("a\x00b", r"result is a str"),
        ({"rows": [{"text": "a\x00b"}]}, r"result\['rows'\]\[0\]\['text'\] is a str"),
        ({"a\x00b": 1}, r"result has a key 'a\\x00b'"),
    ],
    ids=["str", "nested str", "dict key"],
)
async def test_a_nul_character_in_a_result_names_the_item_and_keeps_the_others(
    store: BaseStore, thread_id: str, value: Any, where: str
) -> None:
    async def work(item: int) -> Any:
        return value if item == 3 else item

    with pytest.raises(ResultNotSerializableError, match=rf"item '3'.*{where}.*NUL") as caught:
        await map_durable(work, range(6), key=str, limit=1, store=store, namespace=thread_id)
    assert caught.value.key == "3"
    assert await recorded_keys(store, thread_id, node=None) == {"0", "1", "2"}


async def test_a_recorded_failure_whose_message_holds_a_nul_character_is_kept(
    store: BaseStore, thread_id: str
) -> None:
    async def work(item: int) -> int:
        if item == 1:
            raise ValueError("bad byte \x00 here")
        return item

    results = await map_durable(
        work, range(3), key=str, limit=1, store=store, namespace=thread_id, return_exceptions=True
    )
    assert isinstance(results[1], ValueError)
    again = await map_durable(
        work, range(3), key=str, limit=1, store=store, namespace=thread_id, return_exceptions=True
    )
    assert again[::2] == [0, 2]
    assert isinstance(again[1], RecordedItemError)
    assert again[1].message == "bad byte \\x00 here"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({1: "a"}, "int key"),
        (float("nan"), "nan"),
        ([1, {"x": {1, 2}}], r"result\[1\]\['x'\] is a set"),
        (2**70, "too large"),
    ],
)
async def test_results_that_would_change_or_fail_in_a_store_are_refused(
    value: Any, problem: str
) -> None:
    async def work(item: int) -> Any:
        return value

    with pytest.raises(ResultNotSerializableError, match=problem):
        await map_durable(work, [0], key=str, limit=1, store=InMemoryStore(), namespace="n")


async def test_duplicate_keys_fail_before_any_call() -> None:
    calls = Calls()
    with pytest.raises(DuplicateItemKeyError, match="items 0 and 2 have the same key 'a'"):
        await map_durable(
            calls, ["a", "b", "a"], key=str, limit=2, store=InMemoryStore(), namespace="n"
        )
    assert calls.called == []


async def test_key_must_be_a_function_returning_str() -> None:
    with pytest.raises(TypeError, match=r"key=\.\.\.") as no_function:
        await map_durable(Calls(), [1], key=None, limit=1, store=InMemoryStore(), namespace="n")  # type: ignore[arg-type]
    assert "must be a function" in str(no_function.value)
    with pytest.raises(TypeError, match="must return a str; for item 0 it returned int"):
        await map_durable(
            Calls(), [1], key=lambda item: item, limit=1, store=InMemoryStore(), namespace="n"
        )


async def test_a_key_with_a_nul_character_fails_before_any_call(
    store: BaseStore, thread_id: str
) -> None:
    calls = Calls()
    refused = r"without NUL characters.*for item 1 it returned '1\\x00'"
    with pytest.raises(ValueError, match=refused):
        await map_durable(
            calls,
            [0, 1],
            key=lambda item: str(item) + "\x00" * item,
            limit=1,
            store=store,
            namespace=thread_id,
        )
    assert calls.called == []


async def test_graph_without_store_names_how_to_provide_one(thread_id: str) -> None:
    calls = Calls()
    graph = fan_out_graph(calls, None)
    with pytest.raises(DurableContextError, match=r"compile\(checkpointer=\.\.\., store="):
        await graph.ainvoke({}, {"configurable": {"thread_id": thread_id}})
    assert calls.called == []


async def test_run_without_thread_id_needs_one() -> None:
    async def fan(state: State) -> State:
        return {"results": await map_durable(Calls(), [1], key=str, limit=1)}

    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("fan", fan)
    builder.add_edge(START, "fan")
    graph = builder.compile(store=InMemoryStore())
    with pytest.raises(DurableContextError, match="thread_id"):
        await graph.ainvoke({})


async def test_a_runnable_outside_a_graph_task_needs_a_namespace() -> None:
    async def fan(items: list[int]) -> list[int]:
        return await map_durable(Calls(), items, key=str, limit=1, store=InMemoryStore())

    with pytest.raises(DurableContextError, match="not inside one"):
        await RunnableLambda(fan).ainvoke([1], {"configurable": {"thread_id": "t"}})


async def test_outside_a_graph_a_namespace_and_store_are_needed() -> None:
    with pytest.raises(DurableContextError, match="store"):
        await map_durable(Calls(), [1], key=str, limit=1, namespace="n")
    with pytest.raises(DurableContextError, match="namespace="):
        await map_durable(Calls(), [1], key=str, limit=1, store=InMemoryStore())


async def test_thread_ids_with_periods_are_recorded_under_an_escaped_label() -> None:
    store = InMemoryStore()
    graph = fan_out_graph(Calls(), store, limit=8)
    await graph.ainvoke({}, {"configurable": {"thread_id": "a.b"}})
    assert await recorded_keys(store, "a%2Eb") == {str(item) for item in range(ITEMS)}
    assert await recorded_keys(store, "a") == set()


async def test_sigkill_mid_run_then_rerun_records_every_item_once(tmp_path: Path) -> None:
    items, limit, flush_every = 4_000, 50, 100
    store_path, checkpoints, log = tmp_path / "store.db", tmp_path / "ckpt.db", tmp_path / "log"
    thread_id = "crash"
    prefix = ".".join((*NAMESPACE_ROOT, thread_id, "fan"))
    seed = random.randrange(2**32)
    kill_after = random.Random(seed).randrange(1, items // 2)
    arguments = [store_path, checkpoints, log, thread_id, items, limit, flush_every]
    process = subprocess.Popen([sys.executable, str(WORKER), *map(str, arguments)])
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while count_records(store_path, prefix) < kill_after:
            assert process.poll() is None, f"the worker exited early (seed {seed})"
            assert loop.time() < deadline, f"no progress recorded (seed {seed})"
            await asyncio.sleep(0.002)  # polling interval, not synchronisation
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    started = {int(line) for line in log.read_text().split()}
    recorded = count_records(store_path, prefix)
    assert recorded >= kill_after

    calls = Calls()
    async with (
        AsyncSqliteStore.from_conn_string(str(store_path)) as store,
        AsyncSqliteSaver.from_conn_string(str(checkpoints)) as saver,
    ):

        async def work(item: int) -> int:
            calls.called.append(item)
            await asyncio.sleep(0)
            return item * 2

        graph = build_graph(work, limit=limit, flush_every=flush_every).compile(
            checkpointer=saver, store=store
        )
        state = await graph.ainvoke(None, {"configurable": {"thread_id": thread_id}})
    assert state["results"] == [item * 2 for item in range(items)]
    assert count_records(store_path, prefix) == items
    assert len(calls.called) == len(set(calls.called)) == items - recorded
    re_executed = started & set(calls.called)
    # Started before the kill but not recorded: in flight or not yet flushed.
    assert len(re_executed) == len(started) - recorded
    assert len(re_executed) <= 2 * (flush_every + limit), f"seed {seed}"
