"""Redis limits across processes: the rate kept, latency, and a dead holder's permits.

``python -m benchmarks redis``; needs the Redis server on 127.0.0.1:6379. The
workers are this module run as ``python -m benchmarks.bench_redis worker ...``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from act_operator_lib.limits import (
    Rate,
    RedisConcurrencyLimiter,
    RedisMultiRateLimiter,
    RedisRateLimiter,
)

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROCESSES, CALLERS, RATE, SECONDS, WINDOW = 4, 50, 100, 5.0, 0.998
LEASE = 1.0


async def rate_worker(key: str) -> None:
    """CALLERS tasks acquiring until the run ends; prints [confirmed, returned] pairs.

    ``confirmed`` is the Redis server time at which the grant was confirmed, after
    the caller resumed; ``returned`` is ``time.time()`` when ``acquire`` returned
    (one machine, so one clock for every process).

    Prints "ready" once imported, then reads the common start time from stdin.
    """
    limiter = RedisRateLimiter(URL, key, RATE)
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    grants: list[tuple[float, float]] = []

    async def caller() -> None:
        while time.time() < start + SECONDS:
            grant = await limiter.acquire_with_grant_time()
            assert grant is not None
            grants.append((grant, time.time()))

    await asyncio.sleep(max(0.0, start - time.time()))
    try:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    finally:
        await limiter.aclose()
    print(json.dumps(grants), flush=True)


async def hold_worker(key: str) -> None:
    limiter = RedisConcurrencyLimiter(URL, key, 2, lease=LEASE)
    await limiter.acquire()
    await limiter.acquire()
    print("held", flush=True)
    await asyncio.Event().wait()


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def worker_process(*arguments: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_redis", "worker", *arguments,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def shared_rate() -> list[str]:
    key = f"bench:act_operator_lib:{uuid.uuid4().hex}"
    workers = [await worker_process("rate", key) for _ in range(PROCESSES)]
    for worker in workers:
        assert worker.stdout is not None
        assert await worker.stdout.readline() == b"ready\n"
    start = time.time() + 0.2
    outputs = await asyncio.gather(
        *(worker.communicate(f"{start!r}\n".encode()) for worker in workers)
    )
    pairs = [pair for stdout, _ in outputs for pair in json.loads(stdout)]
    # Confirmation times are on the Redis server's clock, which need not match ours.
    first = min(confirmed for confirmed, _ in pairs)
    inside = [(confirmed, returned) for confirmed, returned in pairs if confirmed < first + SECONDS]
    confirmed = [moment for moment, _ in inside]
    returned = [moment for _, moment in inside]
    ideal = int(RATE * SECONDS)
    return [
        f"| {PROCESSES} processes x {CALLERS} callers, one key, {RATE}/s for {SECONDS:g} s "
        f"| max in any {WINDOW} s window, at resume: **{most_in_window(confirmed, WINDOW)}** "
        f"by Redis TIME at confirmation, {most_in_window(returned, WINDOW)} by time.time() "
        f"when acquire returned (limit {RATE}) "
        f"| grants {len(confirmed)} / ideal {ideal} = **{len(confirmed) / ideal:.1%}** |",
    ]


async def median_latency(operation: object, rounds: int = 1000) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await operation()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


async def alternating_medians(
    *operations: Callable[[], Awaitable[object]], rounds: int = 2000
) -> list[float]:
    """Median latency (us) of each operation, samples taken in turn, so a noisy moment
    of the shared machine weighs on all alike and their ratios stay fair."""
    samples: list[list[float]] = [[] for _ in operations]
    for _ in range(rounds):
        for operation, into in zip(operations, samples, strict=True):
            started = time.perf_counter()
            await operation()
            into.append(time.perf_counter() - started)
    return [statistics.median(taken) * 1e6 for taken in samples]


async def latency() -> list[str]:
    from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

    key = f"bench:act_operator_lib:{uuid.uuid4().hex}"
    client = Redis.from_url(URL)
    ours = RedisRateLimiter(client, key, 1_000_000)
    bucket = await RedisBucket.init([Rate(1_000_000, Duration.SECOND)], client, f"{key}:pyrate")
    theirs = Limiter(bucket)
    try:
        for _ in range(100):  # warm up: connections, script cache
            await client.ping()
            await ours.acquire()
            await theirs.try_acquire_async("bench")
        ping, ours_us = await alternating_medians(client.ping, ours.acquire)
        theirs_us = await median_latency(lambda: theirs.try_acquire_async("bench"))
    finally:
        await ours.aclose()
        theirs.close()
        await client.delete(key, f"{key}:pyrate")
        await client.aclose()
    return [
        f"| acquire latency, not limited (median of 2000, alternating with PING) "
        f"| RedisRateLimiter **{ours_us:.0f} us** = **{ours_us / ping:.2f} x PING** "
        f"| PING {ping:.0f} us (goal: acquire within 1.5 x); "
        f"pyrate-limiter RedisBucket {theirs_us:.0f} us |",
    ]


async def multi_rate_latency(rounds: int = 2000) -> list[str]:
    """Uncontended acquire: two rates in one script call against one rate, and PING."""
    key = f"bench:act_operator_lib:{uuid.uuid4().hex}"
    client = Redis.from_url(URL)
    single = RedisRateLimiter(client, f"{key}:single", 1_000_000)
    multi = RedisMultiRateLimiter(
        client,
        f"{key}:multi",
        requests=Rate(1_000_000, burst=1_000_000),
        tokens=Rate(100_000_000, burst=100_000_000, default_cost=100),
    )
    try:
        for _ in range(100):  # warm up: connections, script cache
            await client.ping()
            await single.acquire()
            await multi.acquire()
        ping, single_us, multi_us = await alternating_medians(
            client.ping, single.acquire, multi.acquire, rounds=rounds
        )
    finally:
        await single.aclose()
        await multi.aclose()
        names = [name async for name in client.scan_iter(match=f"{key}*")]
        if names:
            await client.delete(*names)
        await client.aclose()
    return [
        f"| multi-rate acquire latency, not limited (requests + tokens; median of {rounds}, "
        f"alternating) | RedisMultiRateLimiter **{multi_us:.0f} us** = "
        f"**{multi_us / single_us:.2f} x RedisRateLimiter** ({single_us:.0f} us), "
        f"{multi_us / ping:.2f} x PING | PING {ping:.0f} us |",
    ]


async def dead_holder() -> list[str]:
    key = f"bench:act_operator_lib:{uuid.uuid4().hex}"
    holder = await worker_process("hold", key)
    assert holder.stdout is not None
    await holder.stdout.readline()
    limiter = RedisConcurrencyLimiter(URL, key, 2, lease=LEASE)
    holder.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    await holder.wait()
    try:
        await limiter.acquire()
        await limiter.acquire()
        back = time.perf_counter() - killed
    finally:
        await limiter.aclose()
    return [
        f"| SIGKILLed holder of 2 permits, lease {LEASE:g} s | both permits back after "
        f"**{back:.2f} s** | goal: within lease + 1 s = {LEASE + 1:g} s |",
    ]


async def run() -> str:
    rows = [
        *await shared_rate(),
        *await latency(),
        *await multi_rate_latency(),
        *await dead_holder(),
    ]
    return "\n".join(
        [
            "## Redis limits",
            "",
            "`.venv/bin/python -m benchmarks redis` (Redis 7 on 127.0.0.1, shared machine).",
            "",
            "| case | result | reference |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )


def main() -> str:
    return asyncio.run(run())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        if sys.argv[2] == "rate":
            asyncio.run(rate_worker(sys.argv[3]))
        else:
            asyncio.run(hold_worker(sys.argv[3]))
    else:
        print(main())
