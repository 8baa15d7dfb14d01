"""MultiRateLimiter: several rates taken atomically, reservations settled later, memory by grants.

Timing is checked on virtual time (``looptime``), every grant stamped with
``loop.time()`` when its caller resumes.
"""

from __future__ import annotations

import asyncio
import math
import tracemalloc

import pytest

from act_operator_lib.limits import (
    Limiter,
    MultiRateLimiter,
    MultiRateStatistics,
    Rate,
    RateLimiter,
    RateStatistics,
    SupportsAcquire,
    SupportsPause,
)

pytestmark = pytest.mark.looptime

Grant = tuple[float, int, int]
"""When a caller resumed, with the requests and tokens it took."""


def most_in_any_window(grants: list[Grant], field: int, per: float) -> int:
    """The largest sum of ``grant[field]`` over grants in any window ``[t, t + per)``."""
    grants = sorted(grants)
    most = 0
    for index, (start, *_) in enumerate(grants):
        total = sum(grant[field] for grant in grants[index:] if grant[0] < start + per)
        most = max(most, total)
    return most


def budget() -> MultiRateLimiter:
    return MultiRateLimiter(
        requests=Rate(10, burst=10), tokens=Rate(100, burst=100, default_cost=5)
    )


async def reserve(limiter: MultiRateLimiter, grants: list[Grant], tokens: int) -> None:
    await limiter.reserve(tokens=tokens)
    grants.append((asyncio.get_running_loop().time(), 1, tokens))


async def test_one_call_takes_from_every_rate_and_each_rate_holds() -> None:
    limiter = budget()
    grants: list[Grant] = []
    costs = [3, 40, 1, 1, 25, 2, 60, 1, 1, 1, 1, 1, 30, 2, 2, 80, 1, 1, 5, 5] * 5
    await asyncio.gather(*(reserve(limiter, grants, tokens) for tokens in costs))
    assert len(grants) == len(costs)
    assert most_in_any_window(grants, 1, 1.0) <= 10
    assert most_in_any_window(grants, 2, 1.0) <= 100


async def test_the_tighter_rate_decides_when_a_call_goes() -> None:
    limiter = budget()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(2):
        await limiter.reserve(tokens=50)
    await limiter.reserve(tokens=1)
    assert loop.time() - start == pytest.approx(1.0)


async def test_waiters_are_granted_in_arrival_order_whatever_their_cost() -> None:
    limiter = budget()
    await limiter.reserve(tokens=100)
    order: list[int] = []

    async def take(number: int, tokens: int) -> None:
        await limiter.reserve(tokens=tokens)
        order.append(number)

    await asyncio.gather(*(take(number, 90 if number == 1 else 1) for number in range(8)))
    assert order == list(range(8))


async def test_a_refund_lets_the_next_caller_go_sooner() -> None:
    limiter = budget()
    loop = asyncio.get_running_loop()
    start = loop.time()
    reservation = await limiter.reserve(tokens=100)
    waiter = asyncio.create_task(limiter.reserve(tokens=50).__aenter__())
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await reservation.settle(tokens=20)
    await waiter
    assert loop.time() - start == pytest.approx(0.1, abs=1e-3)


async def test_an_extra_charge_holds_the_next_caller_back() -> None:
    limiter = budget()
    loop = asyncio.get_running_loop()
    start = loop.time()
    reservation = await limiter.reserve(tokens=10)
    await reservation.settle(tokens=100)
    await limiter.reserve(tokens=10)
    assert loop.time() - start == pytest.approx(1.0)


async def test_settled_costs_are_what_the_statistics_count() -> None:
    limiter = budget()
    reservation = await limiter.reserve(tokens=40)
    await reservation.settle(tokens=25)
    async with limiter.reserve(requests=2, tokens=10):
        pass
    statistics = limiter.statistics()
    assert isinstance(statistics, MultiRateStatistics)
    assert statistics.granted == 2
    assert statistics.rates == {
        "requests": RateStatistics(in_window=3, granted=3, rate=10.0),
        "tokens": RateStatistics(in_window=35, granted=35, rate=100.0),
    }
    assert reservation.cost == {"requests": 1, "tokens": 25}


