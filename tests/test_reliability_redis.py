"""Redis faults against a real redis-server this test starts (docs/reliability.md).

The fixture starts its own ``redis-server`` on a free port of 127.0.0.1 (never the
shared one on 6379), and the tests stop and start it mid-run, or point a limiter at
a socket that accepts connections and never answers. Behaviour follows the
documented ``on_unavailable`` choice; no call hangs (each raises
`LimiterUnavailableError` well inside a generous outer guard); no permit is granted
twice (holders are counted inside the critical section across the outage).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from tests._reliability import SEEDS, Boom, Inside, assert_no_new_tasks, drive

from act_operator_lib import LimiterUnavailableError, RedisConcurrencyLimiter, RedisRateLimiter
from act_operator_lib.cache import RedisCacheBackend
from act_operator_lib.limits import OnUnavailable, _redis_base

pytestmark = pytest.mark.redis

GUARD = 30.0
"""Outer bound on any one call; the limiter's own timeout (0.3 s) must fire first."""
CALLERS = 200
"""Concurrent callers per round: twice the connections of redis-py's default pool."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OwnRedis:
    """A redis-server subprocess on its own port, which the test stops and starts."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self.process = process
        assert process.stdout is not None
        # Ready when it says so in its log (no polling, no sleep).
        while b"Ready to accept connections" not in (line := await process.stdout.readline()):
            assert line, "redis-server exited before it was ready"

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.communicate()


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI requires it")
        pytest.skip(message)
    server = OwnRedis(binary)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def silent_port() -> AsyncIterator[int]:  # type: ignore[misc]
    """A listening socket nobody accepts on: the kernel connects, nobody ever answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield int(server.getsockname()[1])
    finally:
        server.close()


async def hold_and_count(limiter: RedisConcurrencyLimiter, inside: Inside) -> None:
    async with limiter:
        inside.enter()
        try:
            assert inside.now <= limiter.limit, f"{inside.now} holders, limit {limiter.limit}"
            await asyncio.sleep(0.001)
        finally:
            inside.leave()


async def test_fail_raises_during_an_outage_grants_nothing_twice_and_recovers(
    own_redis: OwnRedis,
) -> None:
    limiter = RedisConcurrencyLimiter(own_redis.url, "outage", 3, timeout=0.3)
    inside = Inside()
    before = asyncio.all_tasks()
    try:
        async with asyncio.timeout(GUARD):
            # More callers than redis-py's pool has connections (100).
            await asyncio.gather(*(hold_and_count(limiter, inside) for _ in range(CALLERS)))
            holders = [asyncio.create_task(hold_and_count(limiter, inside)) for _ in range(6)]
            await own_redis.stop()  # mid-run: some hold a permit, some wait
            outcomes = await asyncio.gather(*holders, return_exceptions=True)
            for outcome in outcomes:
                assert outcome is None or isinstance(outcome, LimiterUnavailableError), outcome
            for _ in range(5):  # each call gives up within its own timeout
                with pytest.raises(LimiterUnavailableError, match=f"127.0.0.1:{own_redis.port}"):
                    await limiter.acquire()
            assert inside.now == 0
            await own_redis.start()
            # Every pooled connection is now stale; none of them may reach a caller.
            await asyncio.gather(*(hold_and_count(limiter, inside) for _ in range(CALLERS)))
        statistics = limiter.statistics()
        assert (statistics.in_use, statistics.waiting) == (0, 0), statistics
        assert inside.peak <= 3
    finally:
        await limiter.aclose()
    assert_no_new_tasks(before, "outage")


@pytest.mark.parametrize("on_unavailable", ["allow", "local"])
async def test_allow_and_local_carry_on_through_an_outage(
    own_redis: OwnRedis, on_unavailable: OnUnavailable
) -> None:
    limiter = RedisConcurrencyLimiter(
        own_redis.url, "outage", 2, timeout=0.3, on_unavailable=on_unavailable
    )
    inside = Inside()
    try:
        async with asyncio.timeout(GUARD):
            await asyncio.gather(*(hold_and_count(limiter, inside) for _ in range(50)))
            await own_redis.stop()
            inside.peak = 0
            # Between the stop and the restart no permit from Redis is held, so the
            # fallback alone decides: "local" keeps the limit, "allow" does not.
            await asyncio.gather(*(hold_and_count_unbounded(limiter, inside) for _ in range(8)))
            if on_unavailable == "local":
                assert inside.peak <= 2
            else:
                assert inside.peak == 8
            await own_redis.start()
            # Documented: after a failure the fallback is used for 1 s before Redis
            # is asked again, so only "local" still counts against a limit here.
            count = hold_and_count if on_unavailable == "local" else hold_and_count_unbounded
            await asyncio.gather(*(count(limiter, inside) for _ in range(50)))
        statistics = limiter.statistics()
        assert (statistics.in_use, statistics.waiting) == (0, 0), statistics
    finally:
        await limiter.aclose()


async def hold_and_count_unbounded(limiter: RedisConcurrencyLimiter, inside: Inside) -> None:
    async with limiter:
        inside.enter()
        try:
            await asyncio.sleep(0.01)
        finally:
            inside.leave()


async def test_rate_limiter_fails_during_an_outage_and_recovers(own_redis: OwnRedis) -> None:
    limiter = RedisRateLimiter(own_redis.url, "outage-rate", 1000, timeout=0.3)
    try:
        async with asyncio.timeout(GUARD):
            for _ in range(20):
                await limiter.acquire()
            await own_redis.stop()
            for _ in range(3):
                with pytest.raises(LimiterUnavailableError):
                    await limiter.acquire()
            await own_redis.start()
            for _ in range(20):
                await limiter.acquire()
        assert limiter.statistics().waiting == 0
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("on_unavailable", ["fail", "allow", "local"])
@pytest.mark.parametrize("make", [RedisRateLimiter, RedisConcurrencyLimiter])
async def test_a_server_that_never_answers_follows_on_unavailable(
    silent_port: int, on_unavailable: OnUnavailable, make: type[RedisRateLimiter]
) -> None:
    limiter = make(
        f"redis://127.0.0.1:{silent_port}/0",
        "silent",
        2,
        timeout=0.3,
        on_unavailable=on_unavailable,
    )
    before = asyncio.all_tasks()
    try:
        async with asyncio.timeout(GUARD):  # a guard; the limiter's timeout fires first
            if on_unavailable == "fail":
                with pytest.raises(LimiterUnavailableError, match=f"127.0.0.1:{silent_port}"):
                    await limiter.acquire()
            else:
                await limiter.acquire()
                await limiter.release()
        assert limiter.statistics().waiting == 0
    finally:
        await limiter.aclose()
    assert_no_new_tasks(before, "silent")


async def test_a_restart_reaches_no_caller_through_a_stale_pooled_connection(
    own_redis: OwnRedis,
) -> None:
    """Every pooled connection dies with the server; each one's next command is sent
    again on a fresh connection instead of failing."""
    rate = RedisRateLimiter(own_redis.url, "stale-rate", 1_000_000, burst=1000, timeout=0.3)
    concurrency = RedisConcurrencyLimiter(own_redis.url, "stale", 20, timeout=0.3)
    try:
        async with asyncio.timeout(GUARD):
            await asyncio.gather(*(rate.acquire() for _ in range(20)))
            await asyncio.gather(*(hold_and_count(concurrency, Inside()) for _ in range(20)))
            await own_redis.stop()
            await own_redis.start()
            await asyncio.gather(*(rate.acquire() for _ in range(20)))
            await asyncio.gather(*(hold_and_count(concurrency, Inside()) for _ in range(20)))
    finally:
        await rate.aclose()
        await concurrency.aclose()


async def test_five_hundred_waiters_in_one_process_all_get_a_permit(
    own_redis: OwnRedis,
) -> None:
    """Waiting takes no connection per waiter: far more waiters than the pool has
    connections all get in, never more than ``limit`` at once."""
    limiter = RedisConcurrencyLimiter(own_redis.url, "crowd", 5, timeout=0.3)
    inside = Inside()
    try:
        async with asyncio.timeout(GUARD):
            await asyncio.gather(*(hold_and_count(limiter, inside) for _ in range(500)))
        assert inside.entered == 500
        assert inside.peak <= 5
        statistics = limiter.statistics()
        assert (statistics.in_use, statistics.waiting, statistics.granted) == (0, 0, 500)
    finally:
        await limiter.aclose()


async def test_waiters_of_a_limit_above_the_pool_size_wait_for_another_process(
    own_redis: OwnRedis,
) -> None:
    """Another process holds every permit of a limit of 150; 300 callers here wait
    for its releases, with one blocking wait on the server, not one each."""
    # No outage here: the default timeout, so a busy machine is not taken for one.
    other = RedisConcurrencyLimiter(own_redis.url, "wide", 150)
    limiter = RedisConcurrencyLimiter(own_redis.url, "wide", 150)
    inside = Inside()
    try:
        async with asyncio.timeout(GUARD):
            for _ in range(150):
                await other.acquire()
            waiters = asyncio.gather(*(hold_and_count(limiter, inside) for _ in range(300)))
            for _ in range(150):
                await other.release()
            await waiters
        assert (inside.entered, inside.now) == (300, 0)
        assert inside.peak <= 150
    finally:
        await other.aclose()
        await limiter.aclose()


async def test_a_restart_that_forgets_the_leases_never_lets_one_process_exceed_the_limit(
    own_redis: OwnRedis,
) -> None:
    """Redis restarted without persistence forgets who holds a permit; this
    process's own in-process limit still keeps its holders at ``limit``."""
    limiter = RedisConcurrencyLimiter(own_redis.url, "forgotten", 2, timeout=0.3)
    inside = Inside()
    try:
        async with asyncio.timeout(GUARD):
            for _ in range(2):
                await limiter.acquire()
                inside.enter()
            await own_redis.stop()
            await own_redis.start()  # the server holds no lease now
            latecomers = [asyncio.create_task(hold_and_count(limiter, inside)) for _ in range(5)]
            # The server would grant them at once; the process's own limit must not.
            done, _ = await asyncio.wait(latecomers, timeout=0.5)
            assert not done
            assert inside.now == 2
            for _ in range(2):
                inside.leave()
                await limiter.release()
            await asyncio.gather(*latecomers)
        assert inside.peak <= 2
        assert limiter.statistics().in_use == 0
    finally:
        await limiter.aclose()


