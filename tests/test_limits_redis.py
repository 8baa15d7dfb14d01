"""Redis-backed limiters against the real Redis on 127.0.0.1:6379.

Several tests start worker processes (``tests/_redis_worker.py``) that share one
key with the test, to prove the limits hold across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from act_operator_lib import (
    AsyncBaseNode,
    LimiterKeyConflictError,
    LimiterUnavailableError,
    RateLimiter,
    RedisConcurrencyLimiter,
    RedisRateLimiter,
)
from act_operator_lib.limits._base import Limiter

pytestmark = pytest.mark.redis

WORKER = Path(__file__).with_name("_redis_worker.py")


@pytest.fixture
def key(redis_key: str) -> str:
    """The limiter key of this test; every Redis key under it is deleted afterwards."""
    return redis_key


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def run_worker(*arguments: object) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        *map(str, arguments),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")},
    )


async def worker_output(process: asyncio.subprocess.Process) -> object:
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    return json.loads(stdout)


def most_in_any_window(times_us: list[int], window_us: int) -> int:
    """The largest number of grants inside any half-open window [t, t + window)."""
    times_us = sorted(times_us)
    most, start = 0, 0
    for end, time in enumerate(times_us):
        while times_us[start] <= time - window_us:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_redis_limiters_are_limiters_so_node_policies_take_them(redis_url: str) -> None:
    rate = RedisRateLimiter(redis_url, "k", 10)
    concurrency = RedisConcurrencyLimiter(redis_url, "k", 2)
    assert isinstance(rate, Limiter)
    assert isinstance(concurrency, Limiter)

    class Limited(AsyncBaseNode):
        rate_limiter = rate
        max_concurrency = concurrency

        async def execute(self, state: dict[str, int]) -> dict[str, int]:
            return {"n": state["n"] + 1}

    assert Limited().rate_limiter is rate


async def test_a_node_runs_under_redis_limits(redis_url: str, key: str) -> None:
    rate = RedisRateLimiter(redis_url, f"{key}:rate", 1000)
    concurrency = RedisConcurrencyLimiter(redis_url, f"{key}:concurrency", 1)

    class Limited(AsyncBaseNode):
        async def execute(self, state: dict[str, int]) -> dict[str, int]:
            return {"n": state["n"] + 1}

    node = Limited(rate_limiter=rate, max_concurrency=concurrency)
    try:
        assert await node({"n": 1}) == {"n": 2}
        assert concurrency.statistics().granted == 1
        assert rate.statistics().granted == 1
    finally:
        await rate.aclose()
        await concurrency.aclose()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:notaport", "redis://", "127.0.0.1:6379"]
)
def test_a_malformed_url_is_a_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="malformed Redis URL"):
        RedisRateLimiter(url, "k", 10)


def test_the_url_error_never_shows_the_password() -> None:
    with pytest.raises(ValueError, match="malformed") as raised:
        RedisRateLimiter("http://user:s3cret@127.0.0.1:6379", "k", 10)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize("bad_key", ["", "has space", "new\nline", "x" * 513])
def test_an_invalid_key_is_a_value_error(redis_url: str, bad_key: str) -> None:
    with pytest.raises(ValueError, match="key"):
        RedisConcurrencyLimiter(redis_url, bad_key, 1)


@pytest.mark.parametrize(
    ("arguments", "name"),
    [({"rate": 0}, "rate"), ({"rate": -1}, "rate"), ({"rate": 1, "per": 0}, "per")],
)
def test_a_rate_out_of_range_names_the_argument(
    redis_url: str, arguments: dict[str, float], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        RedisRateLimiter(redis_url, "k", **arguments)


@pytest.mark.parametrize(
    ("arguments", "name"), [({"limit": 0}, "limit"), ({"limit": 1, "lease": 0}, "lease")]
)
def test_a_limit_or_lease_out_of_range_names_the_argument(
    redis_url: str, arguments: dict[str, float], name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        RedisConcurrencyLimiter(redis_url, "k", **arguments)  # type: ignore[arg-type]


def test_on_unavailable_must_be_a_known_choice(redis_url: str) -> None:
    with pytest.raises(ValueError, match="on_unavailable"):
        RedisRateLimiter(redis_url, "k", 1, on_unavailable="ignore")  # type: ignore[arg-type]


async def test_a_key_of_another_kind_of_limiter_is_refused(redis_url: str, key: str) -> None:
    rate = RedisRateLimiter(redis_url, key, 100)
    concurrency = RedisConcurrencyLimiter(redis_url, key, 1)
    try:
        await rate.acquire()
        with pytest.raises(LimiterKeyConflictError, match="rate limiter"):
            await concurrency.acquire()
        assert concurrency.statistics().in_use == 0
    finally:
        await rate.aclose()
        await concurrency.aclose()


async def test_a_key_holding_other_data_is_refused(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    await redis_client.set(key, "somebody else's value")
    rate = RedisRateLimiter(redis_url, key, 100)
    try:
        with pytest.raises(LimiterKeyConflictError, match="a Redis string"):
            await rate.acquire()
    finally:
        await rate.aclose()
    assert await redis_client.get(key) == b"somebody else's value"


async def test_processes_sharing_a_key_never_exceed_the_rate(redis_url: str, key: str) -> None:
    rate, calls = 40, 20
    workers = [await run_worker("rate", redis_url, key, rate, calls) for _ in range(3)]
    limiter = RedisRateLimiter(redis_url, key, rate)
    try:
        own = [await limiter.acquire_with_grant_time() for _ in range(calls)]
    finally:
        await limiter.aclose()
    times = [time for worker in workers for time in await worker_output(worker)]  # type: ignore[attr-defined]
    times_us = [round(time * 1_000_000) for time in [*times, *own] if time is not None]
    assert len(times_us) == 4 * calls
    assert most_in_any_window(times_us, 1_000_000) <= rate


async def test_burst_lets_that_many_through_at_once(redis_url: str, key: str) -> None:
    limiter = RedisRateLimiter(redis_url, key, 1, per=60, burst=3)
    try:
        times = [await limiter.acquire_with_grant_time() for _ in range(3)]
        assert len(set(times)) == 3  # all granted now, at distinct server times
        assert limiter.statistics().total_wait < 60
    finally:
        await limiter.aclose()


async def test_a_grant_is_confirmed_against_the_window_not_only_the_schedule(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisRateLimiter(redis_url, key, 1, per=3600)
    try:
        await limiter.acquire()
        # Rewind the schedule, as if this caller's slot had come: the log of
        # confirmed grants still holds the first grant of the hour, so no grant.
        await redis_client.hset(key, "tat", 0)
        second = asyncio.create_task(limiter.acquire())
        done, _ = await asyncio.wait({second}, timeout=0.2)
        assert not done
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await redis_client.zcard(f"{key}:grants") == 1
    finally:
        await limiter.aclose()


async def test_a_cancellation_arriving_during_a_redis_command_is_never_lost(
    redis_url: str, key: str
) -> None:
    limiter = RedisRateLimiter(redis_url, key, 1_000_000)
    try:
        await limiter.acquire()  # connected, script loaded
        for steps in [*range(40)] * 5:
            task = asyncio.create_task(limiter.acquire())
            for _ in range(steps):  # let the command get that far before cancelling
                await asyncio.sleep(0)
            if task.cancel():
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                await task
    finally:
        await limiter.aclose()


async def test_in_use_counts_the_units_granted_not_the_calls(redis_url: str, key: str) -> None:
    limiter = RedisRateLimiter(redis_url, key, 10, per=3600, burst=10)
    try:
        await limiter.acquire(weight=5)
        await limiter.acquire(weight=2)
        assert limiter.statistics().in_use == 7
        assert limiter.statistics().granted == 7
    finally:
        await limiter.aclose()


async def test_a_weight_above_max_weight_is_refused(redis_url: str) -> None:
    limiter = RedisRateLimiter(redis_url, "k", 10, burst=2)
    try:
        with pytest.raises(ValueError, match="weight"):
            await limiter.acquire(weight=12)
    finally:
        await limiter.aclose()


async def test_processes_sharing_a_key_never_exceed_the_limit(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limit = 3
    workers = [await run_worker("concurrency", redis_url, key, limit, 30) for _ in range(3)]
    most = [await worker_output(worker) for worker in workers]
    assert max(most) <= limit  # type: ignore[type-var]
    assert await redis_client.zcard(f"{key}:holders") == 0


async def test_a_killed_holder_s_permits_return_after_the_lease(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    holder = await run_worker("hold", redis_url, key, 2, 1.0)
    assert holder.stdout is not None
    assert await holder.stdout.readline() == b"held\n"
    assert await redis_client.zcard(f"{key}:holders") == 2
    holder.send_signal(signal.SIGKILL)
    await holder.wait()
    limiter = RedisConcurrencyLimiter(redis_url, key, 2, lease=1.0)
    try:
        async with asyncio.timeout(10):  # a guard: the lease runs out after 1 s
            await limiter.acquire()
            await limiter.acquire()
        assert limiter.statistics().in_use == 2
    finally:
        await limiter.aclose()
    assert await redis_client.zcard(f"{key}:holders") == 0


async def test_a_held_permit_is_renewed_past_its_lease(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisConcurrencyLimiter(redis_url, key, 1, lease=0.3)
    try:
        async with limiter:
            first = await redis_client.zscore(f"{key}:holders", *await holders(redis_client, key))
            while (
                await redis_client.zscore(f"{key}:holders", *await holders(redis_client, key))
                == first
            ):
                await asyncio.sleep(0.05)  # polling the server until a renewal lands
        assert await redis_client.zcard(f"{key}:holders") == 0
    finally:
        await limiter.aclose()


async def holders(redis_client: Redis, key: str) -> list[bytes]:
    return list(await redis_client.zrange(f"{key}:holders", 0, -1))


async def test_a_cancelled_holder_gives_its_permit_back(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisConcurrencyLimiter(redis_url, key, 1)
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with limiter:
            entered.set()
            await asyncio.Event().wait()

    try:
        task = asyncio.create_task(hold_forever())
        await entered.wait()
        assert await redis_client.zcard(f"{key}:holders") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await limiter.aclose()  # waits for the shielded release to finish
        assert await redis_client.zcard(f"{key}:holders") == 0
        assert limiter.statistics().in_use == 0
    finally:
        await limiter.aclose()


async def test_a_cancelled_waiter_takes_no_permit(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisConcurrencyLimiter(redis_url, key, 1)
    try:
        await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        while limiter.statistics().waiting == 0:
            await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await limiter.release()
        assert await redis_client.zcard(f"{key}:holders") == 0
        assert limiter.statistics().in_use == 0
    finally:
        await limiter.aclose()


async def test_a_release_wakes_a_waiter_in_another_process(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    first = RedisConcurrencyLimiter(redis_url, key, 1, lease=60)
    second = RedisConcurrencyLimiter(redis_url, key, 1, lease=60)
    try:
        await first.acquire()
        waiter = asyncio.create_task(second.acquire())
        while await redis_client.exists(f"{key}:wake") == 0 and not waiter.done():
            if second.statistics().waiting:
                break
            await asyncio.sleep(0)
        await first.release()
        async with asyncio.timeout(10):  # a guard; the wake-up token frees it at once
            await waiter
        assert second.statistics().in_use == 1
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("make", [RedisRateLimiter, RedisConcurrencyLimiter])
async def test_refused_connection_fails_naming_server_and_key_not_password(
    make: type[RedisRateLimiter], key: str
) -> None:
    port = closed_port()
    limiter = make(f"redis://:s3cret@127.0.0.1:{port}/0", key, 5, timeout=1)
    try:
        with pytest.raises(LimiterUnavailableError) as raised:
            await limiter.acquire()
    finally:
        await limiter.aclose()
    message = str(raised.value)
    assert f"127.0.0.1:{port}" in message
    assert key in message
    assert "s3cret" not in message
    assert isinstance(raised.value, ConnectionError)


@contextlib.contextmanager
def silent_server() -> socket.socket:  # type: ignore[misc]
    """A socket that accepts connections (the kernel does) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("make", [RedisRateLimiter, RedisConcurrencyLimiter])
