"""The concurrency toolkit: map_concurrent, as_completed, first_completed, gather_within.

Durations are simulated with ``asyncio.sleep`` under looptime's virtual clock
(``@pytest.mark.looptime``), so they cost no real time; ordering between tasks is
forced with events and counters, never with sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import TimeoutPolicy

from act_operator_lib import AsyncBaseNode, FunctionNotAsyncError, ItemTimeoutError
from act_operator_lib.concurrency import (
    GatherResult,
    as_completed,
    first_completed,
    gather_within,
    map_concurrent,
)
from act_operator_lib.limits import LimiterStatistics, RateLimiter
from act_operator_lib.limits._base import Limiter


async def double(item: int) -> int:
    await asyncio.sleep(0)
    return item * 2


async def fail_on_three(item: int) -> int:
    await asyncio.sleep(0)
    if item == 3:
        raise ValueError(f"item {item} is bad")
    return item


class InFlight:
    """Counts calls running at once, and which were cancelled."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.cancelled: list[int] = []
        self.all_started = asyncio.Event()
        self.expected = 0
        self.started = 0

    async def forever(self, item: int) -> int:
        self.running += 1
        self.started += 1
        if self.started == self.expected:
            self.all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(item)
            raise
        finally:
            self.running -= 1
        return item


class CountingLimiter(Limiter):
    """A limiter that grants everything and counts how often it was asked."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1

    async def release(self) -> None:
        pass

    def statistics(self) -> LimiterStatistics:  # pragma: no cover - not used here
        raise NotImplementedError


class Pulled:
    """A generator of ``count`` items that counts how many were taken."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for item in range(self.count):
            self.pulled += 1
            yield item


async def numbers(count: int) -> AsyncIterator[int]:
    for item in range(count):
        await asyncio.sleep(0)
        yield item


def broken_after(count: int) -> Iterator[int]:
    yield from range(count)
    raise OSError("the source broke")


# map_concurrent: results


@pytest.mark.looptime
async def test_map_concurrent_returns_results_in_input_order() -> None:
    async def later_for_earlier(item: int) -> int:
        await asyncio.sleep(10 - item)
        return item

    assert await map_concurrent(later_for_earlier, range(10), limit=10) == list(range(10))


async def test_map_concurrent_of_no_items_returns_an_empty_list() -> None:
    assert await map_concurrent(double, [], limit=5) == []


async def test_map_concurrent_accepts_an_async_iterable() -> None:
    assert await map_concurrent(double, numbers(50), limit=7) == [i * 2 for i in range(50)]


async def test_map_concurrent_accepts_a_limit_above_the_item_count() -> None:
    assert await map_concurrent(double, range(3), limit=1000) == [0, 2, 4]


# map_concurrent: bounds


