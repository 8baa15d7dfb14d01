"""`cached`: single-flight, TTL, keys, and the in-memory and Redis backends."""

from __future__ import annotations

import asyncio
import pickle

import pytest
from redis.asyncio import Redis

from act_operator_lib.cache import MemoryCacheBackend, RedisCacheBackend, cached


async def test_concurrent_identical_calls_run_once_and_share_the_result() -> None:
    calls = 0
    release = asyncio.Event()

    @cached(ttl=60)
    async def lookup(user: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await release.wait()
        return {"user": user}

    tasks = [asyncio.create_task(lookup(7)) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(result == {"user": 7} for result in results)
    assert await lookup(7) == {"user": 7}
    assert calls == 1


async def test_a_failure_reaches_every_waiter_and_is_not_cached() -> None:
    calls = 0
    release = asyncio.Event()

    @cached(ttl=60)
    async def flaky() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        if calls == 1:
            raise RuntimeError("upstream down")
        return "ok"

    tasks = [asyncio.create_task(flaky()) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(result) for result in results] == [RuntimeError] * 3
    assert await flaky() == "ok"
    assert calls == 2


async def test_cancelling_one_waiter_leaves_the_computation_to_the_others() -> None:
    release = asyncio.Event()

    @cached(ttl=60)
    async def slow() -> int:
        await release.wait()
        return 42

    first = asyncio.create_task(slow())
    second = asyncio.create_task(slow())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()
    assert await second == 42


async def test_the_last_waiter_leaving_cancels_the_computation() -> None:
    started = asyncio.Event()
    stopped = asyncio.Event()

    @cached(ttl=60)
    async def slow() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return 1

    waiter = asyncio.create_task(slow())
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await stopped.wait()


async def test_a_caller_after_the_last_waiter_left_gets_a_fresh_computation() -> None:
    calls = 0
    started = asyncio.Event()
    winding_down = asyncio.Event()
    wound_down = asyncio.Event()

    @cached(ttl=60)
    async def slow() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                # The cancelled computation is still running when the next caller comes.
                winding_down.set()
                await wound_down.wait()
                raise
        return calls

    waiter = asyncio.create_task(slow())
    await started.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await winding_down.wait()
    # Let the cancelled computation end as soon as this caller waits for its result.
    asyncio.get_running_loop().call_soon(wound_down.set)
    assert await slow() == 2


@pytest.mark.looptime
async def test_an_entry_expires_after_its_ttl() -> None:
    calls = 0

    @cached(ttl=30)
    async def value() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await value() == 1
    await asyncio.sleep(29)
    assert await value() == 1
    await asyncio.sleep(2)
    assert await value() == 2


async def test_the_memory_backend_drops_the_least_recently_used_entry() -> None:
    backend = MemoryCacheBackend(max_entries=2)
    calls: list[int] = []

    @cached(ttl=60, backend=backend)
    async def square(number: int) -> int:
        calls.append(number)
        return number * number

    await square(1)
    await square(2)
    await square(1)  # 1 is now the most recently used
    await square(3)  # evicts 2
    await square(1)
    await square(2)
    assert calls == [1, 2, 3, 2]
    assert len(backend) == 2


async def test_keyword_and_positional_calls_share_an_entry() -> None:
    calls = 0

    @cached(ttl=60)
    async def greet(name: str, punctuation: str = "!") -> str:
        nonlocal calls
        calls += 1
        return name + punctuation

    assert await greet("a") == await greet(name="a") == await greet("a", "!")
    assert calls == 1


async def test_methods_share_entries_across_instances_unless_the_key_says_otherwise() -> None:
    calls: list[str] = []

    class Weather:
        def __init__(self, unit: str) -> None:
            self.unit = unit

        @cached(ttl=60)
        async def forecast(self, city: str) -> str:
            calls.append(city)
            return city

        @cached(ttl=60, key=lambda self, city: f"{self.unit}:{city}")
        async def temperature(self, city: str) -> str:
            calls.append(self.unit)
            return f"20 {self.unit}"

    celsius, fahrenheit = Weather("C"), Weather("F")
    assert await celsius.forecast("Oslo") == await fahrenheit.forecast("Oslo")
    assert await celsius.temperature("Oslo") == "20 C"
    assert await fahrenheit.temperature("Oslo") == "20 F"
    assert calls == ["Oslo", "C", "F"]


async def test_an_argument_json_cannot_encode_needs_a_key_function() -> None:
    @cached(ttl=60)
    async def identity(value: object) -> object:
        return value

    with pytest.raises(TypeError, match="key="):
        await identity(object())


async def test_by_default_every_caller_gets_the_cached_object_itself() -> None:
    @cached(ttl=60)
    async def profile(user: int) -> dict[str, list[str]]:
        return {"tags": []}

    first = await profile(1)
    first["tags"].append("changed")
    assert await profile(1) is first
    assert (await profile(1))["tags"] == ["changed"]


async def test_copy_gives_each_caller_its_own_deep_copy() -> None:
    calls = 0

    @cached(ttl=60, copy=True)
    async def profile(user: int) -> dict[str, list[str]]:
        nonlocal calls
        calls += 1
        return {"tags": ["a"]}

    first = await profile(1)
    first["tags"].append("changed by the first caller")
    second = await profile(1)
    assert second == {"tags": ["a"]}
    assert second is not first
    assert calls == 1


async def test_copy_gives_concurrent_waiters_distinct_copies() -> None:
    release = asyncio.Event()

    @cached(ttl=60, copy=True)
    async def profile(user: int) -> dict[str, list[str]]:
        await release.wait()
        return {"tags": ["a"]}

    tasks = [asyncio.create_task(profile(1)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert results == [{"tags": ["a"]}] * 3
    assert len({id(result["tags"]) for result in results}) == 3


def test_copy_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match=r"copy must be True or False, got str"):
        cached(ttl=1, copy="yes")  # type: ignore[arg-type]


def test_a_sync_function_is_refused() -> None:
    with pytest.raises(TypeError, match="async"):
        cached(ttl=1)(lambda: 1)  # type: ignore[arg-type,return-value]


def test_ttl_must_be_above_zero() -> None:
    with pytest.raises(ValueError, match="ttl"):
        cached(ttl=0)


@pytest.fixture
def prefix(redis_key: str) -> str:
    """The key prefix of a RedisCacheBackend that no other test uses."""
    return f"{redis_key}:"


@pytest.mark.redis
async def test_redis_backends_share_entries_across_clients(redis_url: str, prefix: str) -> None:
    first, second = RedisCacheBackend(redis_url, prefix), RedisCacheBackend(redis_url, prefix)
    calls = 0

    async def compute(user: int) -> dict[str, object]:
        nonlocal calls
        calls += 1
        return {"user": user, "tags": ["a", "b"]}

    try:
        in_first = cached(ttl=60, backend=first)(compute)
        in_second = cached(ttl=60, backend=second)(compute)
        assert await in_first(1) == {"user": 1, "tags": ["a", "b"]}
        assert await in_second(1) == {"user": 1, "tags": ["a", "b"]}
        assert calls == 1
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.redis
async def test_redis_entries_expire_with_the_ttl(
    redis_url: str, redis_client: Redis, prefix: str
) -> None:
    backend = RedisCacheBackend(redis_url, prefix)
    try:
        await backend.set("k", [1, 2], ttl=30)
        assert 0 < await redis_client.pttl(f"{prefix}k") <= 30_000
        assert await backend.get("k") == (True, [1, 2])
    finally:
        await backend.aclose()


@pytest.mark.redis
async def test_a_value_json_cannot_encode_is_a_clear_error(redis_url: str, prefix: str) -> None:
    backend = RedisCacheBackend(redis_url, prefix)

    @cached(ttl=60, backend=backend)
    async def raw() -> bytes:
        return b"\x00"

    try:
        with pytest.raises(TypeError, match="JSON"):
            await raw()
    finally:
        await backend.aclose()


@pytest.mark.redis
async def test_pickled_data_is_never_unpickled_unless_asked_for(
    redis_url: str, redis_client: Redis, prefix: str
) -> None:
    await redis_client.set(f"{prefix}k", pickle.dumps({1, 2}))
    json_backend = RedisCacheBackend(redis_url, prefix)
    pickle_backend = RedisCacheBackend(redis_url, prefix, serializer="pickle")
    try:
        with pytest.raises(ValueError, match="not JSON"):  # nothing is unpickled
            await json_backend.get("k")
        assert await pickle_backend.get("k") == (True, {1, 2})
    finally:
        await json_backend.aclose()
        await pickle_backend.aclose()
