"""Limiters: RateLimiter vs aiolimiter and pyrate-limiter; ConcurrencyLimiter vs asyncio.Semaphore.

(a) strictness: 600 acquisitions at 200/s, burst 1, all requested at once; the most
    grants in any 0.998 s window (the limit is 200) and the total time (ideal 2.995 s).
(b) cost of an uncontended ``async with limiter: pass``, per operation, the limiters
    taking turns in each round.
(c) fairness: 1,000 concurrent waiters granted in arrival order (yes/no).
(d) cost of an uncontended ``await limiter.acquire()``: one rate, two rates in one
    `MultiRateLimiter`, and two `RateLimiter`s one after the other (goal: two rates
    in one call <= 1.5x one rate).
(e) memory of a budget of 150M tokens a minute (with 30,000 requests a minute)
    filled to the brim: one log entry per grant (goal: <= 10 MB).
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiolimiter import AsyncLimiter
from pyrate_limiter import Duration, Limiter
from pyrate_limiter import Rate as PyrateRate

from act_operator_lib import ConcurrencyLimiter, RateLimiter
from act_operator_lib.limits import MultiRateLimiter, Rate

WINDOW = 0.998
COUNT = 600
RATE = 200
UNCONTENDED_OPS = 200_000
TOKENS_A_MINUTE = 150_000_000
REQUESTS_A_MINUTE = 30_000


def _most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most = start = 0
    for end, moment in enumerate(times):
        while moment - times[start] >= window:
            start += 1
        most = max(most, end - start + 1)
    return most


async def _burst(acquire: Callable[[], Awaitable[Any]]) -> tuple[int, float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one() -> None:
        await acquire()
        times.append(loop.time())

    begin = loop.time()
    await asyncio.gather(*(one() for _ in range(COUNT)))
    return _most_in_window(times, WINDOW), max(times) - begin


async def _in_order(acquire: Callable[[], Awaitable[Any]], count: int = 1_000) -> bool:
    order: list[int] = []

    async def one(number: int) -> None:
        await acquire()
        order.append(number)

    await asyncio.gather(*(one(number) for number in range(count)))
    return order == list(range(count))


class _Empty:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


async def _per_op(*makers: Callable[[], AbstractAsyncContextManager[Any]]) -> list[float]:
    """Best of ten rounds of ``async with`` on fresh limiters, in microseconds per op.

    The limiters take turns within each round, so a busy machine slows them alike.
    """
    best = [float("inf")] * len(makers)
    operations = UNCONTENDED_OPS // 2
    for _ in range(10):
        for index, make in enumerate(makers):
            limiter = make()
            start = time.perf_counter()
            for _ in range(operations):
                async with limiter:
                    pass
            best[index] = min(best[index], time.perf_counter() - start)
    return [seconds / operations * 1e6 for seconds in best]


async def _per_acquire(*makers: Callable[[], Callable[[], Awaitable[Any]]]) -> list[float]:
    """Best of ten rounds of ``await acquire()`` on fresh limiters, in microseconds.

    The limiters take turns within each round, so a busy machine slows them alike.
    """
    best = [float("inf")] * len(makers)
    operations = UNCONTENDED_OPS // 2
    for _ in range(10):
        for index, make in enumerate(makers):
            acquire = make()
            start = time.perf_counter()
            for _ in range(operations):
                await acquire()
            best[index] = min(best[index], time.perf_counter() - start)
    return [seconds / operations * 1e6 for seconds in best]


def _two_rate_limiters() -> Callable[[], Awaitable[None]]:
    requests, tokens = RateLimiter(1e9), RateLimiter(1e12)

    async def acquire() -> None:
        await requests.acquire()
        await tokens.acquire(100)

    return acquire


def _two_rates() -> Callable[[], Awaitable[None]]:
    limiter = MultiRateLimiter(requests=Rate(1e9), tokens=Rate(1e12, default_cost=100))
    return limiter.acquire


class _SteppingLoop(asyncio.SelectorEventLoop):
    """A loop whose clock moves 2 ms per reading: a minute's grants, spread out."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        self._now += 0.002
        return self._now


async def _fill_budget() -> tuple[float, int]:
    """MB held by a 150M tokens/min budget after a minute's worth of grants."""
    cost = TOKENS_A_MINUTE // REQUESTS_A_MINUTE
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        limiter = MultiRateLimiter(
            requests=Rate(REQUESTS_A_MINUTE, per=60, burst=REQUESTS_A_MINUTE),
            tokens=Rate(TOKENS_A_MINUTE, per=60, burst=TOKENS_A_MINUTE, default_cost=cost),
        )
        for _ in range(REQUESTS_A_MINUTE):
            await limiter.acquire()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held / 1e6, limiter.statistics().rates["tokens"].in_window


def _spread_budget() -> tuple[float, int]:
    """The same, the grants spread over the whole minute (the most log entries)."""
    loop = _SteppingLoop()
    try:
        return loop.run_until_complete(_fill_budget())
    finally:
        loop.close()


def _pyrate(rate: int) -> Callable[[], Awaitable[Any]]:
    limiter = Limiter(PyrateRate(rate, Duration.SECOND))

    async def acquire() -> None:
        await limiter.try_acquire_async("bench")

    return acquire