@pytest.mark.looptime
async def test_map_concurrent_never_runs_more_than_limit_calls_at_once() -> None:
    running = 0
    peak = 0

    async def tracked(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(item % 7)
        running -= 1
        return item

    await map_concurrent(tracked, range(500), limit=13)
    assert peak == 13


async def test_map_concurrent_pulls_at_most_limit_items_ahead_of_their_results() -> None:
    source = Pulled(10_000)
    finished = 0
    ahead = 0

    async def tracked(item: int) -> int:
        nonlocal finished, ahead
        ahead = max(ahead, source.pulled - finished)
        await asyncio.sleep(0)
        finished += 1
        return item

    await map_concurrent(tracked, source, limit=20)
    assert source.pulled == 10_000
    assert ahead <= 20


async def test_map_concurrent_keeps_memory_beyond_the_results_small_for_a_long_generator() -> None:
    async def nothing(item: int) -> None:
        await asyncio.sleep(0)

    tracemalloc.start()
    try:
        results = await map_concurrent(nothing, (i for i in range(10_000)), limit=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One coroutine per item (the guide's gather + Semaphore) would take megabytes.
    assert peak - sys.getsizeof(results) < 200_000


async def test_map_concurrent_works_with_the_library_rate_limiter() -> None:
    limiter = RateLimiter(1000, per=1)
    assert await map_concurrent(double, range(30), limit=30, rate_limiter=limiter) == [
        item * 2 for item in range(30)
    ]


async def test_map_concurrent_acquires_the_rate_limiter_before_each_call() -> None:
    limiter = CountingLimiter()
    await map_concurrent(double, range(25), limit=4, rate_limiter=limiter)
    assert limiter.acquired == 25


# map_concurrent: failures


async def test_map_concurrent_raises_the_first_failure_itself() -> None:
    failure = ValueError("boom")

    async def fail(item: int) -> int:
        raise failure

    with pytest.raises(ValueError, match="boom") as caught:
        await map_concurrent(fail, range(1), limit=1)
    assert caught.value is failure


async def test_map_concurrent_cancels_and_awaits_calls_in_flight_on_the_first_failure() -> None:
    tracker = InFlight()
    tracker.expected = 4

    async def call(item: int) -> int:
        if item == 4:
            await tracker.all_started.wait()
            raise ValueError("item 4 failed")
        return await tracker.forever(item)

    with pytest.raises(ValueError, match="item 4 failed"):
        await map_concurrent(call, range(100), limit=5)
    assert sorted(tracker.cancelled) == [0, 1, 2, 3]
    assert tracker.running == 0


async def test_map_concurrent_with_return_exceptions_puts_each_exception_at_its_index() -> None:
    results = await map_concurrent(fail_on_three, range(5), limit=2, return_exceptions=True)
    assert results[:3] == [0, 1, 2]
    assert isinstance(results[3], ValueError)
    assert results[4] == 4


async def test_map_concurrent_raises_a_failure_of_the_iterable_itself() -> None:
    with pytest.raises(OSError, match="the source broke"):
        await map_concurrent(double, broken_after(3), limit=2)


async def test_map_concurrent_with_return_exceptions_puts_an_iterable_failure_at_its_index() -> (
    None
):
    results = await map_concurrent(double, broken_after(3), limit=2, return_exceptions=True)
    assert results[:3] == [0, 2, 4]
    assert isinstance(results[3], OSError)
    assert len(results) == 4


async def test_map_concurrent_puts_a_failure_of_an_async_iterable_at_its_index() -> None:
    async def broken() -> AsyncIterator[int]:
        yield 1
        raise OSError("the stream broke")

    results = await map_concurrent(double, broken(), limit=3, return_exceptions=True)
    assert results[0] == 2
    assert isinstance(results[1], OSError)


# map_concurrent: timeouts


@pytest.mark.looptime
async def test_map_concurrent_fails_a_slow_item_with_item_timeout_error() -> None:
    async def slow_two(item: int) -> int:
        await asyncio.sleep(100 if item == 2 else 1)
        return item

    with pytest.raises(ItemTimeoutError) as caught:
        await map_concurrent(slow_two, range(4), limit=4, timeout=5)
    assert caught.value.index == 2
    assert caught.value.timeout == 5
    assert isinstance(caught.value, TimeoutError)


@pytest.mark.looptime
async def test_map_concurrent_with_return_exceptions_puts_a_timeout_at_its_index() -> None:
    async def slow_two(item: int) -> int:
        await asyncio.sleep(100 if item == 2 else 1)
        return item

    results = await map_concurrent(slow_two, range(4), limit=2, timeout=5, return_exceptions=True)
    assert [results[0], results[1], results[3]] == [0, 1, 3]
    assert isinstance(results[2], ItemTimeoutError)


async def test_map_concurrent_lets_an_items_own_timeout_error_through_unchanged() -> None:
    async def own_timeout(item: int) -> int:
        raise TimeoutError("upstream said so")

    with pytest.raises(TimeoutError, match="upstream said so") as caught:
        await map_concurrent(own_timeout, range(1), limit=1, timeout=60)
    assert not isinstance(caught.value, ItemTimeoutError)


# map_concurrent: cancellation


async def test_cancelling_map_concurrent_cancels_and_awaits_calls_in_flight() -> None:
    tracker = InFlight()
    tracker.expected = 3
    run = asyncio.create_task(map_concurrent(tracker.forever, range(10), limit=3))
    await tracker.all_started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert sorted(tracker.cancelled) == [0, 1, 2]
    assert tracker.running == 0


@pytest.mark.looptime
async def test_a_timeout_around_map_concurrent_cancels_calls_in_flight() -> None:
    tracker = InFlight()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(5):
            await map_concurrent(tracker.forever, range(10), limit=3)
    assert sorted(tracker.cancelled) == [0, 1, 2]


# map_concurrent: arguments


@pytest.mark.parametrize("limit", [0, -1])
async def test_map_concurrent_rejects_a_limit_below_one(limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await map_concurrent(double, range(3), limit=limit)


@pytest.mark.parametrize("timeout", [0, -1.5])
async def test_map_concurrent_rejects_a_timeout_of_zero_or_less(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await map_concurrent(double, range(3), limit=2, timeout=timeout)


async def test_map_concurrent_rejects_a_function_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="fn"):
        await map_concurrent(42, range(3), limit=2)  # type: ignore[call-overload]


def triple_now(item: int) -> int:
    return item * 3


@pytest.mark.parametrize("return_exceptions", [False, True])
@pytest.mark.parametrize("timeout", [None, 5.0])
async def test_map_concurrent_stops_at_a_sync_function_whatever_return_exceptions_says(
    return_exceptions: bool, timeout: float | None
) -> None:
    calls: list[int] = []

    def record(item: int) -> int:
        calls.append(item)
        return item

    with pytest.raises(FunctionNotAsyncError, match=r"fn=.*record\(\) returned int"):
        await map_concurrent(
            record,  # type: ignore[arg-type]
            range(1_000),
            limit=4,
            timeout=timeout,
            return_exceptions=return_exceptions,
        )
    assert len(calls) <= 4  # each worker's first call, not one per item


async def test_as_completed_stops_at_a_sync_function() -> None:
    seen: list[tuple[int, object]] = []

    async def consume() -> None:
        async for pair in as_completed(triple_now, range(10), limit=2, return_exceptions=True):  # type: ignore[arg-type]
            seen.append(pair)

    with pytest.raises(FunctionNotAsyncError, match="async def"):
        await consume()
    assert seen == []


async def test_map_concurrent_accepts_a_sync_callable_that_returns_an_awaitable() -> None:
    assert await map_concurrent(lambda item: double(item), [1, 2, 3], limit=2) == [2, 4, 6]


async def test_map_concurrent_rejects_items_that_are_not_iterable() -> None:
    with pytest.raises(TypeError, match="items"):
        await map_concurrent(double, 42, limit=2)  # type: ignore[call-overload]


# map_concurrent: progress in a LangGraph node


class Items(TypedDict, total=False):
    items: list[int]
    results: list[int]


class MapWithProgress(AsyncBaseNode):
    async def execute(self, state: Items) -> Items:
        async def slow_double(item: int) -> int:
            await asyncio.sleep(0.05)
            return item * 2

        results = await map_concurrent(slow_double, state["items"], limit=2, progress=True)
        return {"results": results}


def one_node_graph(node: AsyncBaseNode, timeout: TimeoutPolicy | None = None) -> Any:
    builder = StateGraph(Items)
    builder.add_node("work", node, timeout=timeout)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile()


@pytest.mark.looptime
async def test_map_concurrent_progress_streams_done_and_total_from_a_node() -> None:
    graph = one_node_graph(MapWithProgress())
    chunks = [
        chunk async for chunk in graph.astream({"items": list(range(20))}, stream_mode="custom")
    ]
    assert chunks[0] == {"done": 0, "total": 20}
    assert chunks[-1] == {"done": 20, "total": 20}
    done = [chunk["done"] for chunk in chunks]
    assert done == sorted(done)
    assert 2 < len(chunks) < 20


async def test_map_concurrent_progress_keeps_a_node_with_an_idle_timeout_alive() -> None:
    # LangGraph measures idle time on the real clock (time.monotonic), so this test
    # runs in real time: 20 items one at a time, 0.04 s each, is 0.8 s of work,
    # twice the idle timeout; progress heartbeats come about every 0.1 s.
    class SlowSteps(AsyncBaseNode):
        async def execute(self, state: Items) -> Items:
            async def step(item: int) -> int:
                await asyncio.sleep(0.04)
                return item

            return {"results": await map_concurrent(step, state["items"], limit=1, progress=True)}

    graph = one_node_graph(SlowSteps(), TimeoutPolicy(idle_timeout=0.4, refresh_on="heartbeat"))
    state = await graph.ainvoke({"items": list(range(20))})
    assert state["results"] == list(range(20))


async def test_map_concurrent_progress_total_is_none_for_an_async_iterable() -> None:
    class FromStream(AsyncBaseNode):
        async def execute(self, state: Items) -> Items:
            return {"results": await map_concurrent(double, numbers(5), limit=2, progress=True)}

    graph = one_node_graph(FromStream())
    chunks = [chunk async for chunk in graph.astream({"items": []}, stream_mode="custom")]
    assert chunks[0] == {"done": 0, "total": None}
    assert chunks[-1] == {"done": 5, "total": None}


# as_completed


@pytest.mark.looptime
async def test_as_completed_yields_index_and_result_in_the_order_calls_finish() -> None:
    async def later_for_earlier(item: int) -> str:
        await asyncio.sleep(10 - item)
        return f"r{item}"

    async with as_completed(later_for_earlier, range(4), limit=4) as finished:
        pairs = [pair async for pair in finished]
    assert pairs == [(3, "r3"), (2, "r2"), (1, "r1"), (0, "r0")]


async def test_leaving_as_completed_early_cancels_and_awaits_calls_in_flight() -> None:
    tracker = InFlight()

    async def first_is_quick(item: int) -> int:
        if item == 0:
            await asyncio.sleep(0)
            return item
        return await tracker.forever(item)

    async with as_completed(first_is_quick, range(100), limit=4) as finished:
        async for index, _ in finished:
            assert index == 0
            break
    assert sorted(tracker.cancelled) == [1, 2, 3, 4]
    assert tracker.running == 0


async def test_as_completed_starts_no_call_before_the_first_iteration() -> None:
    source = Pulled(10)
    finished = as_completed(double, source, limit=3)
    await asyncio.sleep(0)
    assert source.pulled == 0
    await finished.aclose()


async def test_as_completed_raises_the_first_failure_from_the_loop() -> None:
    seen: list[int] = []

    async def consume() -> None:
        async with as_completed(fail_on_three, range(10), limit=1) as finished:
            async for index, _ in finished:
                seen.append(index)

    with pytest.raises(ValueError, match="item 3 is bad"):
        await consume()
    assert seen == [0, 1, 2]


async def test_as_completed_with_return_exceptions_yields_the_exception_at_its_index() -> None:
    async with as_completed(fail_on_three, range(5), limit=2, return_exceptions=True) as finished:
        pairs = dict([pair async for pair in finished])
    assert sorted(pairs) == [0, 1, 2, 3, 4]
    assert isinstance(pairs[3], ValueError)


@pytest.mark.looptime
async def test_as_completed_holds_workers_back_while_the_consumer_is_slow() -> None:
    source = Pulled(1000)
    taken_ahead = 0
    async with as_completed(double, source, limit=5) as finished:
        consumed = 0
        async for _ in finished:
            consumed += 1
            await asyncio.sleep(1)  # a slow loop body, not synchronisation
            taken_ahead = max(taken_ahead, source.pulled - consumed)
            if consumed == 50:
                break
    # Up to `limit` results queued plus `limit` calls finished or running.
    assert taken_ahead <= 2 * 5 + 1


async def test_cancelling_the_consumer_of_as_completed_cancels_calls_in_flight() -> None:
    tracker = InFlight()
    tracker.expected = 3

    async def consume() -> None:
        async with as_completed(tracker.forever, range(10), limit=3) as finished:
            async for _ in finished:
                pass

    consumer = asyncio.create_task(consume())
    await tracker.all_started.wait()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert sorted(tracker.cancelled) == [0, 1, 2]


def test_as_completed_rejects_a_limit_below_one_when_called() -> None:
    with pytest.raises(ValueError, match="limit"):
        as_completed(double, range(3), limit=0)


# first_completed


@pytest.mark.looptime
async def test_first_completed_returns_the_first_success_and_cancels_the_rest() -> None:
    cancelled: list[str] = []

    async def op(name: str, seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise
        return name

    assert await first_completed(op("slow", 3), op("fast", 1), op("medium", 2)) == "fast"
    assert sorted(cancelled) == ["medium", "slow"]


@pytest.mark.looptime
async def test_first_completed_passes_over_failures_to_the_next_success() -> None:
    async def fail_fast() -> str:
        await asyncio.sleep(1)
        raise ConnectionError("primary down")

    async def succeed_later() -> str:
        await asyncio.sleep(2)
        return "mirror"

    assert await first_completed(fail_fast(), succeed_later()) == "mirror"


async def test_first_completed_raises_an_exception_group_when_all_fail() -> None:
    async def fail(message: str) -> str:
        raise ConnectionError(message)

    with pytest.raises(ExceptionGroup) as caught:
        await first_completed(fail("a"), fail("b"))
    assert [str(error) for error in caught.value.exceptions] == ["a", "b"]


async def test_first_completed_accepts_tasks_and_futures() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    future.set_result("future")
    never = asyncio.create_task(asyncio.Event().wait())
    assert await first_completed(never, future) == "future"
    assert never.cancelled()


async def test_first_completed_rejects_a_non_awaitable_and_closes_the_coroutines() -> None:
    coroutine = double(1)
    with pytest.raises(TypeError, match="argument 1"):
        await first_completed(coroutine, 42)  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


async def test_cancelling_first_completed_cancels_every_awaitable() -> None:
    tracker = InFlight()
    tracker.expected = 2
    race = asyncio.create_task(first_completed(tracker.forever(1), tracker.forever(2)))
    await tracker.all_started.wait()
    race.cancel()
    with pytest.raises(asyncio.CancelledError):
        await race
    assert sorted(tracker.cancelled) == [1, 2]


# gather_within


@pytest.mark.looptime
async def test_gather_within_sorts_awaitables_into_results_errors_and_unfinished() -> None:
    async def after(seconds: float, value: str) -> str:
        await asyncio.sleep(seconds)
        if value == "error":
            raise LookupError(value)
        return value

    outcome = await gather_within(
        {"user": after(1, "ada"), "posts": after(1, "error"), "news": after(9, "late")},
        timeout=2,
    )
    assert outcome.results == {"user": "ada"}
    assert list(outcome.errors) == ["posts"]
    assert isinstance(outcome.errors["posts"], LookupError)
    assert outcome.unfinished == ("news",)
    assert not outcome.complete


@pytest.mark.looptime
async def test_gather_within_keys_positional_awaitables_by_index() -> None:
    outcome = await gather_within(double(1), asyncio.sleep(10), double(2), timeout=1)
    assert outcome.results == {0: 2, 2: 4}
    assert outcome.unfinished == (1,)


@pytest.mark.looptime
async def test_gather_within_cancels_and_awaits_the_unfinished() -> None:
    tracker = InFlight()
    await gather_within(tracker.forever(1), tracker.forever(2), timeout=1)
    assert sorted(tracker.cancelled) == [1, 2]
    assert tracker.running == 0


@pytest.mark.looptime
async def test_gather_within_returns_as_soon_as_everything_finished() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcome = await gather_within(asyncio.sleep(1, "a"), asyncio.sleep(2, "b"), timeout=60)
    assert outcome.complete
    assert loop.time() - started < 60  # virtual clock: it did not wait for the deadline


async def test_gather_within_rejects_a_timeout_of_zero() -> None:
    with pytest.raises(ValueError, match="timeout"):
        await gather_within(timeout=0)


async def test_cancelling_gather_within_cancels_every_awaitable() -> None:
    tracker = InFlight()
    tracker.expected = 2
    gathering = asyncio.create_task(
        gather_within(tracker.forever(1), tracker.forever(2), timeout=3600)
    )
    await tracker.all_started.wait()
    gathering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gathering
    assert sorted(tracker.cancelled) == [1, 2]


# The guide's samples, rewritten


class Profile(TypedDict, total=False):
    user_id: int
    user: dict[str, int]
    posts: list[str]
    comments: list[str]
    first_result: str
    completed: dict[str, str]
    incomplete: list[str]
    results: list[Any]


class GatherNode(AsyncBaseNode):
    """The guide's GatherNode: three fetches at once, now with a deadline."""

    async def execute(self, state: Profile) -> Profile:
        user_id = state["user_id"]
        outcome: GatherResult[str, Any] = await gather_within(
            {
                "user": self.fetch_user(user_id),
                "posts": self.fetch_posts(user_id),
                "comments": self.fetch_comments(user_id),
            },
            timeout=5,
        )
        return {
            "user": outcome.results["user"],
            "posts": outcome.results["posts"],
            "comments": outcome.results["comments"],
        }

    async def fetch_user(self, user_id: int) -> dict[str, int]:
        await asyncio.sleep(1)
        return {"id": user_id}

    async def fetch_posts(self, user_id: int) -> list[str]:
        await asyncio.sleep(1)
        return ["post"]

    async def fetch_comments(self, user_id: int) -> list[str]:
        await asyncio.sleep(1)
        return []


def profile_graph(node: AsyncBaseNode) -> Any:
    builder = StateGraph(Profile)
    builder.add_node("work", node)
    builder.add_edge(START, "work")
    builder.add_edge("work", END)
    return builder.compile()


@pytest.mark.looptime
async def test_guide_gather_node_runs_in_a_graph_with_gather_within() -> None:
    state = await profile_graph(GatherNode()).ainvoke({"user_id": 7})
    assert state["user"] == {"id": 7}
    assert state["posts"] == ["post"]


class WaitNode(AsyncBaseNode):
    """The guide's WaitNode (FIRST_COMPLETED): losers are now cancelled *and awaited*."""

    async def execute(self, state: Profile) -> Profile:
        return {"first_result": await first_completed(self.op(0.1), self.op(0.5), self.op(1))}

    async def op(self, seconds: float) -> str:
        await asyncio.sleep(seconds)
        return f"after {seconds}"


@pytest.mark.looptime
async def test_guide_wait_node_runs_in_a_graph_with_first_completed() -> None:
    state = await profile_graph(WaitNode()).ainvoke({"user_id": 1})
    assert state["first_result"] == "after 0.1"


class WaitTimeoutNode(AsyncBaseNode):
    """The guide's WaitTimeoutNode / TimeoutHandlingNode: results by name, no leak."""

    async def execute(self, state: Profile) -> Profile:
        outcome = await gather_within(
            {"op1": self.op(1.5, "op1"), "op2": self.op(1.0, "op2"), "op3": self.op(3, "op3")},
            timeout=2,
        )
        return {"completed": outcome.results, "incomplete": list(outcome.unfinished)}

    async def op(self, seconds: float, name: str) -> str:
        await asyncio.sleep(seconds)
        return name


@pytest.mark.looptime
async def test_guide_wait_timeout_node_runs_in_a_graph_with_gather_within() -> None:
    state = await profile_graph(WaitTimeoutNode()).ainvoke({"user_id": 1})
    assert state["completed"] == {"op1": "op1", "op2": "op2"}
    assert state["incomplete"] == ["op3"]


class SemaphoreNode(AsyncBaseNode):
    """The guide's SemaphoreNode / RateLimitedAPINode: no coroutine per item up front."""

    def __init__(self, max_concurrent: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_concurrent = max_concurrent

    async def execute(self, state: Items) -> Items:
        results = await map_concurrent(
            self.process_item,
            state["items"],
            limit=self.max_concurrent,
            return_exceptions=True,
        )
        return {"results": [result for result in results if not isinstance(result, Exception)]}

    async def process_item(self, item: int) -> int:
        await asyncio.sleep(0.1)
        if item % 10 == 9:
            raise ConnectionError(f"item {item}")
        return item


@pytest.mark.looptime
async def test_guide_semaphore_node_runs_in_a_graph_with_map_concurrent() -> None:
    state = await one_node_graph(SemaphoreNode(max_concurrent=5)).ainvoke(
        {"items": list(range(30))}
    )
    assert state["results"] == [item for item in range(30) if item % 10 != 9]


class TaskGroupNode(AsyncBaseNode):
    """The guide's TaskGroupNode: all succeed, or the first failure cancels the rest."""

    async def execute(self, state: Items) -> Items:
        async def run(operation: Any) -> Any:
            return await operation()

        results = await map_concurrent(
            run, [self.operation1, self.operation2, self.operation3], limit=3
        )
        return {"results": results}

    async def operation1(self) -> str:
        await asyncio.sleep(0.1)
        return "result1"

    async def operation2(self) -> str:
        await asyncio.sleep(0.2)
        return "result2"

    async def operation3(self) -> str:
        await asyncio.sleep(0.3)
        return "result3"


@pytest.mark.looptime
async def test_guide_task_group_node_runs_in_a_graph_with_map_concurrent() -> None:
    state = await one_node_graph(TaskGroupNode()).ainvoke({"items": []})
    assert state["results"] == ["result1", "result2", "result3"]


@pytest.mark.looptime
async def test_map_concurrent_does_not_wait_for_the_slowest_item_of_a_batch() -> None:
    finished: list[int] = []

    async def process(item: int) -> int:
        await asyncio.sleep(10 if item == 0 else 1)
        finished.append(item)
        return item

    # The guide's batching (groups of 10 through gather) would finish items 10-19
    # only after item 0; a pool of 10 keeps nine slots busy meanwhile.
    await map_concurrent(process, range(20), limit=10)
    assert finished[-1] == 0
