"""The per-attempt deadline: asyncio.timeout's behaviour, on public asyncio APIs and one
shared timer per loop and timeout."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from act_operator_lib import _deadline
from act_operator_lib._deadline import DeadlineExceeded, deadline

T = TypeVar("T")


async def within(seconds: float, attempt: Callable[[], Awaitable[T]]) -> T:
    with deadline(seconds):
        return await attempt()


async def test_an_attempt_past_its_deadline_raises_deadline_exceeded_and_leaves_no_cancel():
    with pytest.raises(DeadlineExceeded) as caught:
        await within(0.01, lambda: asyncio.sleep(60))
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_an_attempt_within_its_deadline_returns_its_result():
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert await within(60, answer) == 42


async def test_a_timeout_error_the_attempt_raises_itself_passes_through_unchanged():
    async def fails() -> None:
        raise TimeoutError("the server's own")

    with pytest.raises(TimeoutError, match="the server's own") as caught:
        await within(60, fails)
    assert type(caught.value) is TimeoutError


async def test_a_cancellation_from_outside_stays_a_cancellation():
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.ensure_future(within(60, waits))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
async def test_attempts_sharing_a_timeout_are_each_cancelled_at_their_own_deadline():
    loop = asyncio.get_running_loop()
    ended: dict[int, float] = {}

    async def runs(number: int) -> None:
        await asyncio.sleep(number)
        try:
            await within(10, lambda: asyncio.sleep(60))
        except DeadlineExceeded:
            ended[number] = loop.time()

    await asyncio.gather(*(runs(number) for number in range(3)))
    assert ended == {0: 10, 1: 11, 2: 12}


@pytest.mark.looptime
async def test_a_slow_attempt_at_the_head_does_not_delay_or_lose_the_deadlines_behind_it():
    loop = asyncio.get_running_loop()
    started = loop.time()
    quick_ones = [within(10, lambda: asyncio.sleep(1)) for _ in range(200)]
    slow = asyncio.ensure_future(within(10, lambda: asyncio.sleep(60)))
    await asyncio.sleep(0)
    await asyncio.gather(*quick_ones)
    late = [asyncio.ensure_future(within(10, lambda: asyncio.sleep(60))) for _ in range(3)]
    with pytest.raises(DeadlineExceeded):
        await slow
    assert loop.time() - started == 10
    for task in late:
        with pytest.raises(DeadlineExceeded):
            await task
    assert loop.time() - started == 11


@pytest.mark.looptime
async def test_a_cancellation_arriving_together_with_the_deadline_stays_a_cancellation():
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(60)

    task = asyncio.ensure_future(within(5, waits))
    await started.wait()
    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + 5, task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


@pytest.mark.looptime
async def test_attempts_with_different_timeouts_on_one_loop_keep_their_own_deadlines():
    loop = asyncio.get_running_loop()
    ended: list[tuple[float, float]] = []

    async def runs(seconds: float) -> None:
        try:
            await within(seconds, lambda: asyncio.sleep(60))
        except DeadlineExceeded:
            ended.append((seconds, loop.time()))

    await asyncio.gather(runs(7), runs(3))
    assert ended == [(3, 3), (7, 7)]


async def test_timeouts_computed_per_call_do_not_grow_the_loop_s_lines_without_bound():
    async def answer() -> int:
        await asyncio.sleep(0)
        return 1

    results = [await within(10 + index / 1000, answer) for index in range(1_000)]
    assert results == [1] * 1_000
    lines = _deadline._lines[asyncio.get_running_loop()]
    assert len(lines) <= _deadline._MOST_LINES


async def test_a_running_attempt_keeps_its_line_when_idle_lines_are_dropped():
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.sleep(60)

    slow = asyncio.ensure_future(within(0.05, waits))
    await started.wait()
    for index in range(2 * _deadline._MOST_LINES):
        await within(10 + index / 1000, lambda: asyncio.sleep(0))
    with pytest.raises(DeadlineExceeded):
        await slow


async def test_entering_a_deadline_outside_a_task_is_refused():
    loop = asyncio.get_running_loop()
    scope = deadline(1, loop)
    outcome: list[BaseException] = []

    def outside() -> None:
        try:
            scope.__enter__()
        except RuntimeError as error:
            outcome.append(error)

    loop.call_soon(outside)
    await asyncio.sleep(0)
    assert "inside a task" in str(outcome[0])


def test_a_closed_loop_is_not_kept_alive_by_the_deadline_timer_it_left_armed():
    async def quick() -> None:
        with deadline(3600):
            await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(quick())
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None


def test_loops_in_two_threads_with_the_same_timeout_each_cancel_their_own_attempt():
    outcomes: list[str] = []

    def run() -> None:
        async def main() -> None:
            try:
                await within(0.05, lambda: asyncio.sleep(60))
            except DeadlineExceeded:
                outcomes.append("deadline")

        asyncio.run(main())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["deadline", "deadline"]