async def test_switching_to_the_local_fallback_keeps_the_permits_held_from_redis(
    own_redis: OwnRedis,
) -> None:
    """Permits taken from Redis before an outage count against the ``"local"``
    fallback during it: the process stays within ``limit`` across the switch."""
    limiter = RedisConcurrencyLimiter(
        own_redis.url, "switch", 2, timeout=0.3, on_unavailable="local"
    )
    inside = Inside()
    try:
        async with asyncio.timeout(GUARD):
            await limiter.acquire()
            inside.enter()
            await own_redis.stop()
            await asyncio.gather(*(hold_and_count(limiter, inside) for _ in range(10)))
            assert inside.peak <= 2
            inside.leave()
            await limiter.release()
            await own_redis.start()
    finally:
        await limiter.aclose()
    assert limiter.statistics().in_use == 0


async def test_a_rate_limiter_reloads_its_script_the_server_forgot(own_redis: OwnRedis) -> None:
    """The script runs on the limiter's own connection (EVALSHA), and through the
    pool when that one is busy; both load it again after ``SCRIPT FLUSH``."""
    limiter = RedisRateLimiter(own_redis.url, "flushed", 1_000_000, burst=100, timeout=0.3)
    try:
        async with asyncio.timeout(GUARD):
            await limiter.acquire()
            admin = Redis.from_url(own_redis.url)
            try:
                await admin.script_flush()
            finally:
                await admin.aclose()
            await asyncio.gather(*(limiter.acquire() for _ in range(20)))
        assert limiter.statistics().granted == 21
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("on_unavailable", ["fail", "local"])
def test_limiters_and_cache_built_from_a_url_work_under_one_event_loop_after_another(
    redis_url: str, on_unavailable: OnUnavailable
) -> None:
    """Pytest, CLIs and workers run a new loop per job; the objects outlive each loop."""
    key = f"test:act_operator_lib:loops:{uuid.uuid4().hex}"
    rate = RedisRateLimiter(redis_url, f"{key}:rate", 1000, on_unavailable=on_unavailable)
    concurrency = RedisConcurrencyLimiter(
        redis_url, f"{key}:concurrency", 2, on_unavailable=on_unavailable
    )
    cache = RedisCacheBackend(redis_url, f"{key}:cache:")

    async def job(number: int) -> None:
        assert await rate.acquire_with_grant_time() is not None  # from Redis, no fallback
        async with concurrency:
            await cache.set("entry", number, ttl=60)
            assert await cache.get("entry") == (True, number)

    async def close() -> None:
        await cache.delete("entry")
        await rate.aclose()
        await concurrency.aclose()
        await cache.aclose()

    for number in range(3):
        asyncio.run(job(number))
    asyncio.run(close())
    assert concurrency.statistics().granted == 3