async def test_a_server_that_never_answers_fails_within_the_timeout(
    make: type[RedisRateLimiter], key: str
) -> None:
    with silent_server() as server:
        port = server.getsockname()[1]
        limiter = make(f"redis://127.0.0.1:{port}/0", key, 5, timeout=0.2)
        try:
            async with asyncio.timeout(10):  # a guard; the limiter's own timeout fires first
                with pytest.raises(LimiterUnavailableError, match=f"127.0.0.1:{port}"):
                    await limiter.acquire()
        finally:
            await limiter.aclose()


@pytest.mark.parametrize("make", [RedisRateLimiter, RedisConcurrencyLimiter])
async def test_allow_lets_calls_through_when_redis_is_down(
    make: type[RedisRateLimiter], key: str
) -> None:
    limiter = make(f"redis://127.0.0.1:{closed_port()}/0", key, 1, on_unavailable="allow")
    try:
        for _ in range(5):
            await limiter.acquire()
        assert limiter.statistics().granted == 5
    finally:
        await limiter.aclose()


async def test_local_falls_back_to_an_in_process_concurrency_limit(key: str) -> None:
    limiter = RedisConcurrencyLimiter(
        f"redis://127.0.0.1:{closed_port()}/0", key, 1, on_unavailable="local"
    )
    try:
        await limiter.acquire()
        second = asyncio.create_task(limiter.acquire())
        done, _ = await asyncio.wait({second}, timeout=0.2)
        assert not done  # the in-process limit of 1 holds it back
        await limiter.release()
        await second
        await limiter.release()
        assert limiter.statistics().granted == 2
    finally:
        await limiter.aclose()


