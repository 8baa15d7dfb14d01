"""`RedisMultiRateLimiter` against the real Redis on 127.0.0.1:6379.

Worker processes (``tests/_redis_worker.py``) share a key with the test, to prove
that grants, settlements and pauses reach every process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from tests._openai_server import ChatModels, openai_server
from tests.test_integrations_langchain import QUESTIONS, AskAll, graph_of
from tests.test_limits_redis import closed_port, run_worker, worker_output

from act_operator_lib import LimiterKeyConflictError, RedisRateLimiter
from act_operator_lib.integrations.langchain import with_token_budget
from act_operator_lib.limits import (
    Limiter,
    MultiRateLimiter,
    MultiRateStatistics,
    Rate,
    RedisMultiRateLimiter,
    SupportsPause,
)

pytestmark = pytest.mark.redis

HOUR = 3600.0


@pytest.fixture
async def chat() -> AsyncIterator[ChatModels]:
    """Chat models against a local OpenAI-compatible server (tests/_openai_server.py)."""
    with openai_server() as server:
        models = ChatModels(server)
        yield models
        await models.aclose()


@pytest.fixture
def key(redis_key: str) -> str:
    """The limiter key of this test; every Redis key under it is deleted afterwards."""
    return redis_key


def llm_limiter(url: str, key: str, **arguments: object) -> RedisMultiRateLimiter:
    """10 requests and 100 tokens an hour, each budget usable at once."""
    return RedisMultiRateLimiter(
        url,
        key,
        requests=Rate(10, per=HOUR, burst=10),
        tokens=Rate(100, per=HOUR, burst=100),
        **arguments,  # type: ignore[arg-type]
    )


async def worker_grant(url: str, key: str, cost: int, wait: float) -> float | None:
    """A worker process's grant time for ``cost`` of 100 tokens an hour, or None
    if it was not granted within ``wait`` seconds."""
    worker = await run_worker("multi-rate", url, key, cost, wait)
    try:
        async with asyncio.timeout(60):
            granted = await worker_output(worker)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    assert granted is None or isinstance(granted, float)
    return granted


async def test_the_redis_multi_rate_limiter_is_a_limiter_that_pauses(redis_url: str) -> None:
    limiter = llm_limiter(redis_url, "k")
    assert isinstance(limiter, Limiter)
    assert isinstance(limiter, SupportsPause)
    assert type(limiter).__module__ == "act_operator_lib.limits"


async def test_one_reservation_takes_its_cost_from_every_rate(redis_url: str, key: str) -> None:
    limiter = llm_limiter(redis_url, key)
    try:
        async with limiter.reserve(requests=1, tokens=60) as reservation:
            assert reservation.cost == {"requests": 1, "tokens": 60}
        await limiter.acquire()  # the default costs: 1 request, 1 token
        statistics = limiter.statistics()
        assert isinstance(statistics, MultiRateStatistics)
        assert statistics.granted == 2
        assert statistics.rates["requests"].in_window == 2
        assert statistics.rates["tokens"].in_window == 61
    finally:
        await limiter.aclose()


async def test_a_call_one_rate_cannot_grant_takes_nothing_from_the_others(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = llm_limiter(redis_url, key)
    try:
        await limiter.reserve(requests=1, tokens=100)  # the hour's tokens are gone

        async def one_more() -> None:
            await limiter.reserve(requests=1, tokens=1)

        blocked = asyncio.create_task(one_more())
        done, _ = await asyncio.wait({blocked}, timeout=0.5)
        assert not done
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await redis_client.hget(key, "sum:requests") == b"1"
        assert await redis_client.zcard(f"{key}:requests:grants") == 1
    finally:
        await limiter.aclose()


def most_units_in_any_window(grants: list[tuple[int, int]], window_us: int) -> int:
    """The most units granted inside any half-open window [t, t + window)."""
    grants = sorted(grants)
    most = 0
    for start, _ in grants:
        most = max(most, sum(units for time, units in grants if start <= time < start + window_us))
    return most


async def test_limiters_sharing_a_key_never_exceed_any_rate(redis_url: str, key: str) -> None:
    costs = (30, 5, 10)  # tokens per call, one cost per limiter sharing the key
    limiters = [
        RedisMultiRateLimiter(
            redis_url,
            key,
            requests=Rate(10, per=0.5, burst=10),
            tokens=Rate(100, per=0.5, burst=100, default_cost=cost),
        )
        for cost in costs
    ]

    async def calls(limiter: RedisMultiRateLimiter, cost: int) -> list[tuple[int, int]]:
        times = await asyncio.gather(*(limiter.acquire_with_grant_time() for _ in range(10)))
        return [(round(time * 1_000_000), cost) for time in times if time is not None]

    try:
        grants = [
            grant
            for granted in await asyncio.gather(
                *(calls(limiter, cost) for limiter, cost in zip(limiters, costs, strict=True))
            )
            for grant in granted
        ]
    finally:
        for limiter in limiters:
            await limiter.aclose()
    assert len(grants) == 30
    assert most_units_in_any_window([(time, 1) for time, _ in grants], 500_000) <= 10
    assert most_units_in_any_window(grants, 500_000) <= 100


async def test_redis_holds_one_entry_per_grant_whatever_its_units(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisMultiRateLimiter(
        redis_url, key, tokens=Rate(150_000_000, per=60, burst=150_000_000)
    )
    try:
        await limiter.reserve(tokens=50_000_000)
        await limiter.reserve(tokens=70_000_000)
        assert await redis_client.zcard(f"{key}:tokens:grants") == 2
        assert await redis_client.hlen(f"{key}:tokens:units") == 2
        assert await redis_client.hget(key, "sum:tokens") == b"120000000"
    finally:
        await limiter.aclose()


async def test_a_refund_settled_in_one_process_lets_another_process_through(
    redis_url: str, key: str
) -> None:
    limiter = RedisMultiRateLimiter(redis_url, key, tokens=Rate(100, per=HOUR, burst=100))
    try:
        reservation = await limiter.reserve(tokens=100)
        await reservation.settle(tokens=10)
        assert await worker_grant(redis_url, key, 90, wait=30) is not None
        assert limiter.statistics().rates["tokens"].in_window == 10
    finally:
        await limiter.aclose()


async def test_an_extra_charge_settled_in_one_process_holds_another_process_back(
    redis_url: str, key: str
) -> None:
    limiter = RedisMultiRateLimiter(redis_url, key, tokens=Rate(100, per=HOUR, burst=100))
    try:
        async with limiter.reserve(tokens=10) as reservation:
            await reservation.settle(tokens=100)
        assert await worker_grant(redis_url, key, 1, wait=1) is None
    finally:
        await limiter.aclose()


async def test_a_pause_holds_back_every_process_sharing_the_key(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisMultiRateLimiter(redis_url, key, tokens=Rate(100, per=HOUR, burst=100))
    try:
        await limiter.acquire()
        await limiter.pause(HOUR)
        assert await worker_grant(redis_url, key, 1, wait=1) is None
        statistics = limiter.statistics()
        assert statistics.pauses == 1
        assert statistics.paused_for > 0
    finally:
        await limiter.aclose()


async def test_a_grant_after_a_pause_comes_when_it_ends_on_the_server_clock(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    pausing = llm_limiter(redis_url, key)
    other = llm_limiter(redis_url, key)  # another process's limiter
    try:
        await other.acquire()
        await pausing.pause(0.3)
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        granted = await other.acquire_with_grant_time()
        assert granted is not None
        assert round(granted * 1_000_000) >= paused_until
    finally:
        await pausing.aclose()
        await other.aclose()


async def test_callers_waiting_when_a_pause_starts_are_granted_after_it_in_line(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    # Turns 0.5 s apart; the window (20 in 10 s) never binds here, the schedule does.
    limiter = RedisMultiRateLimiter(redis_url, key, requests=Rate(20, per=10))
    try:
        await limiter.acquire()
        first = int(await redis_client.hget(key, "tat:requests"))  # type: ignore[arg-type]
        waiting = [asyncio.create_task(limiter.acquire_with_grant_time()) for _ in range(3)]
        # Until all three have reserved their turns on the server.
        while int(await redis_client.hget(key, "tat:requests")) < first + 3 * 500_000:  # type: ignore[arg-type]
            pass
        await limiter.pause(1.0)  # longer than the first waiter's wait
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        times = [round(time * 1_000_000) for time in await asyncio.gather(*waiting)]  # type: ignore[operator]
        assert min(times) >= paused_until
        # Moved back by the pause with their spacing kept: no burst at its end.
        assert max(times) >= paused_until + 2 * 500_000
    finally:
        await limiter.aclose()


async def test_when_a_pause_ends_every_rate_gives_its_burst_back_within_its_window(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = llm_limiter(redis_url, key)  # 10 requests an hour, burst 10
    try:
        for _ in range(4):
            await limiter.acquire()
        await limiter.pause(0.3)
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        async with asyncio.timeout(30):  # a guard: spaced, the six would take 30 minutes
            times = await asyncio.gather(*(limiter.acquire_with_grant_time() for _ in range(6)))
        granted = [round(time * 1_000_000) for time in times]  # type: ignore[operator]
        # The six left of the window, as soon as the pause is over (not 6 minutes apart).
        assert min(granted) >= paused_until
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # the window is full for the hour
                await limiter.acquire()
    finally:
        await limiter.aclose()


async def test_a_pause_over_a_full_window_does_not_push_the_schedule_past_its_end(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    # The window (20 every 2 s) is full and its schedule 2 s ahead when the pause
    # begins. Once the pause is over the window has room for 20 again: they go at
    # once, as in process, not 0.1 s apart from 0.1 s after it (the schedule moved
    # by the pause's length on top of what was granted).
    limiter = RedisMultiRateLimiter(redis_url, key, requests=Rate(20, per=2, burst=20))
    try:
        await asyncio.gather(*(limiter.acquire() for _ in range(20)))
        await limiter.pause(2.2)
        paused_until = int(await redis_client.hget(key, "paused"))  # type: ignore[arg-type]
        async with asyncio.timeout(30):
            times = await asyncio.gather(*(limiter.acquire_with_grant_time() for _ in range(20)))
        granted = [round(time * 1_000_000) for time in times]  # type: ignore[operator]
        assert min(granted) >= paused_until
        # Spaced, the last would come 2 s after the pause; together, within moments.
        assert max(granted) - paused_until < 1_000_000
    finally:
        await limiter.aclose()


async def test_settling_twice_is_a_runtime_error(redis_url: str, key: str) -> None:
    limiter = llm_limiter(redis_url, key)
    try:
        reservation = await limiter.reserve(tokens=10)
        await reservation.settle(tokens=5)
        with pytest.raises(RuntimeError, match="is closed"):
            await reservation.settle(tokens=5)
        assert limiter.statistics().rates["tokens"].granted == 5
    finally:
        await limiter.aclose()


async def test_settling_after_the_async_with_block_is_a_runtime_error(
    redis_url: str, key: str
) -> None:
    limiter = llm_limiter(redis_url, key)
    try:
        async with limiter.reserve(tokens=10) as reservation:
            pass
        with pytest.raises(RuntimeError, match="settled once"):
            await reservation.settle(tokens=5)
    finally:
        await limiter.aclose()


async def test_settling_an_unknown_rate_or_a_negative_cost_is_refused(
    redis_url: str, key: str
) -> None:
    limiter = llm_limiter(redis_url, key)
    try:
        reservation = await limiter.reserve(tokens=10)
        with pytest.raises(TypeError, match=r"Reservation.settle\(images=...\)"):
            await reservation.settle(images=1)
        with pytest.raises(ValueError, match=r"Reservation.settle\(tokens=-1\)"):
            await reservation.settle(tokens=-1)
        await reservation.settle(tokens=12)  # still open: the refused settles took nothing
    finally:
        await limiter.aclose()


async def test_a_key_of_another_kind_of_limiter_is_refused(redis_url: str, key: str) -> None:
    rate = RedisRateLimiter(redis_url, key, 100)
    multi = llm_limiter(redis_url, key)
    try:
        await rate.acquire()
        with pytest.raises(LimiterKeyConflictError, match="rate limiter"):
            await multi.acquire()
    finally:
        await rate.aclose()
        await multi.aclose()


async def test_allow_lets_calls_through_when_redis_is_down(key: str) -> None:
    limiter = llm_limiter(f"redis://127.0.0.1:{closed_port()}/0", key, on_unavailable="allow")
    try:
        for _ in range(20):  # past both hourly budgets
            async with limiter.reserve(tokens=100) as reservation:
                await reservation.settle(tokens=50)
        assert limiter.statistics().granted == 20
    finally:
        await limiter.aclose()


async def test_local_falls_back_to_an_in_process_multi_rate_limit(key: str) -> None:
    limiter = llm_limiter(f"redis://127.0.0.1:{closed_port()}/0", key, on_unavailable="local")
    try:
        reservation = await limiter.reserve(tokens=100)
        await reservation.settle(tokens=40)  # refunded in process
        await limiter.reserve(tokens=60)

        async def one_more() -> None:
            await limiter.reserve(tokens=1)

        blocked = asyncio.create_task(one_more())
        done, _ = await asyncio.wait({blocked}, timeout=0.2)
        assert not done  # 100 tokens an hour, in process
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
    finally:
        await limiter.aclose()


async def test_a_sum_drifted_above_the_log_is_mended_without_granting_past_the_limit(
    redis_url: str, redis_client: Redis, key: str
) -> None:
    limiter = RedisMultiRateLimiter(redis_url, key, tokens=Rate(100, per=HOUR, burst=100))
    try:
        await limiter.reserve(tokens=95)
        await redis_client.hset(key, "sum:tokens", 1_000)  # as if tampered with

        async def past_the_limit() -> None:
            await limiter.reserve(tokens=10)

        blocked = asyncio.create_task(past_the_limit())
        done, _ = await asyncio.wait({blocked}, timeout=0.5)
        assert not done  # the log holds 95 of the hour's 100 tokens
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        assert await redis_client.hget(key, "sum:tokens") == b"95"
    finally:
        await limiter.aclose()


async def test_a_chat_model_in_a_graph_settles_each_call_to_its_usage_in_redis(
    redis_url: str, redis_client: Redis, key: str, chat: ChatModels
) -> None:
    limiter = llm_limiter(redis_url, key)
    model = with_token_budget(chat(), limiter, estimate=50)
    try:
        result = await graph_of(AskAll(model)).ainvoke(QUESTIONS)
        assert len(result["answers"]) == 3
        assert await redis_client.hget(key, "sum:requests") == b"3"
        assert await redis_client.hget(key, "sum:tokens") == str(10 + 20 + 30).encode()
    finally:
        await limiter.aclose()


async def test_a_margin_counts_each_grant_that_much_longer_in_redis(
    redis_url: str, key: str
) -> None:
    with_margin = RedisMultiRateLimiter(
        redis_url, key, tokens=Rate(10, per=0.05, burst=10, margin=HOUR)
    )
    without = RedisMultiRateLimiter(
        redis_url, f"{key}:without", tokens=Rate(10, per=0.05, burst=10)
    )
    try:
        for limiter in (with_margin, without):
            await limiter.reserve(tokens=10)
        async with asyncio.timeout(30):  # a guard: the window is 50 ms
            await without.reserve(tokens=10)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):  # the margin holds the grant an hour
                await with_margin.reserve(tokens=1)
    finally:
        await with_margin.aclose()
        await without.aclose()


async def test_a_429_is_blamed_on_the_fullest_rate_for_every_process_as_in_process(
    redis_url: str, key: str
) -> None:
    worker = await run_worker("multi-refused", redis_url, key, 90, HOUR)
    async with asyncio.timeout(60):
        learned = await worker_output(worker)
    in_process = MultiRateLimiter(
        requests=Rate(10, per=HOUR, burst=10), tokens=Rate(100, per=HOUR, burst=100), adaptive=True
    )
    await in_process.reserve(tokens=90)
    await in_process.pause(0.01)
    expected = {name: rate.rate for name, rate in in_process.statistics().rates.items()}
    assert expected == {"requests": 10.0, "tokens": pytest.approx(85.5, rel=1e-4)}  # 95% of 90
    assert learned == pytest.approx(expected, rel=1e-4)  # recovering since, by a hair
    limiter = llm_limiter(redis_url, key, adaptive=True)
    try:
        await limiter.pause(0)  # the same episode: no second cut, and it learns the first
        rates = limiter.statistics().rates
        assert {name: rate.rate for name, rate in rates.items()} == pytest.approx(
            expected, rel=1e-4
        )
    finally:
        await limiter.aclose()


async def test_rates_cut_by_one_process_recover_for_every_process(redis_url: str, key: str) -> None:
    worker = await run_worker("multi-refused", redis_url, key, 10, 0.05)
    async with asyncio.timeout(60):
        learned = await worker_output(worker)
    assert learned == {"requests": 5.0, "tokens": 50.0}  # both a tenth full: both halved
    limiter = RedisMultiRateLimiter(
        redis_url,
        key,
        requests=Rate(10, per=0.05, burst=10),
        tokens=Rate(100, per=0.05, burst=100),
        adaptive=True,
    )
    try:
        await limiter.acquire()
        async with asyncio.timeout(30):  # about 10 windows of 50 ms, on the server's clock
            while sum(rate.rate for rate in limiter.statistics().rates.values()) < 110:
                await limiter.acquire()
        assert {name: rate.rate for name, rate in limiter.statistics().rates.items()} == {
            "requests": 10.0,
            "tokens": 100.0,
        }
    finally:
        await limiter.aclose()