async def test_a_reservation_is_settled_once() -> None:
    limiter = budget()
    reservation = await limiter.reserve(tokens=10)
    await reservation.settle(tokens=12)
    with pytest.raises(RuntimeError, match="is closed: a reservation is settled once"):
        await reservation.settle(tokens=11)
    assert limiter.statistics().rates["tokens"].granted == 12


async def test_settling_after_the_async_with_block_is_an_error() -> None:
    limiter = budget()
    async with limiter.reserve(tokens=10) as reservation:
        pass
    assert reservation.closed
    with pytest.raises(RuntimeError, match="is closed"):
        await reservation.settle(tokens=1)
    assert limiter.statistics().rates["tokens"].granted == 10


async def test_settling_before_the_grant_is_an_error() -> None:
    limiter = budget()
    reservation = limiter.reserve(tokens=10)
    with pytest.raises(RuntimeError, match="was not granted yet"):
        await reservation.settle(tokens=1)
    await reservation
    await reservation.settle(tokens=1)
    assert limiter.statistics().rates["tokens"].granted == 1


async def test_awaiting_a_reservation_twice_takes_once() -> None:
    limiter = budget()
    reservation = limiter.reserve(tokens=10)
    assert await reservation is await reservation
    assert limiter.statistics().granted == 1


async def test_acquire_takes_the_default_cost_of_every_rate() -> None:
    limiter = budget()
    await limiter.acquire()
    async with limiter:
        pass
    assert {name: rate.in_window for name, rate in limiter.statistics().rates.items()} == {
        "requests": 2,
        "tokens": 10,
    }


async def test_a_cancelled_waiter_takes_nothing_and_delays_nobody() -> None:
    limiter = budget()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.reserve(tokens=50)
    heavy = asyncio.create_task(limiter.reserve(tokens=100).__aenter__())
    await asyncio.sleep(0.1)
    heavy.cancel()
    await limiter.reserve(tokens=10)
    assert loop.time() - start == pytest.approx(0.1, abs=1e-3)
    assert limiter.statistics().rates["tokens"].granted == 60


async def test_a_pause_holds_every_rate() -> None:
    limiter = budget()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.pause(2.0)
    await limiter.acquire()
    assert loop.time() - start == pytest.approx(2.0)
    assert limiter.statistics().pauses == 1


async def test_when_a_pause_ends_a_rate_gives_its_burst_back_within_its_window() -> None:
    limiter = MultiRateLimiter(requests=Rate(10, burst=10))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(4):  # four of the window's ten, then a 429 somewhere
        await limiter.acquire()
    await limiter.pause(0.5)
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        times.append(round(loop.time() - start, 6))

    await asyncio.gather(*(one() for _ in range(12)))
    # The six left of the window at once when the pause ends (not one per 0.1 s),
    # the other six when the first four leave it.
    assert times == [0.5] * 6 + [1.0] * 4 + [1.5] * 2


