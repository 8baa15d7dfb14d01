"""`RateLimiter`: at most ``rate`` grants per ``per`` seconds, strictly, in arrival order."""

from __future__ import annotations

import asyncio
import math
import time
from asyncio import events
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from itertools import repeat
from types import TracebackType

from act_operator_lib.limits._arguments import positive_integer, positive_number
from act_operator_lib.limits._base import Limiter
from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = ["RateLimiter"]

_TICK = 2 * time.get_clock_info("monotonic").resolution
# The C function behind `asyncio.get_running_loop()`, minus the error: None when no
# loop runs. Cheap enough to call on every acquisition to notice a change of loop.
_running_loop = events._get_running_loop
_default_loop_time = asyncio.BaseEventLoop.time


class _Done:
    """An awaitable that is already done: `__aexit__` before any loop was used."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        yield from ()


_DONE = _Done()


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
    and a ring of the times of the last ``max_weight`` units granted enforces the
    window exactly (the unit ``max_weight - weight`` grants back must be older than
    ``per``). Waiters queue FIFO behind a single timer for the head; the head checks
    the schedule itself when it runs, and grants at that moment. A wake-up late by
    less than one interval keeps the schedule (no drift), a later one restarts it.
    """

    __slots__ = (
        "_burst",
        "_capacity",
        "_clock",
        "_granted",
        "_interval",
        "_log",
        "_loop",
        "_loop_class",
        "_per",
        "_rate",
        "_ready",
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
        # The time of each of the last `_capacity` units granted, oldest first.
        self._log: deque[float] = deque(maxlen=self._capacity)
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        # The loop in use, as last seen: its class (looptime swaps it), its clock
        # and a completed future that `async with` hands back without a coroutine.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_class: type[asyncio.AbstractEventLoop] | None = None
        self._clock: Callable[[], float] = time.monotonic
        self._ready: Awaitable[None] = _DONE
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
        loop = _running_loop()
        if loop is not self._loop or loop.__class__ is not self._loop_class:
            loop = self._use_loop(loop)
        now = self._clock()
        if not self._waiters and self._ready_at(now, weight) <= now:
            self._grant(now, weight, now)
            return
        await self._wait(loop, now, weight)

    async def release(self) -> None:
        """Do nothing: a rate limiter's capacity comes back with time."""

    # `async with` awaits whatever __aenter__ returns: an uncontended call returns a
    # completed future, which costs less than creating and running a coroutine.
    def __aenter__(self) -> Awaitable[None]:  # type: ignore[override]
        # `acquire()` inlined for weight 1: this path is every uncontended call.
        loop = _running_loop()
        if loop is not self._loop or loop.__class__ is not self._loop_class:
            loop = self._use_loop(loop)
        now = self._clock()
        schedule = self._schedule
        if schedule - self._tolerance <= now and not self._waiters:
            log = self._log
            # `_ready_at` for one unit: the unit `max_weight` grants back has left.
            if len(log) < self._capacity or log[0] + self._per <= now:
                self._schedule = (schedule if schedule > now else now) + self._interval
                log.append(now)
                self._granted += 1
                return self._ready
        return self._wait(loop, now, 1)

    def __aexit__(  # type: ignore[override]
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Awaitable[None]:
        return self._ready

    def statistics(self) -> LimiterStatistics:
        """A snapshot: units granted in the last ``per`` seconds (``in_use``), waiters,
        units granted in total, and seconds spent waiting in total.
        """
        if self._loop is not None and not self._loop.is_closed():
            self._expire(self._loop.time())
        return LimiterStatistics(
            in_use=len(self._log),
            waiting=len(self._waiters),
            granted=self._granted,
            total_wait=self._total_wait,
        )

    def _use_loop(self, loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
        """Take time from ``loop`` (the running loop) from now on; raise if there is none."""
        if loop is None:
            loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_class = loop.__class__
        # asyncio's own `time()` is `time.monotonic()`: call that directly. Any other
        # (looptime, uvloop, a subclass, a patched instance) is called as the loop's.
        default = self._loop_class.time is _default_loop_time and "time" not in vars(loop)
        self._clock = time.monotonic if default else loop.time
        ready = loop.create_future()
        ready.set_result(None)
        self._ready = ready
        return loop

    def _expire(self, now: float) -> None:
        """Forget grants that have left the window ending at ``now``."""
        log = self._log
        per = self._per
        while log and log[0] + per <= now:
            log.popleft()

    def _ready_at(self, now: float, weight: int) -> float:
        """The earliest time ``weight`` units may be granted, given the grants so far."""
        ready = self._schedule - self._tolerance
        log = self._log
        keep = self._capacity - weight
        if len(log) > keep:
            # With ``weight`` more, the window may hold ``keep`` of the units granted
            # so far: the one just before those must have left it.
            leaves = log[len(log) - keep - 1] + self._per
            if leaves > now and leaves > ready:
                return leaves
        return ready

    def _grant(self, now: float, weight: int, due: float) -> None:
        """Record a grant at ``now`` of a caller that was due at ``due``."""
        cost = weight * self._interval
        start = due if now - due < self._interval else now
        self._schedule = max(self._schedule, start) + cost
        if weight == 1:
            self._log.append(now)
        else:
            self._log.extend(repeat(now, weight))
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
