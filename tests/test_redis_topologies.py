"""Redis limiters and cache on a real Redis Cluster and through a real Sentinel failover.

The fixtures start, once per test session, a 3-primary cluster and a primary +
replica + 3 Sentinels on free high ports of 127.0.0.1 (tests/_redis_servers.py),
and stop them after. Without ``redis-server`` they skip, except under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from tests._redis_servers import (
    ClusterServers,
    SentinelServers,
    skip_or_fail_without_redis_server,
)
from tests._reliability import Inside
from tests.test_limits_redis import run_worker, worker_output

from act_operator_lib import (
    LimiterUnavailableError,
    RedisConcurrencyLimiter,
    RedisRateLimiter,
)
from act_operator_lib.cache import RedisCacheBackend, cached
from act_operator_lib.limits import Rate, RedisMultiRateLimiter

pytestmark = pytest.mark.redis

GUARD = 60.0
"""Outer bound on a run that crosses a failover or a node restart."""


def _skip_without_redis_server() -> None:
    try:
        reason = skip_or_fail_without_redis_server()
    except RuntimeError as error:
        pytest.fail(str(error))
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterServers]:
    """A 3-primary Redis Cluster on loopback, for the whole session."""
    _skip_without_redis_server()
    servers = ClusterServers()
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelServers]:
    """A primary, a replica and 3 Sentinels on loopback, for the whole session."""
    _skip_without_redis_server()
    servers = SentinelServers()
    try:
        yield servers
    finally:
        servers.stop()


def unique(name: str) -> str:
    return f"test:{name}:{uuid.uuid4().hex}"


def cluster_client(cluster: ClusterServers) -> RedisCluster:
    return RedisCluster(host="127.0.0.1", port=cluster.ports[0])


async def test_a_user_key_without_a_hash_tag_keeps_all_its_keys_in_one_slot(
    cluster: ClusterServers,
) -> None:
    key = unique("rate")
    limiter = RedisRateLimiter(cluster.url, key, 1000)
    client = cluster_client(cluster)
    try:
        for _ in range(5):
            assert await limiter.acquire_with_grant_time() is not None
        assert limiter.key == key
        names = [f"{{{key}}}", f"{{{key}}}:grants"]
        assert await client.exists(*names) == 2
        assert len({client.keyslot(name) for name in names}) == 1
    finally:
        await limiter.aclose()
        await client.aclose()


async def test_a_pause_on_a_cluster_holds_back_every_limiter_sharing_the_key(
    cluster: ClusterServers,
) -> None:
    key = unique("pause")
    pausing = RedisRateLimiter(cluster.url, key, 1000)
    other = RedisRateLimiter(cluster.url, key, 1000)
    client = cluster_client(cluster)
    try:
        await pausing.pause(0.3)
        paused_until = int(await client.hget(f"{{{key}}}", "paused"))  # type: ignore[arg-type]
        granted = await other.acquire_with_grant_time()
        assert granted is not None
        assert round(granted * 1_000_000) >= paused_until
    finally:
        await pausing.aclose()
        await other.aclose()
        await client.aclose()


async def test_a_multi_rate_limiter_on_a_cluster_grants_settles_and_pauses_in_one_slot(
    cluster: ClusterServers,
) -> None:
    key = unique("multi-rate")
    limiter = RedisMultiRateLimiter(
        cluster.url,
        key,
        requests=Rate(10, per=60, burst=10),
        tokens=Rate(1_000, per=60, burst=1_000),
    )
    client = cluster_client(cluster)
    try:
        async with limiter.reserve(requests=1, tokens=500) as reservation:
            await reservation.settle(tokens=200)
        await limiter.pause(0.01)
        hashed = f"{{{key}}}"
        names = [
            hashed,
            *(
                f"{hashed}:{rate}:{kind}"
                for rate in ("requests", "tokens")
                for kind in ("grants", "units")
            ),
        ]
        assert await client.exists(*names) == 5
        assert len({client.keyslot(name) for name in names}) == 1
        assert await client.hget(hashed, "sum:tokens") == b"200"
        assert await client.hget(hashed, "paused") is not None
    finally:
        await limiter.aclose()
        await client.aclose()


async def test_an_adaptive_multi_rate_limiter_on_a_cluster_keeps_what_it_learns_in_its_slot(
    cluster: ClusterServers,
) -> None:
    key = unique("adaptive")
    rates = {
        "requests": Rate(10, per=60, burst=10),
        "tokens": Rate(1_000, per=60, burst=1_000, margin=0.1),
    }
    limiter = RedisMultiRateLimiter(cluster.url, key, adaptive=True, **rates)
    other = RedisMultiRateLimiter(cluster.url, key, adaptive=True, **rates)
    client = cluster_client(cluster)
    try:
        started = time.monotonic()
        await limiter.reserve(requests=1, tokens=800)
        # Tokens were fullest: only they are cut, to 95% of the 800 granted.
        await limiter.pause(0.01)
        await other.pause(0)  # the same episode: no second cut; it learns the first
        learned_rate = other.statistics().rates["tokens"].rate
        # From the cut on, the rate recovers 1/20 of 1,000 per 60 s window: at most
        # what the time since the test started allows (a slow machine takes longer).
        recovered = 1_000 / 20 * (time.monotonic() - started) / 60
        assert 760 - 1e-6 <= learned_rate <= 760 + recovered + 1e-6
        assert other.statistics().rates["requests"].rate == 10
        hashed = f"{{{key}}}"
        learned = await client.hmget(hashed, ["from:tokens", "plateau:tokens", "cut:tokens"])
        assert None not in learned
        names = [hashed, f"{hashed}:tokens:grants", f"{hashed}:tokens:units"]
        assert len({client.keyslot(name) for name in names}) == 1
    finally:
        await limiter.aclose()
        await other.aclose()
        await client.aclose()


async def test_a_user_key_with_a_hash_tag_keeps_its_own_tag(cluster: ClusterServers) -> None:
    tag = uuid.uuid4().hex
    client = cluster_client(cluster)
    limiter = RedisRateLimiter(client, f"{{{tag}}}:api", 1000)
    try:
        await limiter.acquire()
        assert await client.exists(f"{{{tag}}}:api", f"{{{tag}}}:api:grants") == 2
    finally:
        await limiter.aclose()
        await client.aclose()


async def test_limiters_of_many_keys_spread_over_every_primary(cluster: ClusterServers) -> None:
    client = cluster_client(cluster)
    try:
        await client.initialize()
        owners = {
            client.get_node_from_key(f"{{{unique('spread')}}}").port  # type: ignore[union-attr]
            for _ in range(64)
        }
        assert owners == set(cluster.ports)
    finally:
        await client.aclose()


async def test_processes_sharing_a_key_on_a_cluster_never_exceed_the_limit(
    cluster: ClusterServers,
) -> None:
    key = unique("concurrency")
    workers = [await run_worker("concurrency", cluster.url, key, 3, 30) for _ in range(3)]
    most = [await worker_output(worker) for worker in workers]
    assert max(most) <= 3  # type: ignore[type-var]


async def test_processes_sharing_a_key_on_a_cluster_never_exceed_the_rate(
    cluster: ClusterServers,
) -> None:
    key, rate, calls = unique("rate"), 40, 20
    workers = [await run_worker("rate", cluster.url, key, rate, calls) for _ in range(3)]
    times = [time for worker in workers for time in await worker_output(worker)]  # type: ignore[attr-defined]
    grants = sorted(round(time * 1_000_000) for time in times)
    assert len(grants) == 3 * calls
    most = max(sum(1 for other in grants if start <= other < start + 1_000_000) for start in grants)
    assert most <= rate


async def test_a_concurrency_limiter_on_a_cluster_client_holds_and_releases(
    cluster: ClusterServers,
) -> None:
    key = unique("holders")
    client = cluster_client(cluster)
    limiter = RedisConcurrencyLimiter(client, key, 2)
    inside = Inside()

    async def hold() -> None:
        async with limiter:
            inside.enter()
            await asyncio.sleep(0)
            inside.leave()

    try:
        async with asyncio.timeout(GUARD):
            await asyncio.gather(*(hold() for _ in range(20)))
        assert (inside.entered, inside.peak <= 2) == (20, True)
        assert await client.zcard(f"{{{key}}}:holders") == 0
    finally:
        await limiter.aclose()
        await client.aclose()


async def test_the_cache_works_on_a_cluster(cluster: ClusterServers) -> None:
    backend = RedisCacheBackend(cluster.url, prefix=f"{unique('cache')}:")
    calls = 0

    @cached(ttl=60, backend=backend)
    async def double(number: int) -> int:
        nonlocal calls
        calls += 1
        return number * 2

    try:
        assert [await double(n) for n in (1, 2, 1, 2)] == [2, 4, 2, 4]
        assert calls == 2
    finally:
        await backend.aclose()


async def migrate_slot(cluster: ClusterServers, key: str) -> int:
    """Move ``key``'s slot, with its keys, to another primary; return that one's port."""
    client = cluster_client(cluster)
    try:
        await client.initialize()
        slot = client.keyslot(key)
        source = client.get_node_from_key(key)
        assert source is not None
        target = next(node for node in client.get_primaries() if node.port != source.port)
        ids = {
            node.port: await client.execute_command("CLUSTER MYID", target_nodes=node)
            for node in client.get_primaries()
        }
        source_id, target_id = ids[source.port], ids[target.port]
        await client.execute_command(
            "CLUSTER SETSLOT", slot, "IMPORTING", source_id, target_nodes=target
        )
        await client.execute_command(
            "CLUSTER SETSLOT", slot, "MIGRATING", target_id, target_nodes=source
        )
        names = await client.execute_command(
            "CLUSTER GETKEYSINSLOT", slot, 100, target_nodes=source
        )
        if names:
            await client.execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names,
                target_nodes=source,
            )  # fmt: skip
        for node in client.get_primaries():
            await client.execute_command(
                "CLUSTER SETSLOT", slot, "NODE", target_id, target_nodes=node
            )
        return int(target.port)
    finally:
        await client.aclose()


async def test_a_slot_moved_to_another_primary_is_followed_and_the_limit_kept(
    cluster: ClusterServers,
) -> None:
    """The client follows MOVED; the limiter's state moved with its keys."""
    key = unique("moved")
    limiter = RedisRateLimiter(cluster.url, key, 1, per=3600, burst=3)
    try:
        async with asyncio.timeout(GUARD):
            for _ in range(2):
                await limiter.acquire()
            target = await migrate_slot(cluster, f"{{{key}}}")
            await limiter.acquire()  # the third of the hour's three, via MOVED
            fourth = asyncio.create_task(limiter.acquire())
            done, _ = await asyncio.wait({fourth}, timeout=0.5)
            assert not done  # the moved log still counts the first three
            fourth.cancel()
            with pytest.raises(asyncio.CancelledError):
                await fourth
        async with Redis(port=target) as owner:
            assert await owner.zcard(f"{{{key}}}:grants") == 3
    finally:
        await limiter.aclose()


