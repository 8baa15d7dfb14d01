"""Adaptive mode: a limiter set above what the server allows learns its rate from pauses.

On virtual time (``looptime``) against a server stand-in that allows ``SERVER_RATE``
calls in any one-second window and refuses the rest with a retry-after, as a 429
would; callers pause the limiter for that long and try again, as the retry engine
does.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque

import pytest

from act_operator_lib.limits import MultiRateLimiter, Rate, RateLimiter

pytestmark = pytest.mark.looptime

SERVER_RATE = 20


class Server:
    """Accepts at most ``SERVER_RATE`` calls in any window of one second."""

    def __init__(self) -> None:
        self.accepted: deque[float] = deque()
        self.refused = 0

    def call(self) -> float | None:
        """None if accepted, else the seconds to wait (a 429's retry-after)."""
        now = asyncio.get_running_loop().time()
        while self.accepted and self.accepted[0] + 1.0 <= now:
            self.accepted.popleft()
        if len(self.accepted) < SERVER_RATE:
            self.accepted.append(now)
            return None
        self.refused += 1
        return self.accepted[0] + 1.0 - now


async def run_calls(limiter: RateLimiter | MultiRateLimiter, server: Server, calls: int) -> None:
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            while True:
                await limiter.acquire()
                retry_after = server.call()
                if retry_after is None:
                    break
                await limiter.pause(retry_after)

    await asyncio.gather(*(worker() for _ in range(16)))


async def test_a_limiter_set_at_twice_the_servers_rate_learns_it() -> None:
    limiter = RateLimiter(2 * SERVER_RATE, adaptive=True)
    server = Server()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await run_calls(limiter, server, 400)
    elapsed = loop.time() - start
    assert server.refused <= 400 * 0.05
    assert 400 / elapsed >= SERVER_RATE * 0.85


async def test_without_adaptive_mode_the_same_limiter_keeps_being_refused() -> None:
    limiter = RateLimiter(2 * SERVER_RATE)
    server = Server()
    await run_calls(limiter, server, 400)
    assert server.refused > 400 * 0.05


async def test_a_multi_rate_limiter_learns_the_servers_rate_too() -> None:
    limiter = MultiRateLimiter(requests=Rate(2 * SERVER_RATE), adaptive=True)
    server = Server()
    await run_calls(limiter, server, 400)
    assert server.refused <= 400 * 0.05


async def test_a_pause_with_nothing_granted_halves_the_rate() -> None:
    limiter = RateLimiter(40, adaptive=True)
    await limiter.pause(1.0)
    assert limiter.statistics().rate == 20
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(3):
        await limiter.acquire()
        times.append(loop.time())
    # About 20 a second, recovering slowly from the end of the pause.
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.05, 0.05], rel=0.01)


async def test_a_pause_slows_down_to_95_percent_of_what_the_last_window_granted() -> None:
    limiter = RateLimiter(40, burst=40, adaptive=True)
    for _ in range(30):
        await limiter.acquire()
    await limiter.pause(1.0)
    assert limiter.statistics().rate == pytest.approx(28.5)


async def test_pauses_of_one_episode_halve_the_rate_once() -> None:
    limiter = RateLimiter(40, adaptive=True)
    await limiter.pause(1.0)
    await asyncio.sleep(0.5)
    await limiter.pause(1.0)
    assert limiter.statistics().rate == 20


async def test_the_rate_recovers_a_twentieth_per_quiet_window_up_to_the_configured_rate() -> None:
    limiter = RateLimiter(40, adaptive=True)
    await limiter.pause(1.0)
    await asyncio.sleep(1.0 + 2.0)
    assert limiter.statistics().rate == pytest.approx(20 + 2 * 2)
    await asyncio.sleep(20.0)
    assert limiter.statistics().rate == 40


async def test_the_rate_never_falls_below_a_64th_of_the_configured_one() -> None:
    limiter = RateLimiter(640, adaptive=True)
    for _ in range(10):
        await limiter.pause(0.0)
        await asyncio.sleep(1.0)
        await limiter.pause(0.0)
    assert limiter.statistics().rate >= 10


async def test_without_adaptive_mode_a_pause_keeps_the_rate() -> None:
    limiter = RateLimiter(40)
    await limiter.pause(1.0)
    assert limiter.statistics().rate == 40


async def test_a_pause_slows_only_the_fullest_rate_of_a_multi_rate_limiter() -> None:
    limiter = MultiRateLimiter(
        requests=Rate(40, burst=40), tokens=Rate(1_000, burst=1_000), adaptive=True
    )
    for _ in range(10):
        await limiter.reserve(tokens=100)
    await limiter.pause(0.5)
    rates = limiter.statistics().rates
    assert (rates["requests"].rate, rates["tokens"].rate) == (40, 900)


