"""ConcurrencyLimiter: the limit holds, FIFO, and the permit always comes back."""

from __future__ import annotations

import asyncio

import pytest

from act_operator_lib import ConcurrencyLimiter

pytestmark = pytest.mark.looptime


def assert_idle(limiter: ConcurrencyLimiter) -> None:
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting) == (0, 0)


async def test_at_most_limit_callers_hold_a_permit() -> None:
    limiter = ConcurrencyLimiter(3)
    inside = most = 0

    async def work(seconds: float) -> None:
        nonlocal inside, most
        async with limiter:
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(seconds)
            inside -= 1

    await asyncio.gather(*(work(number % 7 / 10) for number in range(50)))
    assert most == 3
    assert_idle(limiter)


async def test_waiters_are_granted_in_arrival_order() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[int] = []

    async def take(number: int) -> None:
        async with limiter:
            order.append(number)
            await asyncio.sleep(0)

    await asyncio.gather(*(take(number) for number in range(1000)))
    assert order == list(range(1000))


async def test_a_newcomer_does_not_take_a_permit_handed_to_a_waiter() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[str] = []

    async def take(name: str) -> None:
        async with limiter:
            order.append(name)

    await limiter.acquire()
    waiter = asyncio.create_task(take("waiter"))
    await asyncio.sleep(0)
    await limiter.release()
    await take("newcomer")
    await waiter
    assert order == ["waiter", "newcomer"]


async def test_the_permit_comes_back_after_an_exception() -> None:
    limiter = ConcurrencyLimiter(1)
    with pytest.raises(LookupError):
        async with limiter:
            raise LookupError("the call failed")
    assert_idle(limiter)


async def test_the_permit_comes_back_after_a_timeout_while_holding() -> None:
    limiter = ConcurrencyLimiter(1)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1), limiter:
            await asyncio.sleep(10)
    assert_idle(limiter)


async def test_a_waiter_that_times_out_takes_nothing() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1), limiter:
            pass
    await limiter.release()
    assert_idle(limiter)


async def test_a_waiter_cancelled_while_waiting_takes_nothing() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.statistics().waiting == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.statistics().waiting == 0
    await limiter.release()
    assert_idle(limiter)


async def test_a_waiter_cancelled_as_the_permit_arrives_passes_it_on() -> None:
    limiter = ConcurrencyLimiter(1)
    await limiter.acquire()
    cancelled = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    next_in_line = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    await limiter.release()  # hands the permit to `cancelled` ...
    cancelled.cancel()  # ... which is cancelled before it can run
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    async with asyncio.timeout(10):  # virtual seconds: a lost permit fails, not hangs
        await next_in_line
    assert (limiter.statistics().in_use, limiter.statistics().granted) == (1, 2)
    await limiter.release()
    assert_idle(limiter)


async def test_a_holder_cancelled_inside_returns_the_permit() -> None:
    limiter = ConcurrencyLimiter(2)

    async def hold() -> None:
        async with limiter:
            await asyncio.sleep(10)

    holders = [asyncio.create_task(hold()) for _ in range(5)]
    await asyncio.sleep(1)
    for holder in holders:
        holder.cancel()
    await asyncio.gather(*holders, return_exceptions=True)
    assert_idle(limiter)


async def test_releasing_more_than_acquired_raises() -> None:
    limiter = ConcurrencyLimiter(1)
    with pytest.raises(RuntimeError, match=r"released more times than it was acquired"):
        await limiter.release()


async def test_statistics_count_grants_and_waiting_time() -> None:
    limiter = ConcurrencyLimiter(1)

    async def hold(seconds: float) -> None:
        async with limiter:
            await asyncio.sleep(seconds)

    await asyncio.gather(hold(2), hold(1), hold(1))
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting, statistics.granted) == (0, 0, 3)
    assert statistics.total_wait == pytest.approx(2 + 3)


async def test_decorated_calls_share_the_limit() -> None:
    limiter = ConcurrencyLimiter(2)
    inside = most = 0

    @limiter
    async def call() -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(1)
        inside -= 1

    await asyncio.gather(*(call() for _ in range(6)))
    assert most == 2
    assert_idle(limiter)


@pytest.mark.parametrize(
    ("limit", "error", "message"),
    [
        (0, ValueError, r"ConcurrencyLimiter\(limit=0\) must be at least 1, got 0"),
        (-3, ValueError, r"ConcurrencyLimiter\(limit=-3\) must be at least 1, got -3"),
        (2.5, TypeError, r"ConcurrencyLimiter\(limit=2\.5\) must be an int, got float"),
        ("4", TypeError, r"ConcurrencyLimiter\(limit='4'\) must be an int, got str"),
        (True, TypeError, r"ConcurrencyLimiter\(limit=True\) must be an int, got bool"),
    ],
)
def test_a_bad_limit_is_rejected_naming_the_argument(
    limit: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ConcurrencyLimiter(limit)  # type: ignore[arg-type]


def test_repr_shows_the_configuration() -> None:
    assert repr(ConcurrencyLimiter(8)) == "ConcurrencyLimiter(limit=8)"