async def test_local_falls_back_to_an_in_process_rate_limit(key: str) -> None:
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{closed_port()}/0", key, 1, per=3600, on_unavailable="local"
    )
    try:
        await limiter.acquire()
        second = asyncio.create_task(limiter.acquire())
        done, _ = await asyncio.wait({second}, timeout=0.2)
        assert not done  # one per hour, in process
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
    finally:
        await limiter.aclose()


class Proxy:
    """A TCP proxy to Redis on a fixed port, which the test can stop and start."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = closed_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.connect, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for pipe in self.pipes:
            pipe.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)
        await self.server.wait_closed()

    async def connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        pipes = [
            asyncio.create_task(self.pipe(reader, upstream_writer)),
            asyncio.create_task(self.pipe(upstream_reader, writer)),
        ]
        self.pipes.update(pipes)

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_the_limiter_works_again_when_redis_comes_back(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    proxy = Proxy(6379)
    await proxy.start()
    limiter = RedisConcurrencyLimiter(f"redis://127.0.0.1:{proxy.port}/0", key, 2, timeout=1)
    try:
        async with limiter:
            assert await redis_client.zcard(f"{key}:holders") == 1
        await proxy.stop()
        with pytest.raises(LimiterUnavailableError):
            await limiter.acquire()
        await proxy.start()
        async with limiter:
            assert await redis_client.zcard(f"{key}:holders") == 1
    finally:
        await limiter.aclose()
        await proxy.stop()


async def server_time_us(redis_client: Redis) -> int:
    seconds, microseconds = await redis_client.time()
    return int(seconds) * 1_000_000 + int(microseconds)


async def test_a_pause_holds_back_every_process_sharing_the_key(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    pausing = RedisRateLimiter(redis_url, key, 1000)
    other = RedisRateLimiter(redis_url, key, 1000)  # another process's limiter
    try:
        await other.acquire()
        await pausing.pause(0.3)
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        granted = await other.acquire_with_grant_time()
        assert granted is not None
        assert round(granted * 1_000_000) >= paused_until
        assert pausing.statistics().pauses == 1
    finally:
        await pausing.aclose()
        await other.aclose()


async def test_callers_waiting_when_a_pause_starts_are_granted_after_it_in_line(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisRateLimiter(redis_url, key, 2)  # reservations 0.5 s apart
    try:
        await limiter.acquire()
        waiting = [asyncio.create_task(limiter.acquire_with_grant_time()) for _ in range(3)]
        while limiter.statistics().waiting < 3:
            await asyncio.sleep(0)
        await limiter.pause(0.3)
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        times = [round(time * 1_000_000) for time in await asyncio.gather(*waiting)]  # type: ignore[operator]
        assert min(times) >= paused_until
        # Moved back by the pause with their spacing kept: no burst at its end.
        assert max(times) >= paused_until + 2 * 500_000
    finally:
        await limiter.aclose()


async def test_callers_told_their_turn_before_a_pause_all_move_back_by_its_length(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    # Turns 0.5 s apart; the window (20 in 10 s) never binds here, the schedule does.
    limiter = RedisRateLimiter(redis_url, key, 20, per=10)
    try:
        await limiter.acquire()
        first = int(await redis_client.hget(key, "tat"))  # type: ignore[arg-type]
        waiting = [asyncio.create_task(limiter.acquire_with_grant_time()) for _ in range(3)]
        # Until all three have reserved their turns on the server.
        while int(await redis_client.hget(key, "tat")) < first + 3 * 500_000:  # type: ignore[arg-type]
            pass
        await limiter.pause(1.0)  # longer than the first waiter's wait
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        times = sorted(round(time * 1_000_000) for time in await asyncio.gather(*waiting))  # type: ignore[operator]
        assert times[0] >= paused_until
        # Each turn moved back by the pause, spacing kept: no burst at its end.
        assert times[2] - times[0] >= 3 * 500_000 // 2  # unmoved: 500_000 apart
    finally:
        await limiter.aclose()


async def test_a_later_shorter_pause_never_shortens_a_running_one(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisConcurrencyLimiter(redis_url, key, 1)
    try:
        await limiter.pause(60)
        first = await redis_client.hget(key, "paused")
        await limiter.pause(1)
        assert await redis_client.hget(key, "paused") == first
        statistics = limiter.statistics()
        assert statistics.pauses == 2
        assert statistics.paused_for > 1
    finally:
        await limiter.aclose()


async def test_a_paused_concurrency_limiter_grants_no_permit_until_the_pause_ends(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisConcurrencyLimiter(redis_url, key, 2)
    try:
        await limiter.pause(0.3)
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        async with limiter:
            assert await server_time_us(redis_client) >= paused_until
    finally:
        await limiter.aclose()


async def started_refused_worker(
    url: str, key: str, rate: float, per: float
) -> tuple[asyncio.subprocess.Process, float]:
    """A worker process that reported a 429 to an adaptive limiter on ``key`` and now
    waits to be killed, with the rate it learned."""
    worker = await run_worker("refused", url, key, rate, per)
    assert worker.stdout is not None
    async with asyncio.timeout(60):
        learned = json.loads(await worker.stdout.readline())
    assert isinstance(learned, float)
    return worker, learned


async def test_a_429_seen_by_one_process_slows_every_process_on_the_key(
    redis_url: str, key: str
) -> None:
    worker, learned = await started_refused_worker(redis_url, key, 40, 3600)
    limiter = RedisRateLimiter(redis_url, key, 40, per=3600, burst=40, adaptive=True)
    try:
        assert learned == 20.0  # nothing granted in the window: halved
        await limiter.acquire()
        # Recovering 1/20 of 40 per hour since the cut: 1e-4 of 20 is 3.6 s of it.
        assert limiter.statistics().rate == pytest.approx(20.0, rel=1e-4)
    finally:
        worker.kill()
        await worker.wait()
        await limiter.aclose()


async def test_the_shared_rate_is_cut_once_per_episode_whichever_process_reports_it(
    redis_url: str, key: str
) -> None:
    first = RedisRateLimiter(redis_url, key, 40, per=3600, burst=40, adaptive=True)
    second = RedisRateLimiter(redis_url, key, 40, per=3600, burst=40, adaptive=True)
    in_process = RateLimiter(40, per=3600, burst=40, adaptive=True)
    try:
        for limiter in (first, in_process):
            await limiter.acquire(weight=30)
            await limiter.pause(0)
        await second.pause(0)  # the same episode, another client: no second cut
        await in_process.pause(0)
        assert in_process.statistics().rate == pytest.approx(28.5, rel=1e-4)  # 95% of 30
        # Recovering 1/20 of 40 per hour since the cut: 1e-4 of 28.5 is 5 s of it.
        assert first.statistics().rate == pytest.approx(28.5, rel=1e-4)
        assert second.statistics().rate == pytest.approx(28.5, rel=1e-4)
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_killed_process_cannot_leave_the_shared_rate_slowed_down(
    redis_url: str, key: str
) -> None:
    worker, learned = await started_refused_worker(redis_url, key, 40, 0.05)
    worker.send_signal(signal.SIGKILL)
    await worker.wait()
    assert learned == 20.0
    limiter = RedisRateLimiter(redis_url, key, 40, per=0.05, adaptive=True)
    try:
        await limiter.acquire()
        assert limiter.statistics().rate < 40
        # Recovery is computed from the server's clock: about 10 windows of 50 ms.
        async with asyncio.timeout(30):
            while limiter.statistics().rate < 40:
                await limiter.acquire()
        assert limiter.statistics().rate == 40.0
    finally:
        await limiter.aclose()


async def test_a_slowed_down_key_lives_until_its_rate_has_recovered_and_no_longer(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisRateLimiter(redis_url, key, 40, per=60, adaptive=True)
    try:
        await limiter.acquire()
        assert await redis_client.pttl(key) <= 63_000  # a window past the schedule
        # Halved, below anything to hold at: back to 40 after 10 windows of 60 s.
        await limiter.pause(0)
        lives = await redis_client.pttl(key)
    finally:
        await limiter.aclose()
    assert 9 * 60_000 < lives <= 11 * 60_000


async def test_without_adaptive_mode_a_pause_keeps_the_shared_rate(
    redis_url: str, key: str
) -> None:
    adaptive = RedisRateLimiter(redis_url, key, 40, adaptive=True)
    fixed = RedisRateLimiter(redis_url, f"{key}:fixed", 40)
    try:
        for limiter in (adaptive, fixed):
            await limiter.pause(0)
        assert adaptive.statistics().rate == 20.0
        assert fixed.statistics().rate == 40.0
        assert repr(adaptive).endswith("burst=1, adaptive=True, on_unavailable='fail')")
    finally:
        await adaptive.aclose()
        await fixed.aclose()


async def test_pauses_during_an_outage_teach_an_adaptive_local_fallback() -> None:
    limiter = RedisRateLimiter(
        f"redis://127.0.0.1:{closed_port()}/0",
        "k",
        40,
        adaptive=True,
        timeout=0.5,
        on_unavailable="local",
    )
    try:
        await limiter.acquire()  # through the fallback, an in-process RateLimiter
        await limiter.pause(0)
        fallback = limiter._fallback
        assert isinstance(fallback, RateLimiter)
        assert fallback.statistics().rate == pytest.approx(20.0, rel=1e-3)  # cut by half
    finally:
        await limiter.aclose()