@pytest.mark.parametrize("on_unavailable", ["allow", "local"])
async def test_a_permit_granted_by_the_fallback_is_released_to_it_not_to_redis(
    own_redis: OwnRedis, on_unavailable: OnUnavailable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller let in during an outage, leaving after one let in by Redis after
    it, must not delete that caller's lease (another process would then get in)."""
    monkeypatch.setattr(_redis_base, "_RETRY_REDIS_AFTER", 0.0)  # ask Redis again at once
    limiter = RedisConcurrencyLimiter(
        own_redis.url, "leases", 2, timeout=0.3, on_unavailable=on_unavailable
    )
    entered, leave = asyncio.Event(), asyncio.Event()

    async def during_the_outage() -> None:
        async with limiter:
            entered.set()
            await leave.wait()

    try:
        async with asyncio.timeout(GUARD):
            await own_redis.stop()
            early = asyncio.create_task(during_the_outage())
            await entered.wait()
            await own_redis.start()
            await limiter.acquire()  # after the outage: a lease in Redis
            admin = Redis.from_url(own_redis.url)
            try:
                assert await admin.zcard("leases:holders") == 1
                leave.set()
                await early
                assert await admin.zcard("leases:holders") == 1  # still held, by us
                await limiter.release()
                assert await admin.zcard("leases:holders") == 0
            finally:
                await admin.aclose()
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("make", [RedisRateLimiter, RedisConcurrencyLimiter])
async def test_a_primary_refusing_writes_for_want_of_replicas_counts_as_unavailable(
    own_redis: OwnRedis, make: type[RedisRateLimiter]
) -> None:
    """``min-replicas-to-write`` with no replica: every grant is refused (NOREPLICAS),
    which is the server being unavailable, so ``on_unavailable`` decides."""
    admin = Redis.from_url(own_redis.url)
    limiter = make(own_redis.url, "noreplicas", 5, timeout=0.3)
    fallback = make(own_redis.url, "noreplicas", 5, timeout=0.3, on_unavailable="local")
    try:
        await admin.config_set("min-replicas-to-write", 1)
        with pytest.raises(LimiterUnavailableError, match=f"127.0.0.1:{own_redis.port}"):
            await limiter.acquire()
        await fallback.acquire()
        await fallback.release()
    finally:
        await limiter.aclose()
        await fallback.aclose()
        await admin.aclose()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={seed}" for seed in SEEDS])
def test_limiters_and_cache_under_faults_work_under_one_event_loop_after_another(
    seed: int, redis_url: str
) -> None:
    """Built once from a URL, then used under six `asyncio.run` in turn (as pytest,
    CLIs and workers do), each with errors, timeouts and cancelled callers; with
    ``on_unavailable="fail"``, so a client left on a closed loop would surface."""
    rng = random.Random(seed)
    key = f"test:act_operator_lib:reliability-loops:{uuid.uuid4().hex}"
    rate = RedisRateLimiter(redis_url, f"{key}:rate", 5_000, timeout=5)
    concurrency = RedisConcurrencyLimiter(redis_url, f"{key}:slots", 3, timeout=5)
    cache = RedisCacheBackend(redis_url, f"{key}:cache:", timeout=5)
    inside = Inside()
    kinds = ["ok", "error", "timeout", "cache"]

    async def one_loop(round_: int) -> None:
        plan = [
            (rng.choices(kinds, weights=[45, 15, 20, 20])[0], rng.randint(0, 2) / 1000)
            for _ in range(150)
        ]
        before = asyncio.all_tasks()

        async def operation(number: int) -> str:
            kind, seconds = plan[number]
            if kind == "cache":
                await cache.set(f"entry-{number % 7}", [round_, number], ttl=60)
                found, value = await cache.get(f"entry-{number % 7}")
                return "ok" if found and value[0] == round_ else f"stale {value!r}"
            try:
                async with asyncio.timeout(0.002 if kind == "timeout" else None):
                    await rate.acquire()
                    async with concurrency:
                        inside.enter()
                        try:
                            assert inside.now <= concurrency.limit, f"seed={seed}"
                            await asyncio.sleep(seconds)
                            if kind == "error":
                                raise Boom(number)
                        finally:
                            inside.leave()
            except TimeoutError:
                return "timed out"
            return "ok"

        async with asyncio.timeout(GUARD):
            driven = await drive(
                rng, len(plan), operation, at_once=10, cancel_share=0.15, cancel_within=0.003
            )
        for outcome in driven.outcomes(seed):
            assert outcome in ("ok", "timed out") or isinstance(outcome, Boom), (
                f"seed={seed} loop={round_}: {outcome!r}"
            )
        statistics = concurrency.statistics()
        assert (statistics.in_use, statistics.waiting) == (0, 0), f"seed={seed}: {statistics}"
        assert_no_new_tasks(before, seed)

    async def close_and_count() -> int:
        await rate.aclose()
        await concurrency.aclose()  # waits for the releases of cancelled holders
        await cache.aclose()
        admin = Redis.from_url(redis_url)
        try:
            holders = int(await admin.zcard(f"{key}:slots:holders"))
            names = [name async for name in admin.scan_iter(match=f"{key}*")]
            if names:
                await admin.delete(*names)
        finally:
            await admin.aclose()
        return holders

    for round_ in range(6):
        asyncio.run(one_loop(round_))
    assert asyncio.run(close_and_count()) == 0, f"seed={seed}: permits left on the server"
    assert inside.entered > 0, f"seed={seed}"


async def hold_until(
    limiter: RedisConcurrencyLimiter, entered: asyncio.Event, leave: asyncio.Event
) -> None:
    async with limiter:
        entered.set()
        await leave.wait()


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={seed}" for seed in SEEDS])
async def test_leases_through_outages_and_recoveries_are_released_where_granted(
    seed: int, own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rounds of: Redis stops, callers get in by the fallback; Redis comes back,
    callers of this process and of another (a second limiter on the key, as another
    process would be) get in through Redis; the fallback's callers leave in a seeded
    order. Redis must count exactly the callers it let in at every step: a fallback
    caller leaving never frees another caller's lease."""
    monkeypatch.setattr(_redis_base, "_RETRY_REDIS_AFTER", 0.0)  # ask Redis again at once
    rng = random.Random(seed)
    limit = 3
    on_unavailable: OnUnavailable = rng.choice(["allow", "local"])
    here = RedisConcurrencyLimiter(
        own_redis.url, "leases", limit, timeout=0.3, on_unavailable=on_unavailable
    )
    other = RedisConcurrencyLimiter(own_redis.url, "leases", limit, timeout=0.3)
    try:
        async with asyncio.timeout(GUARD):
            for round_ in range(3):
                where = f"seed={seed} round={round_} {on_unavailable}"
                await own_redis.stop()
                early = rng.randint(1, 2)
                entered = [asyncio.Event() for _ in range(early)]
                leave = [asyncio.Event() for _ in range(early)]

                outage = [
                    asyncio.create_task(hold_until(here, entered[n], leave[n]))
                    for n in range(early)
                ]
                for event in entered:
                    await event.wait()
                await own_redis.start()
                admin = Redis.from_url(own_redis.url)
                try:
                    ours = rng.randint(1, limit - early)
                    for _ in range(ours):
                        await here.acquire()
                    theirs = rng.randint(0, limit - ours)
                    for _ in range(theirs):
                        await other.acquire()
                    assert await admin.zcard("leases:holders") == ours + theirs, where
                    for number in rng.sample(range(early), early):
                        leave[number].set()
                        await outage[number]
                        assert await admin.zcard("leases:holders") == ours + theirs, (
                            f"{where}: a caller let in by the fallback freed a lease"
                        )
                    for _ in range(ours):
                        await here.release()
                    for _ in range(theirs):
                        await other.release()
                    assert await admin.zcard("leases:holders") == 0, where
                finally:
                    await admin.aclose()
    finally:
        await here.aclose()
        await other.aclose()
