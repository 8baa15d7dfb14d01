"""A process that shares a Redis limiter with the tests: ``python tests/_redis_worker.py MODE ...``.

URL may be any the limiters take (``redis://``, ``redis+cluster://``, ...).

Modes:
    rate URL KEY RATE CALLS          CALLS concurrent acquires; prints the confirmation times (JSON)
    concurrency URL KEY LIMIT CALLS  CALLS concurrent holders; counts holders in Redis
    hold URL KEY LIMIT LEASE         takes LIMIT permits, prints "held", waits to be killed
    multi-rate URL KEY COST WAIT     one acquire of COST tokens from Rate(100, per=3600,
                                     burst=100); prints its grant time, or null if not
                                     granted within WAIT seconds (JSON)
    refused URL KEY RATE PER         an adaptive RedisRateLimiter(RATE, per=PER) reports a
                                     429 (pause); prints the learned rate, waits to be killed
    multi-refused URL KEY TOKENS PER an adaptive RedisMultiRateLimiter of 10 requests and
                                     100 tokens per PER reserves TOKENS tokens, reports a 429
                                     (pause); prints the learned rates by name (JSON)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from act_operator_lib.limits import (
    Rate,
    RedisConcurrencyLimiter,
    RedisMultiRateLimiter,
    RedisRateLimiter,
)


async def rate(url: str, key: str, per_second: float, calls: int) -> None:
    limiter = RedisRateLimiter(url, key, per_second)
    try:
        times = await asyncio.gather(*(limiter.acquire_with_grant_time() for _ in range(calls)))
    finally:
        await limiter.aclose()
    print(json.dumps(times), flush=True)


async def concurrency(url: str, key: str, limit: int, calls: int) -> None:
    limiter = RedisConcurrencyLimiter(url, key, limit, lease=5)
    client: Redis | RedisCluster
    if url.startswith("redis+cluster://"):
        client = RedisCluster.from_url(url.replace("+cluster", "", 1))
    else:
        client = Redis.from_url(url)
    most = 0

    async def hold() -> None:
        nonlocal most
        async with limiter:
            most = max(most, await client.incr(f"{key}:inside"))
            await asyncio.sleep(0.005)
            await client.decr(f"{key}:inside")

    try:
        await asyncio.gather(*(hold() for _ in range(calls)))
    finally:
        await limiter.aclose()
        await client.aclose()
    print(json.dumps(most), flush=True)


async def hold(url: str, key: str, limit: int, lease: float) -> None:
    limiter = RedisConcurrencyLimiter(url, key, limit, lease=lease)
    for _ in range(limit):
        await limiter.acquire()
    print("held", flush=True)
    await asyncio.Event().wait()


async def multi_rate(url: str, key: str, cost: int, wait: float) -> None:
    tokens = Rate(100, per=3600, burst=100, default_cost=cost)
    limiter = RedisMultiRateLimiter(url, key, tokens=tokens)
    granted = None
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                granted = await limiter.acquire_with_grant_time()
    finally:
        await limiter.aclose()
    print(json.dumps(granted), flush=True)


async def refused(url: str, key: str, per_window: float, per: float) -> None:
    limiter = RedisRateLimiter(url, key, per_window, per=per, adaptive=True)
    await limiter.pause(0.01)
    print(json.dumps(limiter.statistics().rate), flush=True)
    await asyncio.Event().wait()


async def multi_refused(url: str, key: str, tokens: int, per: float) -> None:
    limiter = RedisMultiRateLimiter(
        url,
        key,
        requests=Rate(10, per=per, burst=10),
        tokens=Rate(100, per=per, burst=100),
        adaptive=True,
    )
    try:
        await limiter.reserve(tokens=tokens)
        await limiter.pause(0.01)
    finally:
        await limiter.aclose()
    rates = limiter.statistics().rates
    print(json.dumps({name: rate.rate for name, rate in rates.items()}), flush=True)


if __name__ == "__main__":
    mode, url, key, number, count = sys.argv[1:6]
    if mode == "rate":
        asyncio.run(rate(url, key, float(number), int(count)))
    elif mode == "multi-rate":
        asyncio.run(multi_rate(url, key, int(number), float(count)))
    elif mode == "refused":
        asyncio.run(refused(url, key, float(number), float(count)))
    elif mode == "multi-refused":
        asyncio.run(multi_refused(url, key, int(number), float(count)))
    elif mode == "concurrency":
        asyncio.run(concurrency(url, key, int(number), int(count)))
    else:
        asyncio.run(hold(url, key, int(number), float(count)))
