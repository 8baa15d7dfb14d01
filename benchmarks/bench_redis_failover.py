"""Redis limits through Sentinel failovers: grants beyond the limit and stalls.

``python -m benchmarks redis_failover``; needs ``redis-server`` on PATH. It starts a
primary with replicas and 3 Sentinels on free loopback ports
(tests/_redis_servers.py), forces FAILOVERS failovers (``SENTINEL FAILOVER``) while
callers acquire, and stops the servers after: once with Redis's default
configuration, once with ``min-replicas-to-write`` set.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid

from tests._redis_servers import SentinelServers

from act_operator_lib import LimiterUnavailableError
from act_operator_lib.limits import RedisRateLimiter
from benchmarks.bench_redis_cluster import CALLERS, RATE, WINDOW, most_in_window

FAILOVERS = 5


async def failovers(group: SentinelServers, setup: str) -> list[str]:
    """CALLERS callers on one key at RATE/s while Sentinel fails over FAILOVERS times."""
    key = f"bench:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(group.url, key, RATE, timeout=1.0)
    grants: list[float] = []
    errors = 0
    stop = asyncio.Event()

    async def caller() -> None:
        nonlocal errors
        while not stop.is_set():
            try:
                grant = await limiter.acquire_with_grant_time()
            except LimiterUnavailableError:
                errors += 1
                await asyncio.sleep(0.01)  # a caller's own back-off before trying again
                continue
            assert grant is not None
            grants.append(grant)

    callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
    began = time.perf_counter()
    moments: list[float] = []
    try:
        await asyncio.sleep(1.0)
        for _ in range(FAILOVERS):
            moments.append(time.time())
            await asyncio.to_thread(group.failover)
            await asyncio.to_thread(group.wait_until_settled)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*callers)
        await limiter.aclose()
    elapsed = time.perf_counter() - began
    ordered = sorted(grants)
    gaps = [later - earlier for earlier, later in itertools.pairwise(ordered)]
    most = most_in_window(ordered, WINDOW)
    return [
        f"| Sentinel, {setup}: {CALLERS} callers, one key, {RATE}/s, {FAILOVERS} forced "
        f"failovers (`SENTINEL FAILOVER`) in {elapsed:.0f} s | max in any {WINDOW} s window: "
        f"**{most}** (limit {RATE}: **{max(0, most - RATE)} beyond**); longest stall between "
        f"two grants **{max(gaps):.2f} s**; {errors} acquires raised "
        f"`LimiterUnavailableError` (on_unavailable='fail', timeout 1 s) "
        f"| grants {len(ordered)} in {elapsed:.0f} s |",
    ]


async def run() -> str:
    rows: list[str] = []
    for replicas, safety, setup in [
        (1, 0, "1 replica, default config"),
        (2, 1, "2 replicas, `min-replicas-to-write 1`, `min-replicas-max-lag 1`"),
    ]:
        group = SentinelServers(replicas=replicas, min_replicas_to_write=safety)
        try:
            rows.extend(await failovers(group, setup))
        finally:
            group.stop()
    return "\n".join(
        [
            "## Redis through Sentinel failovers",
            "",
            "`.venv/bin/python -m benchmarks redis_failover` (Redis 7, every server on "
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
    print(main())