async def test_a_restarted_cluster_node_follows_on_unavailable_and_recovers(
    cluster: ClusterServers,
) -> None:
    key = unique("restart")
    limiter = RedisConcurrencyLimiter(cluster.url, key, 2, timeout=0.5)
    client = cluster_client(cluster)
    try:
        await client.initialize()
        node = client.get_node_from_key(f"{{{key}}}")
        assert node is not None
        server = cluster.server_of(int(node.port))
        async with asyncio.timeout(GUARD):
            async with limiter:
                pass
            server.stop()
            with pytest.raises(LimiterUnavailableError, match="Redis Cluster"):
                await limiter.acquire()
            await asyncio.to_thread(server.start)  # the same port and node file
            await asyncio.to_thread(cluster.wait_until_ok)
            async with limiter:
                assert limiter.statistics().in_use == 1
    finally:
        await limiter.aclose()
        await client.aclose()


async def test_a_rate_limiter_from_a_sentinel_url_uses_the_primary(
    sentinel_group: SentinelServers,
) -> None:
    key = unique("sentinel-rate")
    limiter = RedisRateLimiter(sentinel_group.url, key, 1000)
    try:
        for _ in range(5):
            assert await limiter.acquire_with_grant_time() is not None
        async with Redis(port=sentinel_group.primary_port()) as primary:
            assert await primary.exists(key, f"{key}:grants") == 2
    finally:
        await limiter.aclose()


