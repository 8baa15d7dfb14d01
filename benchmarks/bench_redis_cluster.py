"""Redis limits on a Redis Cluster, side by side with one Redis server.

``python -m benchmarks redis_cluster``; needs ``redis-server`` and ``redis-cli`` on
PATH. It starts its own 3-primary cluster and a standalone server (started the
same way, for the side-by-side rows) on free loopback ports
(tests/_redis_servers.py), and stops them after. The workers are this
module run as ``python -m benchmarks.bench_redis_cluster worker ...``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from tests._redis_servers import ClusterServers, SingleServer

from act_operator_lib.limits import RedisRateLimiter

PROCESSES, CALLERS, RATE, SECONDS, WINDOW = 4, 50, 100, 5.0, 0.998
KEYS, KEY_CALLERS, KEY_SECONDS = 64, 16, 3.0


async def rate_worker(url: str, key: str) -> None:
    """CALLERS tasks acquiring one key until the run ends; prints the Redis server
    times of the grants (JSON). Prints "ready", then reads the start time from stdin."""
    limiter = RedisRateLimiter(url, key, RATE)
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    grants: list[float] = []

    async def caller() -> None:
        while time.time() < start + SECONDS:
            grant = await limiter.acquire_with_grant_time()
            assert grant is not None
            grants.append(grant)

    await asyncio.sleep(max(0.0, start - time.time()))
    try:
        await asyncio.gather(*(caller() for _ in range(CALLERS)))
    finally:
        await limiter.aclose()
    print(json.dumps(grants), flush=True)


async def keys_worker(url: str, prefix: str) -> None:
    """KEY_CALLERS tasks acquiring on KEYS keys in turn (never limited: the rate is
    far above what one machine sends) for KEY_SECONDS; prints the acquires made."""
    client: Redis | RedisCluster
    if url.startswith("redis+cluster://"):
        client = RedisCluster.from_url(url.replace("+cluster", "", 1))
    else:
        client = Redis.from_url(url)
    limiters = [RedisRateLimiter(client, f"{prefix}:{n}", 1e9, burst=1000) for n in range(KEYS)]
    for limiter in limiters:  # warm up: connections, scripts, slot map
        await limiter.acquire()
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    done = 0

    async def caller(first: int) -> None:
        nonlocal done
        turn = first
        while time.time() < start + KEY_SECONDS:
            await limiters[turn % KEYS].acquire()
            done += 1
            turn += 1

    await asyncio.sleep(max(0.0, start - time.time()))
    try:
        await asyncio.gather(*(caller(n * 7) for n in range(KEY_CALLERS)))
    finally:
        for limiter in limiters:
            await limiter.aclose()
        await client.aclose()
    print(json.dumps(done), flush=True)


async def worker_process(*arguments: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.bench_redis_cluster", "worker", *arguments,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def run_workers(*arguments: str) -> list[object]:
    """PROCESSES workers started together; their JSON outputs."""
    workers = [await worker_process(*arguments) for _ in range(PROCESSES)]
    for worker in workers:
        assert worker.stdout is not None
        assert await worker.stdout.readline() == b"ready\n"
    start = time.time() + 0.3
    outputs = await asyncio.gather(
        *(worker.communicate(f"{start!r}\n".encode()) for worker in workers)
    )
    return [json.loads(stdout) for stdout, _ in outputs]


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    most, first = 0, 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window:
            first += 1
        most = max(most, last - first + 1)
    return most


async def shared_rate(cluster: ClusterServers) -> str:
    key = f"bench:{uuid.uuid4().hex}"
    outputs = await run_workers("rate", cluster.url, key)
    grants = [moment for output in outputs for moment in output]  # type: ignore[attr-defined]
    first = min(grants)
    inside = [moment for moment in grants if moment < first + SECONDS]
    ideal = int(RATE * SECONDS)
    return (
        f"| cluster: {PROCESSES} processes x {CALLERS} callers, one key without a hash "
        f"tag, {RATE}/s for {SECONDS:g} s | max in any {WINDOW} s window at resume "
        f"(Redis TIME at confirmation): **{most_in_window(inside, WINDOW)}** (limit {RATE}) "
        f"| grants {len(inside)} / ideal {ideal} = **{len(inside) / ideal:.1%}** (goal >= 97%) |"
    )


async def many_keys(url: str) -> float:
    outputs = await run_workers("keys", url, f"bench:{uuid.uuid4().hex}")
    return sum(outputs) / KEY_SECONDS  # type: ignore[arg-type]


async def alternating_medians(
    first: Callable[[], Awaitable[object]],
    second: Callable[[], Awaitable[object]],
    rounds: int = 2000,
) -> tuple[float, float]:
    """Median latency (us) of each operation, samples taken in turn."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for operation, into in ((first, samples[0]), (second, samples[1])):
            started = time.perf_counter()
            await operation()
            into.append(time.perf_counter() - started)
    return statistics.median(samples[0]) * 1e6, statistics.median(samples[1]) * 1e6


async def latency_ratio(client: Redis | RedisCluster) -> tuple[float, float]:
    """(acquire us, PING us) on the node that owns the limiter's key."""
    key = f"bench:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(client, key, 1e9, burst=1000)
    await limiter.acquire()
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(f"{{{key}}}")

        async def ping() -> object:
            return await client.ping(target_nodes=node)  # type: ignore[arg-type]

    else:
        ping = client.ping
    try:
        for _ in range(100):
            await ping()
            await limiter.acquire()
        ping_us, acquire_us = await alternating_medians(ping, limiter.acquire)
    finally:
        await limiter.aclose()
    return acquire_us, ping_us


async def run() -> str:
    rows: list[str] = []
    cluster, single = ClusterServers(), SingleServer()
    try:
        rows.append(await shared_rate(cluster))
        on_cluster = await many_keys(cluster.url)
        on_single = await many_keys(single.url)
        rows.append(
            f"| {KEYS} keys, {PROCESSES} processes x {KEY_CALLERS} callers, not limited "
            f"| cluster (3 primaries): **{on_cluster:,.0f} acquires/s** "
            f"| one Redis started the same way: {on_single:,.0f} acquires/s "
            f"({on_cluster / on_single:.2f} x) |"
        )
        cluster_client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        single_client = Redis.from_url(single.url)
        try:
            await cluster_client.initialize()
            cluster_acquire, cluster_ping = await latency_ratio(cluster_client)
            single_acquire, single_ping = await latency_ratio(single_client)
        finally:
            await cluster_client.aclose()
            await single_client.aclose()
        rows.append(
            "| acquire latency, not limited (median of 2000, alternating with PING to the "
            f"node owning the key) | cluster: **{cluster_acquire:.0f} us = "
            f"{cluster_acquire / cluster_ping:.2f} x PING** ({cluster_ping:.0f} us) "
            f"| one Redis: {single_acquire:.0f} us = {single_acquire / single_ping:.2f} x "
            f"PING ({single_ping:.0f} us) |"
        )
    finally:
        cluster.stop()
        single.stop()
    return "\n".join(
        [
            "## Redis Cluster",
            "",
            "`.venv/bin/python -m benchmarks redis_cluster` (Redis 7, every server on "
            "127.0.0.1 of the same machine).",
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
        mode, url, key = sys.argv[2:5]
        asyncio.run(rate_worker(url, key) if mode == "rate" else keys_worker(url, key))
    else:
        print(main())
