"""run_sync / run_async: bounded threads, contextvars, a loop already running."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any, TypedDict

import pytest
from langgraph.config import get_stream_writer
from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseNode
from act_operator_lib.bridge import run_async, run_sync, set_thread_limit, thread_statistics

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


class State(TypedDict, total=False):
    value: Any


def graph_of(node: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    return builder.compile()


def emit_from_a_thread(value: str) -> str:
    get_stream_writer()({"from_thread": value})
    return threading.current_thread().name


async def answer() -> int:
    await asyncio.sleep(0)
    return 42


async def fail() -> None:
    await asyncio.sleep(0)
    raise LookupError("from the coroutine")


async def read_request_id() -> str:
    await asyncio.sleep(0)
    return REQUEST_ID.get()


async def test_run_sync_returns_the_function_result() -> None:
    assert await run_sync(sum, [1, 2, 3]) == 6


async def test_run_sync_runs_in_a_library_worker_thread() -> None:
    name = await run_sync(lambda: threading.current_thread().name)
    assert name.startswith("act-operator-run-sync")


async def test_run_sync_keeps_contextvars() -> None:
    REQUEST_ID.set("abc")
    assert await run_sync(REQUEST_ID.get) == "abc"


async def test_run_sync_passes_keyword_arguments() -> None:
    assert await run_sync(int, "ff", base=16) == 255


async def test_run_sync_stream_writer_reaches_the_graph_custom_stream() -> None:
    class Mixed(AsyncBaseNode):
        async def execute(self, state: State) -> State:
            return {"value": await run_sync(emit_from_a_thread, "hi")}

    chunks = [chunk async for chunk in graph_of(Mixed()).astream({}, stream_mode="custom")]
    assert chunks == [{"from_thread": "hi"}]


async def test_run_sync_never_exceeds_the_thread_limit() -> None:
    set_thread_limit(2)
    running = 0
    most = 0
    lock = threading.Lock()
    pair = threading.Barrier(2)

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        pair.wait()
        with lock:
            running -= 1

    try:
        await asyncio.gather(*(run_sync(work) for _ in range(6)))
        assert thread_statistics().limit == 2
    finally:
        set_thread_limit(16)
    assert most == 2


def test_set_thread_limit_rejects_zero() -> None:
    with pytest.raises(ValueError, match="limit"):
        set_thread_limit(0)


def test_run_async_returns_the_result_without_a_loop() -> None:
    assert run_async(answer()) == 42


def test_run_async_raises_the_coroutine_exception() -> None:
    with pytest.raises(LookupError, match="from the coroutine"):
        run_async(fail())


def test_run_async_keeps_contextvars() -> None:
    context = contextvars.copy_context()
    context.run(REQUEST_ID.set, "xyz")
    assert context.run(run_async, read_request_id()) == "xyz"


async def test_run_async_works_while_a_loop_runs_in_this_thread() -> None:
    def sync_callback() -> int:
        return run_async(answer())

    assert sync_callback() == 42


async def test_run_async_works_from_a_loop_call_soon_callback() -> None:
    loop = asyncio.get_running_loop()
    result: asyncio.Future[int] = loop.create_future()
    loop.call_soon(lambda: result.set_result(run_async(answer())))
    assert await result == 42


def test_run_async_nested_on_its_own_loop_thread() -> None:
    async def outer() -> int:
        return run_async(answer()) + 1

    assert run_async(outer()) == 43


def test_run_async_timeout_cancels_and_runs_cleanup() -> None:
    cleaned = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    with pytest.raises(TimeoutError, match="run_async"):
        run_async(forever(), timeout=0.05)
    assert cleaned.is_set()


def test_run_async_rejects_a_coroutine_function() -> None:
    with pytest.raises(TypeError, match="needs a coroutine"):
        run_async(answer)  # type: ignore[arg-type]


async def test_sync_node_runs_async_code_inside_ainvoke() -> None:
    class Legacy(BaseNode):
        def execute(self, state: State) -> State:
            return {"value": run_async(answer())}

    assert (await graph_of(Legacy()).ainvoke({}))["value"] == 42


def test_sync_node_runs_async_code_inside_invoke() -> None:
    class Legacy(BaseNode):
        def execute(self, state: State) -> State:
            return {"value": run_async(answer())}

    assert graph_of(Legacy()).invoke({})["value"] == 42


def test_run_async_coroutine_sees_the_graph_stream_writer() -> None:
    async def emit() -> None:
        get_stream_writer()({"from_bridge": True})

    class Legacy(BaseNode):
        def execute(self, state: State) -> State:
            run_async(emit())
            return {}

    assert list(graph_of(Legacy()).stream({}, stream_mode="custom")) == [{"from_bridge": True}]


def test_run_async_refuses_a_future_and_says_to_pass_a_coroutine():
    import concurrent.futures

    with pytest.raises(TypeError, match=r"got Future; futures and tasks belong to the loop"):
        run_async(concurrent.futures.Future())  # type: ignore[arg-type]