async def _run() -> str:
    lines = [
        "## Limiters",
        "",
        "Command: `python -m benchmarks limits`. One run, all libraries side by side.",
        "",
        f"(a) {COUNT} acquisitions at {RATE}/s, burst 1, all requested at once "
        f"(limit: {RATE} in any window; ideal total {(COUNT - 1) / RATE:.3f} s):",
        "",
        f"| limiter | most grants in any {WINDOW} s window | total time (s) |",
        "|---|---|---|",
    ]
    burst_cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("act_operator_lib.RateLimiter(200)", RateLimiter(RATE).acquire),
        ("aiolimiter.AsyncLimiter(200, 1)", AsyncLimiter(RATE, 1).acquire),
        ("pyrate_limiter Limiter(Rate(200, SECOND))", _pyrate(RATE)),
    ]
    for name, acquire in burst_cases:
        most, total = await _burst(acquire)
        lines.append(f"| {name} | {most} | {total:.3f} |")

    empty, ours, theirs, permits, semaphore = await _per_op(
        _Empty,
        lambda: RateLimiter(1e9),
        lambda: AsyncLimiter(1e9, 1),
        lambda: ConcurrencyLimiter(10),
        lambda: asyncio.Semaphore(10),
    )
    lines += [
        "",
        f"(b) uncontended `async with limiter: pass`, best of 10 x {UNCONTENDED_OPS // 2:,}, "
        "taking turns (goal: RateLimiter <= 0.6x aiolimiter):",
        "",
        "| context manager | us per op | vs reference |",
        "|---|---|---|",
        f"| empty async context manager (baseline) | {empty:.2f} | |",
        f"| act_operator_lib.RateLimiter | {ours:.2f} | {ours / theirs:.2f}x aiolimiter |",
        f"| aiolimiter.AsyncLimiter | {theirs:.2f} | 1.00x |",
        f"| act_operator_lib.ConcurrencyLimiter | {permits:.2f} "
        f"| {permits / semaphore:.2f}x Semaphore |",
        f"| asyncio.Semaphore | {semaphore:.2f} | 1.00x |",
    ]

    fairness: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("act_operator_lib.RateLimiter(10_000)", RateLimiter(10_000).acquire),
        ("aiolimiter.AsyncLimiter(10_000, 1)", AsyncLimiter(10_000, 1).acquire),
        ("pyrate_limiter Limiter(Rate(10_000, SECOND))", _pyrate(10_000)),
    ]
    lines += [
        "",
        "(c) 1,000 concurrent waiters granted in arrival order:",
        "",
        "| limiter | in order |",
        "|---|---|",
    ]
    for name, acquire in fairness:
        lines.append(f"| {name} | {'yes' if await _in_order(acquire) else 'no'} |")
    for name, make in [
        ("act_operator_lib.ConcurrencyLimiter(1)", lambda: ConcurrencyLimiter(1)),
        ("asyncio.Semaphore(1)", lambda: asyncio.Semaphore(1)),
    ]:
        lines.append(f"| {name} | {'yes' if await _in_order_held(make()) else 'no'} |")

    one, both, pair = await _per_acquire(
        lambda: RateLimiter(1e9).acquire, _two_rates, _two_rate_limiters
    )
    lines += [
        "",
        f"(d) uncontended `await limiter.acquire()`, best of 10 x {UNCONTENDED_OPS // 2:,}, "
        "taking turns "
        "(goal: two rates in one MultiRateLimiter <= 1.5x one RateLimiter):",
        "",
        "| limiter | us per acquire | vs one rate |",
        "|---|---|---|",
        f"| RateLimiter (one rate) | {one:.2f} | 1.00x |",
        f"| MultiRateLimiter(requests=..., tokens=...) | {both:.2f} | {both / one:.2f}x |",
        f"| RateLimiter then RateLimiter.acquire(100) | {pair:.2f} | {pair / one:.2f}x |",
    ]

    at_once, in_window = await _fill_budget()
    spread, spread_in_window = await asyncio.to_thread(_spread_budget)
    lines += [
        "",
        f"(e) memory of MultiRateLimiter(requests={REQUESTS_A_MINUTE:,}/min, "
        f"tokens={TOKENS_A_MINUTE:,}/min) after {REQUESTS_A_MINUTE:,} grants "
        "(goal: <= 10 MB; a log of one entry per unit would hold about 8 bytes "
        f"per token, {TOKENS_A_MINUTE * 8 / 1e9:.1f} GB):",
        "",
        "| grants | tokens in the window | MB held |",
        "|---|---|---|",
        f"| all at once | {in_window:,} | {at_once:.2f} |",
        f"| spread over the minute | {spread_in_window:,} | {spread:.2f} |",
    ]
    return "\n".join(lines) + "\n"


async def _in_order_held(limiter: AbstractAsyncContextManager[Any], count: int = 1_000) -> bool:
    order: list[int] = []

    async def one(number: int) -> None:
        async with limiter:
            order.append(number)
            await asyncio.sleep(0)

    await asyncio.gather(*(one(number) for number in range(count)))
    return order == list(range(count))


def main() -> str:
    """Run the comparison and return the Markdown section for docs/benchmarks.md."""
    return asyncio.run(_run())
