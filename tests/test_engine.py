"""What every fan-out (map_concurrent, as_completed, map_durable) does the same way.

LangGraph control flow always propagates, each item starts from the caller's context,
an error that is not an `Exception` stops the run at once, and progress ends with one
final report. Real graphs, a real checkpointer and a real store.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar
from typing import Any

import pytest
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, interrupt
from tests._fan_out_graphs import State, config, graph_of

from act_operator_lib import (
    AsyncBaseNode,
    ItemTimeoutError,
    as_completed,
    map_concurrent,
    map_durable,
)
from act_operator_lib.durable import NAMESPACE_ROOT


async def review(item: int) -> str:
    """Item 2 asks a human; the others are decided without one."""
    await asyncio.sleep(0)
    if item == 2:
        answer = interrupt(f"approve item {item}?")
        return f"{item}:{answer}"
    return f"{item}:auto"


# LangGraph control flow (interrupt) is never an item's result


class MapReview(AsyncBaseNode):
    async def execute(self, state: State) -> State:
        return {
            "results": await map_concurrent(review, state["items"], limit=2, return_exceptions=True)
        }


class StreamReview(AsyncBaseNode):
    async def execute(self, state: State) -> State:
        found: dict[int, Any] = {}
        async with as_completed(review, state["items"], limit=2, return_exceptions=True) as done:
            async for index, value in done:
                found[index] = value
        return {"results": [found[index] for index in sorted(found)]}


class DurableReview(AsyncBaseNode):
    def __init__(self) -> None:
        super().__init__()
        self.called: list[int] = []

    async def execute(self, state: State) -> State:
        async def counted(item: int) -> str:
            self.called.append(item)
            return await review(item)

        results = await map_durable(
            counted, state["items"], key=str, limit=4, return_exceptions=True
        )
        return {"results": results}


@pytest.mark.parametrize("node", [MapReview, StreamReview], ids=["map_concurrent", "as_completed"])
async def test_an_interrupt_in_an_item_pauses_the_graph_even_with_return_exceptions(
    node: type[AsyncBaseNode],
) -> None:
    graph = graph_of(node())
    run = config()
    first = await graph.ainvoke({"items": [0, 1, 2, 3]}, run)
    assert [pending.value for pending in first["__interrupt__"]] == ["approve item 2?"]
    assert "results" not in first


@pytest.mark.parametrize("node", [MapReview, StreamReview], ids=["map_concurrent", "as_completed"])
async def test_an_interrupted_item_gets_the_humans_answer_on_resume(
    node: type[AsyncBaseNode],
) -> None:
    graph = graph_of(node())
    run = config()
    await graph.ainvoke({"items": [0, 1, 2, 3]}, run)
    resumed = await graph.ainvoke(Command(resume="yes"), run)
    assert resumed["results"] == ["0:auto", "1:auto", "2:yes", "3:auto"]


async def test_map_durable_records_no_interrupt_and_resumes_with_the_answer() -> None:
    store = InMemoryStore()
    node = DurableReview()
    graph = graph_of(node, store=store)
    run = config()
    first = await graph.ainvoke({"items": [0, 1, 2, 3]}, run)
    assert "__interrupt__" in first
    recorded = await store.asearch(NAMESPACE_ROOT, limit=100)
    assert "2" not in {item.key for item in recorded}
    resumed = await graph.ainvoke(Command(resume="yes"), run)
    assert resumed["results"] == ["0:auto", "1:auto", "2:yes", "3:auto"]
    assert node.called.count(2) == 2


# Context variables: each item starts from the caller's context

request_id: ContextVar[str] = ContextVar("request_id", default="unset")


async def binds_its_own_id(item: int) -> str:
    """Reads the variable, then binds its own value (as structlog's bind_contextvars does)."""
    seen = request_id.get()
    request_id.set(f"item-{item}")
    await asyncio.sleep(0)
    return seen


async def test_map_concurrent_starts_each_item_from_the_callers_context() -> None:
    request_id.set("caller")
    seen = await map_concurrent(binds_its_own_id, range(5), limit=1)
    assert seen == ["caller"] * 5


async def test_as_completed_starts_each_item_from_the_callers_context() -> None:
    request_id.set("caller")
    async with as_completed(binds_its_own_id, range(5), limit=1) as done:
        seen = [value async for _, value in done]
    assert seen == ["caller"] * 5


async def test_as_completed_items_see_the_context_of_its_call_not_of_the_loop() -> None:
    request_id.set("at the call")
    stream = as_completed(binds_its_own_id, range(2), limit=1)
    request_id.set("at the loop")
    async with stream as done:
        seen = [value async for _, value in done]
    assert seen == ["at the call"] * 2


async def test_what_an_item_binds_does_not_reach_the_caller() -> None:
    request_id.set("caller")
    await map_concurrent(binds_its_own_id, range(3), limit=2)
    assert request_id.get() == "caller"


async def binds_then_waits(item: int) -> str:
    """Binds its own id, then (from item 1 on) waits for ever."""
    seen = request_id.get()
    request_id.set(f"item-{item}")
    if item >= 1:
        await asyncio.Event().wait()
    return seen


@pytest.mark.looptime
async def test_an_item_after_one_that_bound_a_variable_still_times_out() -> None:
    request_id.set("caller")
    results = await map_concurrent(
        binds_then_waits, range(2), limit=1, timeout=5, return_exceptions=True
    )
    assert results[0] == "caller"
    assert isinstance(results[1], ItemTimeoutError)
    assert results[1].index == 1


async def test_cancelling_a_run_reaches_an_item_after_one_that_bound_a_variable() -> None:
    reached: list[str] = []

    async def second_waits(item: int) -> None:
        request_id.set(f"item-{item}")
        if item == 1:
            try:
                started.set()
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                reached.append(request_id.get())
                raise

    started = asyncio.Event()
    run = asyncio.ensure_future(map_concurrent(second_waits, range(2), limit=1))
    await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert reached == ["item-1"]


async def test_an_item_after_one_that_bound_a_variable_runs_asyncio_code_in_its_context() -> None:
    async def child() -> str:
        return request_id.get()

    async def item_with_its_own_deadline_and_task(item: int) -> tuple[str, str, bool]:
        seen = request_id.get()
        request_id.set(f"item-{item}")
        timed_out = False
        try:
            async with asyncio.timeout(0):
                await asyncio.Event().wait()
        except TimeoutError:
            timed_out = True
        return seen, await asyncio.create_task(child()), timed_out

    request_id.set("caller")
    results = await map_concurrent(item_with_its_own_deadline_and_task, range(3), limit=1)
    assert results == [("caller", f"item-{item}", True) for item in range(3)]


# An error that is not an Exception stops the run at once


class Stopper:
    """Item 0 fails with pytest.fail() once item 1 is running; other items are counted."""

    def __init__(self) -> None:
        self.second_running = asyncio.Event()
        self.release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished: list[int] = []
        self.cancelled: list[int] = []

    async def __call__(self, item: int) -> int:
        if item == 0:
            await self.second_running.wait()
            # Release item 1 in the same step: only a run stopped at once cancels it.
            self.release.set_result(None)
            pytest.fail("stop everything")
        if item == 1:
            self.second_running.set()
            try:
                await self.release
            except asyncio.CancelledError:
                self.cancelled.append(item)
                raise
        self.finished.append(item)
        return item


async def test_a_base_exception_from_an_item_stops_map_concurrent_at_once() -> None:
    stopper = Stopper()
    with pytest.raises(pytest.fail.Exception, match="stop everything"):
        await map_concurrent(stopper, range(10), limit=2, return_exceptions=True)
    assert stopper.finished == []
    assert stopper.cancelled == [1]


async def test_a_base_exception_from_an_item_stops_as_completed_at_once() -> None:
    stopper = Stopper()

    async def consume() -> None:
        async with as_completed(stopper, range(10), limit=2) as done:
            async for _ in done:
                pass

    with pytest.raises(pytest.fail.Exception, match="stop everything"):
        await consume()
    assert stopper.finished == []
    assert stopper.cancelled == [1]


# Progress: one final report


class Progressing(AsyncBaseNode):
    def __init__(self, stream: bool) -> None:
        super().__init__()
        self.stream = stream

    async def execute(self, state: State) -> State:
        async def one_second(item: int) -> int:
            await asyncio.sleep(1)
            return item

        if self.stream:
            async with as_completed(one_second, state["items"], limit=1, progress=True) as done:
                results = [value async for _, value in done]
        else:
            results = await map_concurrent(one_second, state["items"], limit=1, progress=True)
        return {"results": results}


@pytest.mark.looptime
@pytest.mark.parametrize("stream", [False, True], ids=["map_concurrent", "as_completed"])
async def test_progress_sends_its_final_report_once(stream: bool) -> None:
    graph = graph_of(Progressing(stream))
    chunks = [
        chunk async for chunk in graph.astream({"items": [0, 1, 2]}, config(), stream_mode="custom")
    ]
    assert [chunk["done"] for chunk in chunks] == [0, 1, 2, 3]


@pytest.mark.parametrize("stream", [False, True], ids=["map_concurrent", "as_completed"])
async def test_progress_over_no_items_reports_once(stream: bool) -> None:
    graph = graph_of(Progressing(stream))
    chunks = [chunk async for chunk in graph.astream({"items": []}, config(), stream_mode="custom")]
    assert chunks == [{"done": 0, "total": 0}]