async def test_recovery_holds_at_the_learned_rate_before_climbing_on() -> None:
    limiter = RateLimiter(40, burst=40, adaptive=True)
    for _ in range(30):
        await limiter.acquire()
    await limiter.pause(1.0)
    await asyncio.sleep(1.0 + 10.0)
    # 28.5 a second (95% of the 30 granted) from the cut, held for 10 windows.
    assert limiter.statistics().rate == pytest.approx(28.5)
    await asyncio.sleep(2.0)
    assert limiter.statistics().rate == pytest.approx(28.5 + 2 * 2)


async def test_refused_calls_refunded_during_the_pause_leave_the_rate_the_server_took() -> None:
    limiter = MultiRateLimiter(tokens=Rate(1_000, burst=1_000), adaptive=True)
    reservations = [await limiter.reserve(tokens=100) for _ in range(10)]
    await reservations[0].settle(tokens=0)
    await limiter.pause(0.5)
    # The other calls in flight come back refused while the pause runs.
    for reservation in reservations[1:4]:
        await reservation.settle(tokens=0)
        await limiter.pause(0.5)
    await asyncio.sleep(0.5)
    assert limiter.statistics().rates["tokens"].rate == pytest.approx(600)
    await asyncio.sleep(5.0)
    assert limiter.statistics().rates["tokens"].rate == pytest.approx(600)


async def test_a_refund_lets_one_cut_go_below_half_but_not_below_a_quarter() -> None:
    limiter = MultiRateLimiter(tokens=Rate(1_000, burst=1_000), adaptive=True)
    reservations = [await limiter.reserve(tokens=100) for _ in range(10)]
    for reservation in reservations[1:]:
        await reservation.settle(tokens=0)
    await limiter.pause(0.5)
    await asyncio.sleep(0.5)
    assert limiter.statistics().rates["tokens"].rate == pytest.approx(250)


async def test_a_limiter_whose_refused_calls_are_refunded_learns_the_servers_rate() -> None:
    limiter = MultiRateLimiter(requests=Rate(2 * SERVER_RATE, burst=2 * SERVER_RATE), adaptive=True)
    server = Server()
    queue = iter(range(400))

    async def worker() -> None:
        for _ in queue:
            while True:
                reservation = await limiter.reserve()
                retry_after = server.call()
                if retry_after is None:
                    break
                await reservation.settle(requests=0)
                await limiter.pause(retry_after)

    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(16)))
    elapsed = loop.time() - start
    assert server.refused <= 400 * 0.05
    assert 400 / elapsed >= SERVER_RATE * 0.9


async def test_a_pause_that_does_not_slow_down_keeps_what_was_recovered() -> None:
    limiter = RateLimiter(40, adaptive=True)
    await limiter.pause(0.1)
    await asyncio.sleep(0.9)
    # Within a window of the cut: no second cut, and the 0.8 window recovered stays.
    await limiter.pause(0.1)
    await asyncio.sleep(0.1)
    assert limiter.statistics().rate == pytest.approx(20 + 40 * 0.05 * 0.8)


async def test_once_the_pause_ends_the_learned_rate_may_go_in_one_burst() -> None:
    limiter = MultiRateLimiter(tokens=Rate(1_000, burst=1_000), adaptive=True)
    reservations = [await limiter.reserve(tokens=100) for _ in range(10)]
    for reservation in reservations[6:]:
        await reservation.settle(tokens=0)
    await limiter.pause(0.5)
    # Past the pause and the window of the first grants: 600 a second, all at once.
    await asyncio.sleep(1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await limiter.reserve(tokens=100)
    assert loop.time() == start


async def test_a_rate_refunded_in_full_marks_the_call_refused_on_the_other_rates() -> None:
    limiter = MultiRateLimiter(
        requests=Rate(10, burst=10), tokens=Rate(1_000, burst=1_000), adaptive=True
    )
    reservations = [await limiter.reserve(tokens=100) for _ in range(10)]
    for reservation in reservations[6:]:
        await reservation.settle(tokens=0)
    await limiter.pause(0.5)
    await asyncio.sleep(0.5)
    # The requests window was the fullest; 4 of its 10 calls were refused.
    rates = limiter.statistics().rates
    assert (rates["requests"].rate, rates["tokens"].rate) == pytest.approx((6, 1_000))


async def test_a_rate_that_held_less_than_the_server_took_of_it_before_keeps_its_rate() -> None:
    limiter = MultiRateLimiter(
        requests=Rate(10, burst=10), tokens=Rate(1_000, burst=1_000), adaptive=True
    )
    reservations = [await limiter.reserve(tokens=200) for _ in range(5)]
    await reservations[0].settle(tokens=0)
    await limiter.pause(0.5)
    await asyncio.sleep(1.5)
    # The server took 800 tokens before refusing: the tokens rate learned 800.
    assert limiter.statistics().rates["tokens"].rate == pytest.approx(800)
    for _ in range(10):
        await limiter.reserve(tokens=78)
    # Both windows nearly full, but 780 tokens is less than the server took before:
    # the requests rate is the cause.
    await limiter.pause(0.5)
    await asyncio.sleep(0.5)
    rates = limiter.statistics().rates
    assert (rates["requests"].rate, rates["tokens"].rate) == pytest.approx((9, 800))
