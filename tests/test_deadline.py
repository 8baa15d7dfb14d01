"""The per-attempt deadline: asyncio.timeout's behaviour, on public asyncio APIs."""

from __future__ import annotations

import asyncio

import pytest

from act_operator_lib._deadline import DeadlineExceeded, within


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
