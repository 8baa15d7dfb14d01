"""RateLimiter: strict windows, FIFO, cancellation, statistics, bad input.

Timing properties are checked in virtual time (``looptime``): sleeps take no wall
time while ``loop.time()`` advances, and every grant is stamped with ``loop.time()``
at the moment its caller resumes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random

import pytest

from act_operator_lib import RateLimiter
from act_operator_lib.limits import SupportsPause

pytestmark = pytest.mark.looptime


def most_units_in_any_window(grants: list[tuple[float, int]], per: float) -> int:
    """The largest sum of units granted in any window ``[t, t + per)``."""
    grants = sorted(grants)
    most = total = 0
    start = 0
    for time, units in grants:
        total += units
        while not time < grants[start][0] + per:
            total -= grants[start][1]
            start += 1
        most = max(most, total)
    return most


async def stamped(limiter: RateLimiter, grants: list[tuple[float, int]], weight: int = 1) -> None:
    await limiter.acquire(weight)
    grants.append((asyncio.get_running_loop().time(), weight))


def hog_the_loop(seconds: float) -> None:
    """Stand in for a callback that blocks the event loop: jump the fake clock ahead."""
    loop = asyncio.get_running_loop()
    loop.setup_looptime(start=loop.time() + seconds)  # type: ignore[attr-defined]


async def test_at_most_rate_grants_in_any_window() -> None:
    limiter = RateLimiter(200)
    grants: list[tuple[float, int]] = []
    await asyncio.gather(*(stamped(limiter, grants) for _ in range(600)))
    assert len(grants) == 600
    assert most_units_in_any_window(grants, 1.0) == 200


async def test_grants_are_evenly_spaced_without_drift() -> None:
    limiter = RateLimiter(200)
    grants: list[tuple[float, int]] = []
    await asyncio.gather(*(stamped(limiter, grants) for _ in range(600)))
    times = [time for time, _ in grants]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert min(gaps) == pytest.approx(0.005, abs=2e-6)
    assert times[-1] - times[0] == pytest.approx(2.995, abs=2e-6)


async def test_burst_goes_at_once_then_the_rate_holds() -> None:
    limiter = RateLimiter(10, burst=5)
    grants: list[tuple[float, int]] = []
    await asyncio.gather(*(stamped(limiter, grants) for _ in range(40)))
    start = grants[0][0]
    assert [time for time, _ in grants[:5]] == [start] * 5
    assert grants[5][0] > start
    assert most_units_in_any_window(grants, 1.0) <= 10 + 5 - 1


async def test_a_late_event_loop_does_not_let_a_burst_through() -> None:
    limiter = RateLimiter(50)
    grants: list[tuple[float, int]] = []
    chance = random.Random(7)

    async def hog() -> None:
        for _ in range(300):
            await asyncio.sleep(chance.uniform(0, 0.03))
            hog_the_loop(chance.uniform(0, 0.05))

    hogging = asyncio.create_task(hog())
    await asyncio.gather(*(stamped(limiter, grants) for _ in range(200)))
    hogging.cancel()
    assert most_units_in_any_window(grants, 1.0) <= 50


async def test_weighted_grants_stay_within_the_window() -> None:
    limiter = RateLimiter(20, burst=3)
    grants: list[tuple[float, int]] = []
    chance = random.Random(3)
    weights = [chance.randint(1, limiter.max_weight) for _ in range(200)]
    await asyncio.gather(*(stamped(limiter, grants, weight) for weight in weights))
    assert sum(units for _, units in grants) == sum(weights)
    assert most_units_in_any_window(grants, 1.0) <= 20 + 3 - 1


async def test_the_largest_weight_fills_the_window_alone() -> None:
    limiter = RateLimiter(10)
    grants: list[tuple[float, int]] = []
    await asyncio.gather(
        stamped(limiter, grants), stamped(limiter, grants, 10), stamped(limiter, grants)
    )
    assert [time - grants[0][0] for time, _ in grants] == pytest.approx([0, 1.0, 2.0])


async def test_waiters_are_granted_in_arrival_order() -> None:
    limiter = RateLimiter(1000, burst=10)
    order: list[int] = []

    async def take(number: int) -> None:
        await limiter.acquire()
        order.append(number)

    await asyncio.gather(*(take(number) for number in range(1000)))
    assert order == list(range(1000))


async def test_a_heavy_waiter_is_not_overtaken_by_light_ones() -> None:
    limiter = RateLimiter(10)
    order: list[str] = []

    async def take(name: str, weight: int) -> None:
        await limiter.acquire(weight)
        order.append(name)

    await asyncio.gather(take("first", 1), take("heavy", 10), take("light", 1))
    assert order == ["first", "heavy", "light"]


async def test_a_cancelled_waiter_takes_nothing_and_delays_nobody() -> None:
    limiter = RateLimiter(10)
    grants: list[tuple[float, int]] = []
    await limiter.acquire()
    start = asyncio.get_running_loop().time()
    cancelled = asyncio.create_task(limiter.acquire())
    after = asyncio.create_task(stamped(limiter, grants))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    await after
    assert grants == [(pytest.approx(start + 0.1), 1)]
    assert limiter.statistics().granted == 2


async def test_a_waiter_cancelled_as_it_is_woken_takes_nothing() -> None:
    loop = asyncio.get_running_loop()
    limiter = RateLimiter(10)
    grants: list[tuple[float, int]] = []
    await limiter.acquire()
    start = loop.time()
    woken = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    next_in_line = asyncio.create_task(stamped(limiter, grants))
    loop.call_at(start + 0.1, woken.cancel)
    with pytest.raises(asyncio.CancelledError):
        await woken
    await next_in_line
    assert grants == [(pytest.approx(start + 0.1), 1)]
    assert limiter.statistics().granted == 2


async def test_cancelling_waiters_at_random_leaves_no_trace() -> None:
    limiter = RateLimiter(100, burst=2)
    grants: list[tuple[float, int]] = []
    chance = random.Random(11)
    tasks = [asyncio.create_task(stamped(limiter, grants)) for _ in range(300)]
    for task in chance.sample(tasks, 100):
        asyncio.get_running_loop().call_later(chance.uniform(0, 2), task.cancel)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    finished = sum(result is None for result in results)
    statistics = limiter.statistics()
    assert (statistics.granted, statistics.waiting) == (finished, 0)
    assert len(grants) == finished
    assert most_units_in_any_window(grants, 1.0) <= 100 + 2 - 1


async def test_a_timed_out_waiter_takes_nothing() -> None:
    limiter = RateLimiter(1)
    await limiter.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await limiter.acquire()
    statistics = limiter.statistics()
    assert (statistics.granted, statistics.waiting) == (1, 0)


async def test_statistics_report_the_window_waiters_and_waiting_time() -> None:
    limiter = RateLimiter(2, burst=2)
    await limiter.acquire()
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.statistics().waiting == 1
    await waiter
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting, statistics.granted) == (3, 0, 3)
    assert statistics.total_wait == pytest.approx(0.5)


async def test_grants_leave_the_window_after_per_seconds() -> None:
    limiter = RateLimiter(5, per=2.0, burst=5)
    for _ in range(5):
        await limiter.acquire()
    await asyncio.sleep(2.0)
    assert limiter.statistics().in_use == 0


async def test_release_gives_nothing_back() -> None:
    limiter = RateLimiter(1)
    async with limiter:
        pass
    await limiter.release()
    start = asyncio.get_running_loop().time()
    await limiter.acquire()
    assert asyncio.get_running_loop().time() - start == pytest.approx(1.0)


async def test_decorated_calls_are_rate_limited() -> None:
    limiter = RateLimiter(4)
    times: list[float] = []

    @limiter
    async def call() -> float:
        return asyncio.get_running_loop().time()

    times = list(await asyncio.gather(*(call() for _ in range(8))))
    assert times[-1] - times[0] == pytest.approx(7 * 0.25)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"rate": 0}, ValueError, "rate must be a finite number above 0"),
        ({"rate": -5}, ValueError, "rate must be a finite number above 0"),
        ({"rate": math.inf}, ValueError, "rate must be a finite number above 0"),
        ({"rate": math.nan}, ValueError, "rate must be a finite number above 0"),
        ({"rate": "200"}, TypeError, "rate must be a number"),
        ({"rate": True}, TypeError, "rate must be a number"),
        ({"rate": 10, "per": 0}, ValueError, "per must be a finite number above 0"),
        ({"rate": 10, "per": None}, TypeError, "per must be a number"),
        ({"rate": 10, "burst": 0}, ValueError, "burst must be at least 1"),
        ({"rate": 10, "burst": 1.5}, TypeError, "burst must be an int"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_argument(
    arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RateLimiter(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("weight", "error", "message"),
    [
        (0, ValueError, r"weight must be from 1 to 14, got 0"),
        (15, ValueError, r"weight must be from 1 to 14, got 15"),
        (2.0, TypeError, "weight must be an int"),
        (True, TypeError, "weight must be an int"),
    ],
)
async def test_bad_weights_are_rejected_with_the_valid_range(
    weight: object, error: type[Exception], message: str
) -> None:
    limiter = RateLimiter(10, burst=5)
    with pytest.raises(error, match=message):
        await limiter.acquire(weight)  # type: ignore[arg-type]
    assert limiter.statistics().granted == 0


def test_repr_shows_the_configuration() -> None:
    assert repr(RateLimiter(200, per=0.5, burst=3)) == "RateLimiter(rate=200, per=0.5, burst=3)"


async def test_a_pause_grants_nothing_until_it_ends() -> None:
    limiter = RateLimiter(100, burst=100)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.pause(2.0)
    await limiter.acquire()
    assert loop.time() - start == pytest.approx(2.0)


async def test_a_shorter_pause_does_not_shorten_a_running_one() -> None:
    limiter = RateLimiter(100)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.pause(3.0)
    await limiter.pause(1.0)
    await limiter.acquire()
    assert loop.time() - start == pytest.approx(3.0)


async def test_a_longer_pause_extends_a_running_one() -> None:
    limiter = RateLimiter(100)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.pause(1.0)
    await asyncio.sleep(0.5)
    await limiter.pause(2.0)
    await limiter.acquire()
    assert loop.time() - start == pytest.approx(2.5)


async def test_waiters_keep_their_places_through_a_pause() -> None:
    limiter = RateLimiter(10)
    order: list[int] = []

    async def take(number: int) -> None:
        await limiter.acquire()
        order.append(number)

    tasks = [asyncio.create_task(take(number)) for number in range(20)]
    await asyncio.sleep(0.35)
    await limiter.pause(1.0)
    await asyncio.gather(*tasks)
    assert order == list(range(20))


async def test_waiters_are_held_for_the_whole_pause() -> None:
    limiter = RateLimiter(10)
    grants: list[tuple[float, int]] = []
    tasks = [asyncio.create_task(stamped(limiter, grants)) for _ in range(10)]
    await asyncio.sleep(0.25)
    paused_at = asyncio.get_running_loop().time()
    await limiter.pause(1.0)
    await asyncio.gather(*tasks)
    times = [time for time, _ in grants]
    assert not [time for time in times if paused_at < time < paused_at + 1.0]


async def test_grants_resume_evenly_spaced_after_a_pause() -> None:
    limiter = RateLimiter(10, burst=10)
    await limiter.pause(1.0)
    grants: list[tuple[float, int]] = []
    await asyncio.gather(*(stamped(limiter, grants) for _ in range(5)))
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(grants)]
    assert gaps == pytest.approx([0.1] * 4, abs=2e-6)


async def test_statistics_count_pauses_and_the_time_left() -> None:
    limiter = RateLimiter(10)
    await limiter.pause(2.0)
    await limiter.pause(0.5)
    await asyncio.sleep(0.5)
    statistics = limiter.statistics()
    assert statistics.pauses == 2
    assert statistics.paused_for == pytest.approx(1.5)
    await asyncio.sleep(1.5)
    assert limiter.statistics().paused_for == 0.0


async def test_a_pause_of_zero_seconds_delays_nobody() -> None:
    limiter = RateLimiter(10, burst=2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await limiter.pause(0)
    await limiter.acquire()
    assert loop.time() == start


@pytest.mark.parametrize(
    ("seconds", "error", "message"),
    [
        (-1, ValueError, r"RateLimiter\(seconds=-1\) must be a finite number >= 0, got -1"),
        (math.nan, ValueError, r"RateLimiter\(seconds=nan\) must be a finite number >= 0"),
        (math.inf, ValueError, r"RateLimiter\(seconds=inf\) must be a finite number >= 0"),
        (True, TypeError, r"RateLimiter\(seconds=True\) must be a number \(int or float\)"),
        ("2", TypeError, r"RateLimiter\(seconds='2'\) must be a number \(int or float\), got str"),
    ],
)
async def test_a_bad_pause_is_rejected_naming_the_argument(
    seconds: object, error: type[Exception], message: str
) -> None:
    limiter = RateLimiter(10)
    with pytest.raises(error, match=message):
        await limiter.pause(seconds)  # type: ignore[arg-type]
    assert limiter.statistics().pauses == 0


def test_rate_limiters_meet_the_pause_protocol() -> None:
    assert isinstance(RateLimiter(10), SupportsPause)