async def test_a_concurrency_limiter_on_a_sentinel_client_holds_and_releases(
    sentinel_group: SentinelServers,
) -> None:
    key = unique("sentinel-holders")
    sentinel = Sentinel([("127.0.0.1", port) for port in sentinel_group.sentinel_ports])  # type: ignore[no-untyped-call]
    client = sentinel.master_for(sentinel_group.service)
    limiter = RedisConcurrencyLimiter(client, key, 1)
    try:
        async with limiter:
            assert await client.zcard(f"{key}:holders") == 1
        assert await client.zcard(f"{key}:holders") == 0
    finally:
        await limiter.aclose()
        await client.aclose()
        await sentinel.aclose()


async def test_a_failover_mid_run_only_fails_calls_as_unavailable_and_recovers(
    sentinel_group: SentinelServers,
) -> None:
    """Callers keep acquiring while Sentinel promotes the replica: a call either
    succeeds or raises `LimiterUnavailableError`; after the failover every call
    succeeds, on the new primary."""
    key = unique("failover")
    rate = RedisRateLimiter(sentinel_group.url, key, 10_000, burst=100, timeout=1)
    concurrency = RedisConcurrencyLimiter(sentinel_group.url, f"{key}:c", 4, timeout=1)
    stop, progressed = asyncio.Event(), asyncio.Event()
    failures: list[BaseException] = []
    granted, target = 0, -1

    async def caller() -> None:
        nonlocal granted
        while not stop.is_set():
            try:
                await rate.acquire()
                async with concurrency:
                    granted += 1
                    if granted == target:
                        progressed.set()
            except LimiterUnavailableError as error:
                failures.append(error)
            await asyncio.sleep(0.005)  # pacing: a steady load, not a flood

    try:
        async with asyncio.timeout(GUARD):
            callers = [asyncio.create_task(caller()) for _ in range(8)]
            old, new = await asyncio.to_thread(sentinel_group.failover)
            target = granted + 50
            await progressed.wait()  # 50 grants after the failover
            stop.set()
            await asyncio.gather(*callers)
            for _ in range(20):
                await rate.acquire()
                async with concurrency:
                    pass
        assert old != new
        async with Redis(port=new) as primary:
            assert (await primary.info("replication"))["role"] == "master"
            assert await primary.exists(key) == 1
        assert all(isinstance(error, LimiterUnavailableError) for error in failures)
    finally:
        await rate.aclose()
        await concurrency.aclose()
