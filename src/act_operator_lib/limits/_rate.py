"""`RateLimiter`: at most ``rate`` grants per ``per`` seconds, strictly, in arrival order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from act_operator_lib._validation import boolean, positive_integer, positive_number
from act_operator_lib.limits._queue import GrantQueue
from act_operator_lib.limits._statistics import LimiterStatistics
from act_operator_lib.limits._window import Window

__all__ = ["RateLimiter"]


class RateLimiter(GrantQueue[int, None]):
    """Let calls through at most ``rate`` times per ``per`` seconds, evenly spaced.

    Example::

        limiter = RateLimiter(200)              # 200 calls a second, one every 5 ms
        async with limiter:
            await client.get(url)

        tokens = RateLimiter(90_000, per=60, burst=4_000)
        await tokens.acquire(weight=1_500)      # a request that costs 1,500 units

        await limiter.pause(2.0)                # a server said retry-after: 2

    Guarantee: in any window of ``per`` seconds, at most ``ceil(rate) + burst - 1``
    units are granted (``rate + burst - 1`` for a whole-number rate), counted at the
    moment each caller resumes, so an event loop that wakes waiters late cannot let
    a burst through. Grants are spaced ``per / rate`` apart; ``burst`` lets that many
    units go at once after a quiet spell. Callers are served first come, first
    served; a caller cancelled while waiting takes nothing and delays nobody.

    ``release()`` does nothing: time, not the caller, gives capacity back. A
    ``weight`` is at most ``ceil(rate) + burst - 1`` (larger could never be granted
    without breaking the guarantee). Time comes from the running loop's
    ``loop.time()``, so fake clocks (``looptime``) work. One limiter may be shared
    by event loops in several threads (each waiter is woken on its own loop), as
    long as their loops share a clock, as asyncio's and uvloop's do.

    ``adaptive=True`` makes a `pause` (a server's refusal) slow the rate down to
    what the server took in the last window, hold there a while, then give a 20th
    of the configured rate back per quiet window (docs/limits.md, "Adaptive mode").
    """

    __slots__ = ("_max_weight", "_ready", "_window")

    _owner = "RateLimiter"

    def __init__(
        self, rate: float, per: float = 1.0, burst: int = 1, *, adaptive: bool = False
    ) -> None:
        """Configure the limiter.

        Args:
            rate: Units granted per ``per`` seconds; a number above 0 (e.g. 200 or 0.5).
            per: The window, in seconds; a number above 0 (default 1.0).
            burst: Units that may be granted at once after a quiet spell; an int of
                at least 1 (default 1: strictly evenly spaced).
            adaptive: Learn a lower rate from pauses (a server's 429s) and recover
                towards ``rate`` when they stop (default False).

        Raises:
            TypeError: an argument is not a number (``burst``: not an int).
            ValueError: an argument is out of range; the message gives the range.
        """
        window = Window(
            positive_number("RateLimiter", "rate", rate),
            positive_number("RateLimiter", "per", per),
            positive_integer("RateLimiter", "burst", burst),
            adaptive=boolean("RateLimiter", "adaptive", adaptive),
        )
        super().__init__((window,))
        self._window = window
        self._max_weight = window.capacity
        # A completed future that `async with` hands back without a coroutine (any
        # loop may await it).
        self._ready: Awaitable[None] | None = None

    def __repr__(self) -> str:
        window = self._window
        adaptive = ", adaptive=True" if window.adaptive else ""
        return (
            f"RateLimiter(rate={window.configured_rate:g}, per={window.per:g}, "
            f"burst={window.burst}{adaptive})"
        )

    @property
    def max_weight(self) -> int:
        """The largest ``weight`` one `acquire` may ask for: ``ceil(rate) + burst - 1``."""
        return self._max_weight

    async def acquire(self, weight: int = 1) -> None:
        """Wait until ``weight`` units may go, then take them.

        Args:
            weight: Units this call costs; an int from 1 to `max_weight`.

        Raises:
            TypeError: ``weight`` is not an int.
            ValueError: ``weight`` is below 1 or above `max_weight`.
        """
        if type(weight) is not int or not 1 <= weight <= self._max_weight:
            positive_integer("RateLimiter.acquire", "weight", weight, self._max_weight)
        await self._take(weight)

    def _take(self, weight: int = 1) -> Awaitable[None]:
        """Take ``weight`` units: a completed future if granted at once, else the wait.

        The one fast path of `acquire` and ``async with`` (``__aenter__`` is this
        method, and `async with` awaits whatever it returns): an uncontended call
        creates no coroutine.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._use_loop(loop)
        window = self._window
        # acquire()/release() rather than ``with``, which costs twice as much here.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock()
            # `Window.ready_at` inlined for the common case: on schedule, room in the
            # window, not slowed down; anything else takes the full check.
            if not self._waiters and (
                (
                    window.schedule - window.tolerance <= now
                    and window.logged + weight <= window.capacity
                    and window.share >= 1.0
                )
                or window.ready_at(now, weight) <= now
            ):
                if now < window.bucket_end:
                    # `Window.grant` inlined for a grant that joins the last entry.
                    schedule = window.schedule
                    window.schedule = (schedule if schedule > now else now) + (
                        weight * window.interval
                    )
                    window.logged += weight
                    window.granted += weight
                    entry = window.log[-1]
                    entry[0] = now
                    entry[1] += weight
                else:
                    window.grant(now, weight, now)
                return self._ready  # type: ignore[return-value]
        finally:
            lock.release()
        return self._wait(loop, now, weight)

    __aenter__ = _take  # type: ignore[assignment]

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:  # type: ignore[override]
        if self._ready is None:
            return self.release()
        return self._ready

    def statistics(self) -> LimiterStatistics:
        """A snapshot: units granted in the last ``per`` seconds (``in_use``), waiters,
        units granted in total, seconds spent waiting in total, pauses so far and
        the seconds the current pause has left.
        """
        now = self._now()
        with self._lock:
            self._window.refresh(now)
            return LimiterStatistics(
                in_use=round(self._window.logged),
                waiting=len(self._waiters),
                granted=round(self._window.granted),
                total_wait=self._total_wait,
                pauses=self._pauses,
                paused_for=self._paused_for(now),
                rate=self._window.rate,
            )

    def _use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._ready is None:
            ready = loop.create_future()
            ready.set_result(None)
            self._ready = ready
        super()._use_loop(loop)

    def _ready_at(self, now: float, cost: int) -> float:
        return self._window.ready_at(now, cost)

    def _record(self, now: float, cost: int, due: float) -> None:
        self._window.grant(now, cost, due)
