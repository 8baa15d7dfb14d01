"""`RateLimiter`: at most ``rate`` grants per ``per`` seconds, strictly, in arrival order."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from types import TracebackType

from act_operator_lib.limits._arguments import positive_integer, positive_number
from act_operator_lib.limits._base import Limiter
from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = ["RateLimiter"]

_TICK = 2 * time.get_clock_info("monotonic").resolution


class _Waiter:
    """One caller queued in `RateLimiter.acquire`: woken when it reaches the head."""

    __slots__ = ("future", "weight")

    def __init__(self, future: asyncio.Future[None], weight: int) -> None:
        self.future = future
        self.weight = weight


class RateLimiter(Limiter):
    """Let calls through at most ``rate`` times per ``per`` seconds, evenly spaced.

    Example::

        limiter = RateLimiter(200)              # 200 calls a second, one every 5 ms
        async with limiter:
            await client.get(url)

        tokens = RateLimiter(90_000, per=60, burst=4_000)
        await tokens.acquire(weight=1_500)      # a request that costs 1,500 units

    Guarantee: in any window of ``per`` seconds, at most ``ceil(rate) + burst - 1``
    units are granted (``rate + burst - 1`` for a whole-number rate), counted at the
    moment each caller resumes, so an event loop that wakes waiters late cannot let
    a burst through. Grants are spaced ``per / rate`` apart; ``burst`` lets that many
    units go at once after a quiet spell. Callers are served first come, first
    served; a caller cancelled while waiting takes nothing and delays nobody.

    ``release()`` does nothing: time, not the caller, gives capacity back. A
    ``weight`` is at most ``ceil(rate) + burst - 1`` (larger could never be granted
    without breaking the guarantee). Time comes from the running loop's
    ``loop.time()``, so fake clocks (``looptime``) work; use one limiter from one
    event loop at a time.

    How: a GCRA (virtual scheduling) keeps the theoretical time of the next grant,
    and a log of the last ``per`` seconds of grants enforces the window exactly.
    Waiters queue FIFO behind a single timer for the head; the head checks the
    schedule itself when it runs, and grants at that moment. A wake-up late by less
    than one interval keeps the schedule (no drift), a later one restarts it.
    """

    __slots__ = (
        "_burst",
        "_capacity",
        "_granted",
        "_interval",
        "_log",
        "_logged",
        "_loop",
        "_per",
        "_rate",
        "_schedule",
        "_timer",
        "_tolerance",
        "_total_wait",
        "_waiters",
    )

    def __init__(self, rate: float, per: float = 1.0, burst: int = 1) -> None:
        """Configure the limiter.

        Args:
            rate: Units granted per ``per`` seconds; a number above 0 (e.g. 200 or 0.5).
            per: The window, in seconds; a number above 0 (default 1.0).
            burst: Units that may be granted at once after a quiet spell; an int of
                at least 1 (default 1: strictly evenly spaced).

        Raises:
            TypeError: an argument is not a number (``burst``: not an int).
            ValueError: an argument is out of range; the message gives the range.
        """
        self._rate = positive_number("RateLimiter", "rate", rate)
        self._per = positive_number("RateLimiter", "per", per)
        self._burst = positive_integer("RateLimiter", "burst", burst)
        self._interval = self._per / self._rate
        self._tolerance = (self._burst - 1) * self._interval
        self._capacity = math.ceil(self._rate) + self._burst - 1
        self._schedule = -math.inf
        self._log: deque[tuple[float, int]] = deque()
        self._logged = 0
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._granted = 0
        self._total_wait = 0.0

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}, per={self._per:g}, burst={self._burst})"

    @property
    def max_weight(self) -> int:
        """The largest ``weight`` one `acquire` may ask for: ``ceil(rate) + burst - 1``."""
        return self._capacity

    async def acquire(self, weight: int = 1) -> None:
        """Wait until ``weight`` units may go, then take them.

        Args:
            weight: Units this call costs; an int from 1 to `max_weight`.

        Raises:
            TypeError: ``weight`` is not an int.
            ValueError: ``weight`` is below 1 or above `max_weight`.
        """
        if type(weight) is not int or not 1 <= weight <= self._capacity:
            positive_integer(repr(self), "weight", weight, self._capacity)
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._loop = loop
        if not self._waiters and self._ready_at(now, weight) <= now:
            self._grant(now, weight, now)
            return
        await self._wait(loop, now, weight)

    async def release(self) -> None:
        """Do nothing: a rate limiter's capacity comes back with time."""

    async def __aenter__(self) -> None:
        # `acquire()` inlined for weight 1: this path is every uncontended call.
        loop = asyncio.get_running_loop()
        now = loop.time()
        schedule = self._schedule
        if schedule - self._tolerance <= now and not self._waiters:
            log = self._log
            if log and log[0][0] + self._per <= now:
                self._expire(now)
            if self._logged < self._capacity:
                self._schedule = (schedule if schedule > now else now) + self._interval
                log.append((now, 1))
                self._logged += 1
                self._granted += 1
                self._loop = loop
                return
        self._loop = loop
        await self._wait(loop, now, 1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def statistics(self) -> LimiterStatistics:
        """A snapshot: units granted in the last ``per`` seconds (``in_use``), waiters,
        units granted in total, and seconds spent waiting in total.
        """
        if self._loop is not None and not self._loop.is_closed():
            self._expire(self._loop.time())
        return LimiterStatistics(
            in_use=self._logged,
            waiting=len(self._waiters),
            granted=self._granted,
            total_wait=self._total_wait,
        )

    def _expire(self, now: float) -> None:
        """Forget grants that have left the window ending at ``now``."""
        log = self._log
        per = self._per
        while log and log[0][0] + per <= now:
            self._logged -= log.popleft()[1]

    def _ready_at(self, now: float, weight: int) -> float:
        """The earliest time ``weight`` units may be granted, given the grants so far."""
        ready = self._schedule - self._tolerance
        log = self._log
        if log and log[0][0] + self._per <= now:
            self._expire(now)
        excess = self._logged + weight - self._capacity
        if excess > 0:
            # The window is full: wait until enough of the oldest grants leave it.
            for granted_at, units in log:
                excess -= units
                if excess <= 0:
                    return max(ready, granted_at + self._per)
        return ready

    def _grant(self, now: float, weight: int, due: float) -> None:
        """Record a grant at ``now`` of a caller that was due at ``due``."""
        start = due if now - due < self._interval else now
        self._schedule = max(self._schedule, start) + weight * self._interval
        self._log.append((now, weight))
        self._logged += weight
        self._granted += weight

    async def _wait(self, loop: asyncio.AbstractEventLoop, requested: float, weight: int) -> None:
        """Queue behind earlier callers; grant when this caller runs at the head on time."""
        waiter = _Waiter(loop.create_future(), weight)
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._wake_head_when_ready(loop)
        try:
            while True:
                await waiter.future
                now = loop.time()
                ready = self._ready_at(now, weight)
                if ready <= now:
                    break
                # Woken early (asyncio fires timers up to its clock resolution
                # early): wait again, at least a tick, so a fake clock moves on.
                waiter.future = loop.create_future()
                self._wake_head_when_ready(loop, not_before=now + _TICK)
        except BaseException:
            self._leave(waiter, loop)
            raise
        self._waiters.popleft()
        self._grant(now, weight, ready)
        self._total_wait += now - requested
        if self._waiters:
            self._wake_head_when_ready(loop)

    def _leave(self, waiter: _Waiter, loop: asyncio.AbstractEventLoop) -> None:
        """Take a cancelled waiter out of the queue, passing the turn on if it was next."""
        if self._waiters[0] is waiter:
            self._waiters.popleft()
            if self._waiters:
                self._wake_head_when_ready(loop)
            elif self._timer is not None:
                self._timer.cancel()
                self._timer = None
        else:
            self._waiters.remove(waiter)

    def _wake_head_when_ready(
        self, loop: asyncio.AbstractEventLoop, not_before: float = -math.inf
    ) -> None:
        """Arm the single timer for the head of the queue (or wake it now)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = loop.time()
        ready = max(self._ready_at(now, self._waiters[0].weight), not_before)
        if ready <= now:
            self._wake_head()
        else:
            self._timer = loop.call_at(ready, self._wake_head)

    def _wake_head(self) -> None:
        self._timer = None
        if self._waiters:
            future = self._waiters[0].future
            if not future.done():
                future.set_result(None)