async def test_a_weighted_rate_limiter_keeps_one_log_entry_per_grant() -> None:
    limiter = RateLimiter(10_000_000, per=60)
    tracemalloc.start()
    try:
        await limiter.acquire(weight=10_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


class SteppingLoop(asyncio.SelectorEventLoop):
    """A loop whose clock moves 6 ms at every reading: grants spread out in time."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        self.now += 0.006
        return self.now


def test_a_150_million_tokens_a_minute_budget_fits_in_10_megabytes() -> None:
    tokens = 150_000_000

    async def fill() -> MultiRateLimiter:
        limiter = MultiRateLimiter(
            requests=Rate(10_000, per=60, burst=10_000),
            tokens=Rate(tokens, per=60, burst=tokens, default_cost=15_000),
        )
        # A minute of grants 6 ms apart: each one in a log entry of its own.
        for _ in range(10_000):
            await limiter.acquire()
        return limiter

    loop = SteppingLoop()
    tracemalloc.start()
    try:
        limiter = loop.run_until_complete(fill())
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        loop.close()
    assert limiter.statistics().rates["tokens"].in_window > tokens * 0.99
    assert current < 10_000_000


def test_multi_rate_limiters_work_wherever_a_rate_limiter_does() -> None:
    limiter = budget()
    assert isinstance(limiter, SupportsAcquire)
    assert isinstance(limiter, SupportsPause)
    assert isinstance(limiter, Limiter)


@pytest.mark.parametrize(
    ("costs", "error", "message"),
    [
        ({"tokens": -1}, ValueError, r"MultiRateLimiter\.reserve\(tokens=-1\) must be at least 0"),
        ({"tokens": 101}, ValueError, r"reserve\(tokens=101\) must be at most the rate's max_cost"),
        ({"tokens": 1.5}, TypeError, r"reserve\(tokens=1\.5\) must be an int, got float"),
        ({"tokens": True}, TypeError, r"reserve\(tokens=True\) must be an int, got bool"),
        ({"images": 1}, TypeError, r"reserve\(images=\.\.\.\) must name one of the rates"),
    ],
)
async def test_a_bad_cost_is_rejected_naming_the_rate(
    costs: dict[str, object], error: type[Exception], message: str
) -> None:
    limiter = budget()
    with pytest.raises(error, match=message):
        limiter.reserve(**costs)  # type: ignore[arg-type]
    assert limiter.statistics().granted == 0


@pytest.mark.parametrize(
    ("actual", "error", "message"),
    [
        ({"tokens": -5}, ValueError, r"Reservation\.settle\(tokens=-5\) must be at least 0"),
        ({"tokens": "5"}, TypeError, r"Reservation\.settle\(tokens='5'\) must be an int, got str"),
        (
            {"calls": 1},
            TypeError,
            r"Reservation\.settle\(calls=\.\.\.\) must name one of the rates",
        ),
    ],
)
async def test_a_bad_settlement_is_rejected_and_the_reservation_stays_open(
    actual: dict[str, object], error: type[Exception], message: str
) -> None:
    limiter = budget()
    reservation = await limiter.reserve(tokens=10)
    with pytest.raises(error, match=message):
        await reservation.settle(**actual)  # type: ignore[arg-type]
    await reservation.settle(tokens=3)
    assert limiter.statistics().rates["tokens"].granted == 3


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: MultiRateLimiter(), TypeError, r"must be given at least one rate"),
        (lambda: MultiRateLimiter(requests=500), TypeError, r"requests=\.\.\.\) must be a Rate"),
        (lambda: Rate(0), ValueError, r"Rate\(limit=0\) must be a finite number above 0"),
        (lambda: Rate(10, per=math.nan), ValueError, r"Rate\(per=nan\) must be a finite number"),
        (lambda: Rate(10, default_cost=-1), ValueError, r"default_cost=-1\) must be at least 0"),
        (lambda: Rate(10, default_cost=11), ValueError, r"default_cost=11\) must be at most"),
    ],
)
def test_a_bad_configuration_is_rejected_naming_the_argument(
    build: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


def test_repr_shows_the_configuration() -> None:
    assert repr(MultiRateLimiter(requests=Rate(500, per=60))) == (
        "MultiRateLimiter(requests=Rate(limit=500, per=60, burst=1, default_cost=1, margin=0.0))"
    )


@pytest.mark.looptime
async def test_a_margin_counts_each_grant_that_much_longer() -> None:
    limiter = MultiRateLimiter(tokens=Rate(100, burst=100, margin=0.25))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.reserve(tokens=100)
    await limiter.reserve(tokens=100)
    assert loop.time() - start == pytest.approx(1.25)


def test_a_negative_margin_is_refused_naming_the_argument() -> None:
    with pytest.raises(ValueError, match=r"Rate\(margin=-0.1\) must be a finite number >= 0"):
        Rate(100, margin=-0.1)
