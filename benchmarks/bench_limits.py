"""Limiters: RateLimiter vs aiolimiter and pyrate-limiter; ConcurrencyLimiter vs asyncio.Semaphore.

(a) strictness: 600 acquisitions at 200/s, burst 1, all requested at once; the most
    grants in any 0.998 s window (the limit is 200) and the total time (ideal 2.995 s).
(b) cost of an uncontended ``async with limiter: pass``, per operation.
(c) fairness: 1,000 concurrent waiters granted in arrival order (yes/no).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiolimiter import AsyncLimiter
from pyrate_limiter import Duration, Limiter, Rate

from act_operator_lib import ConcurrencyLimiter, RateLimiter

WINDOW = 0.998
COUNT = 600
RATE = 200
UNCONTENDED_OPS = 200_000


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


async def _per_op(make: Callable[[], AbstractAsyncContextManager[Any]]) -> float:
    """Best of five runs of ``async with`` on a fresh limiter, in microseconds per op."""
    best = float("inf")
    for _ in range(5):
        limiter = make()
        start = time.perf_counter()
        for _ in range(UNCONTENDED_OPS):
            async with limiter:
                pass
        best = min(best, time.perf_counter() - start)
    return best / UNCONTENDED_OPS * 1e6


def _pyrate(rate: int) -> Callable[[], Awaitable[Any]]:
    limiter = Limiter(Rate(rate, Duration.SECOND))

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

    empty = await _per_op(_Empty)
    ours = await _per_op(lambda: RateLimiter(1e9))
    theirs = await _per_op(lambda: AsyncLimiter(1e9, 1))
    permits = await _per_op(lambda: ConcurrencyLimiter(10))
    semaphore = await _per_op(lambda: asyncio.Semaphore(10))
    lines += [
        "",
        "(b) uncontended `async with limiter: pass`, best of 5 x "
        f"{UNCONTENDED_OPS:,} (goal: RateLimiter <= 0.6x aiolimiter):",
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
