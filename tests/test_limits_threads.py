"""In-process limiters shared by event loops running in two threads.

A compiled graph is often run with ``asyncio.run`` per job in worker threads; the
limiters of its nodes (``max_concurrency=N`` builds one per node instance) are then
shared by several loops. A waiter must be woken on its own loop: resolved from
another thread, its loop would sleep on. Each wait here has a deadline, so a lost
wake-up fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from act_operator_lib import ConcurrencyLimiter, RateLimiter

DEADLINE = 10.0
"""Seconds a woken waiter may take; far above the real wait, so only a lost wake-up hits it."""


def run_in_threads(*jobs: Callable[[], Coroutine[Any, Any, None]]) -> list[BaseException]:
    """Run each job under its own ``asyncio.run`` in its own thread; return their errors."""
    errors: list[BaseException] = []

    def run(job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            asyncio.run(job())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


async def wait_for_event(event: threading.Event) -> None:
    """Wait for another thread without blocking this loop."""
    if not await asyncio.to_thread(event.wait, DEADLINE):
        raise TimeoutError("the other thread never got there")


def test_a_concurrency_permit_released_on_one_loop_wakes_a_waiter_on_another() -> None:
    limiter = ConcurrencyLimiter(1)
    held = threading.Event()
    waiting = threading.Event()
    order: list[str] = []

    async def holder() -> None:
        await limiter.acquire()
        held.set()
        await wait_for_event(waiting)
        order.append("released")
        await limiter.release()

    async def waiter() -> None:
        await wait_for_event(held)
        acquiring = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        waiting.set()
        async with asyncio.timeout(DEADLINE):
            await acquiring
        order.append("acquired")
        await limiter.release()

    assert run_in_threads(holder, waiter) == []
    assert order == ["released", "acquired"]
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting, statistics.granted) == (0, 0, 2)


def test_a_concurrency_limiter_holds_its_limit_across_loops_in_threads() -> None:
    limiter = ConcurrencyLimiter(2)
    lock = threading.Lock()
    inside = most = 0

    async def worker() -> None:
        nonlocal inside, most

        async def call() -> None:
            nonlocal inside, most
            async with limiter:
                with lock:
                    inside += 1
                    most = max(most, inside)
                await asyncio.sleep(0)
                with lock:
                    inside -= 1

        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*(call() for _ in range(200)))

    assert run_in_threads(worker, worker, worker) == []
    assert most <= 2
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting, statistics.granted) == (0, 0, 600)


def test_a_rate_limiter_turn_passed_on_one_loop_wakes_a_waiter_on_another() -> None:
    limiter = RateLimiter(20)
    first_waiting = threading.Event()
    second_granted = threading.Event()
    order: list[str] = []

    async def first() -> None:
        await limiter.acquire()
        acquiring = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        first_waiting.set()
        await acquiring
        order.append("first")
        # Keep this loop alive until the other caller is through: its wake-up must
        # not depend on this loop.
        await wait_for_event(second_granted)

    async def second() -> None:
        await wait_for_event(first_waiting)
        async with asyncio.timeout(DEADLINE):
            await limiter.acquire()
        order.append("second")
        second_granted.set()

    assert run_in_threads(first, second) == []
    assert order == ["first", "second"]
    assert limiter.statistics().granted == 3


def test_a_rate_limiter_serves_waiters_of_loops_in_threads_within_its_window() -> None:
    limiter = RateLimiter(20, per=0.1)
    in_window: list[int] = []

    async def worker() -> None:
        async def call() -> None:
            await limiter.acquire()
            in_window.append(limiter.statistics().in_use)

        async with asyncio.timeout(DEADLINE):
            await asyncio.gather(*(call() for _ in range(100)))

    assert run_in_threads(worker, worker) == []
    assert len(in_window) == 200
    assert max(in_window) <= 20
    assert limiter.statistics().granted == 200
