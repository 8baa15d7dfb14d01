"""The public surface of act_operator_lib.limits: one home, sorted, protocols at the boundary."""

from __future__ import annotations

import asyncio
import pickle

import pytest
from aiolimiter import AsyncLimiter

from act_operator_lib import limits
from act_operator_lib.limits import (
    ConcurrencyLimiter,
    Limiter,
    MultiRateLimiter,
    Rate,
    RateLimiter,
    RedisConcurrencyLimiter,
    RedisRateLimiter,
    SupportsAcquire,
    SupportsPause,
    SupportsRelease,
)


def test_the_public_names_are_sorted() -> None:
    assert limits.__all__ == sorted(limits.__all__)


def test_public_classes_name_their_public_module() -> None:
    classes = [getattr(limits, name) for name in limits.__all__]
    assert [
        cls.__qualname__
        for cls in classes
        if isinstance(cls, type) and cls.__module__ != "act_operator_lib.limits"
    ] == []


def test_statistics_pickle_by_their_public_name() -> None:
    statistics = RateLimiter(10).statistics()
    data = pickle.dumps(statistics)
    assert pickle.loads(data) == statistics
    assert b"act_operator_lib.limits" in data
    assert b"_statistics" not in data


@pytest.mark.parametrize(
    "limiter",
    [
        RateLimiter(10),
        ConcurrencyLimiter(2),
        MultiRateLimiter(requests=Rate(10)),
        RedisRateLimiter("redis://127.0.0.1:6379/0", "api-protocol-check", 10),
        RedisConcurrencyLimiter("redis://127.0.0.1:6379/0", "api-protocol-check", 2),
    ],
    ids=lambda limiter: type(limiter).__name__,
)
def test_every_limiter_of_the_library_is_a_limiter(limiter: object) -> None:
    assert isinstance(limiter, Limiter)
    assert isinstance(limiter, SupportsRelease)


def test_rate_limiters_can_be_paused_and_concurrency_limiters_cannot() -> None:
    assert isinstance(RateLimiter(10), SupportsPause)
    assert isinstance(MultiRateLimiter(requests=Rate(10)), SupportsPause)
    assert not isinstance(ConcurrencyLimiter(2), SupportsPause)


async def test_aiolimiter_meets_the_rate_protocol_but_is_not_one_of_ours() -> None:
    limiter = AsyncLimiter(10, 1)
    assert isinstance(limiter, SupportsAcquire)
    assert not isinstance(limiter, Limiter)
    await limiter.acquire()


def test_a_semaphore_meets_the_slot_protocol() -> None:
    assert isinstance(asyncio.Semaphore(2), SupportsRelease)
