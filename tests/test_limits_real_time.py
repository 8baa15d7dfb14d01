"""The in-process limiters on the real clock, on the loop the run uses.

test_limits_rate.py and test_limits_concurrency.py check timing on virtual time,
which only asyncio's own loop supports; these few checks run in real time, so
``make pytest-uvloop`` also holds the limiters to their promises on uvloop, whose
``loop.time()`` is a millisecond clock. They count grants per window of
``loop.time()`` (the limiters' own clock); they assert no durations.
"""

from __future__ import annotations

import asyncio

from act_operator_lib import ConcurrencyLimiter, RateLimiter

SAME_INSTANT = 1e-9
"""Loop times are floats: a grant this close to a window's end starts the next window."""


def most_in_any_window(times: list[float], per: float) -> int:
    """The most grants in any window ``[t, t + per)`` of loop time."""
    times = sorted(times)
    most = 0
    start = 0
    for end, time in enumerate(times):
        while time >= times[start] + per - SAME_INSTANT:
            start += 1
        most = max(most, end - start + 1)
    return most


async def test_rate_limiter_never_grants_more_than_the_rate_in_any_window() -> None:
    limiter = RateLimiter(20, per=0.1)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def call() -> None:
        async with limiter:
            times.append(loop.time())

    await asyncio.gather(*(call() for _ in range(60)))

    assert len(times) == 60
    assert most_in_any_window(times, 0.1) == 20


async def test_rate_limiter_with_a_burst_keeps_the_window_bound() -> None:
    limiter = RateLimiter(20, per=0.1, burst=5)
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        times.append(loop.time())

    await asyncio.gather(*(call() for _ in range(60)))

    assert len(times) == 60
    assert most_in_any_window(times, 0.1) <= 20 + 5 - 1


async def test_rate_limiter_grants_waiters_in_arrival_order() -> None:
    limiter = RateLimiter(500)
    order: list[int] = []

    async def call(number: int) -> None:
        async with limiter:
            order.append(number)

    await asyncio.gather(*(call(number) for number in range(100)))

    assert order == list(range(100))


async def test_concurrency_limiter_holds_its_limit_and_gives_every_permit_back() -> None:
    limiter = ConcurrencyLimiter(5)
    inside = peak = 0

    async def call() -> None:
        nonlocal inside, peak
        async with limiter:
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.001)
            inside -= 1

    await asyncio.gather(*(call() for _ in range(50)))

    assert peak == 5
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting, statistics.granted) == (0, 0, 50)
