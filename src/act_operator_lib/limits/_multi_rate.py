"""`MultiRateLimiter`: several rates (requests and tokens a minute) taken by one call."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass

from act_operator_lib._validation import (
    boolean,
    non_negative_integer,
    non_negative_number,
    positive_integer,
    positive_number,
)
from act_operator_lib.limits._queue import GrantQueue
from act_operator_lib.limits._reservation import Reservation, checked_costs
from act_operator_lib.limits._window import Entry, Window

__all__ = [
    "MultiRateLimiter",
    "MultiRateStatistics",
    "Rate",
    "RateStatistics",
]


@dataclass(frozen=True, slots=True)
class Rate:
    """One rate of a `MultiRateLimiter`: at most ``limit`` units in any ``per`` seconds.

    Example::

        Rate(500, per=60)                              # 500 requests a minute, evenly
        Rate(90_000, per=60, burst=90_000, default_cost=1_000)   # tokens, all at once

    A sliding window, as providers' per-minute limits are: whatever ``burst``, no
    window of ``per`` seconds holds more than ``limit`` units (unlike `RateLimiter`,
    whose ``burst`` comes on top of its rate). Grants are spaced ``per / limit``
    apart per unit; ``burst`` units may go at once after a quiet spell, up to the
    whole window (``burst=limit``).
    """

    limit: float
    """Units granted per ``per`` seconds; a number above 0."""
    per: float = 1.0
    """The window, in seconds; a number above 0."""
    burst: int = 1
    """Units that may go at once after a quiet spell; an int of at least 1
    (``limit`` lets a whole window's budget go at once)."""
    default_cost: int = 1
    """Units taken by `MultiRateLimiter.acquire` and by a `reserve` that leaves this
    rate out; an int of at least 0."""
    margin: float = 0.0
    """Seconds each grant counts beyond ``per`` (see above); a number of at least 0."""

    def __post_init__(self) -> None:
        positive_number("Rate", "limit", self.limit)
        positive_number("Rate", "per", self.per)
        positive_integer("Rate", "burst", self.burst)
        non_negative_integer("Rate", "default_cost", self.default_cost)
        non_negative_number("Rate", "margin", self.margin)
        if self.default_cost > self.max_cost:
            raise ValueError(
                f"Rate(default_cost={self.default_cost!r}) must be at most "
                f"ceil(limit) = {self.max_cost}, got {self.default_cost!r}"
            )

    @property
    def max_cost(self) -> int:
        """The most units one grant may take: ``ceil(limit)``."""
        return math.ceil(self.limit)


@dataclass(frozen=True, slots=True)
class RateStatistics:
    """One rate of a `MultiRateStatistics` snapshot."""

    in_window: int
    """Units granted in the last ``per`` seconds (as settled)."""
    granted: int
    """Units granted since the limiter was created (as settled)."""
    rate: float
    """The rate granted at now: the configured one, or less in adaptive mode."""


@dataclass(frozen=True, slots=True)
class MultiRateStatistics:
    """A snapshot of a `MultiRateLimiter`, returned by ``statistics()``.

    Example::

        stats = limiter.statistics()
        print(stats.rates["tokens"].in_window, stats.waiting)
    """

    waiting: int
    """Callers blocked in ``acquire`` / ``reserve`` right now."""
    granted: int
    """Grants since the limiter was created (calls, not units)."""
    total_wait: float
    """Seconds all callers have spent waiting, summed."""
    pauses: int
    """Calls of ``pause()`` so far."""
    paused_for: float
    """Seconds the current pause has left; 0.0 when not paused."""
    rates: Mapping[str, RateStatistics]
    """Each rate by name."""


class MultiRateLimiter(GrantQueue[tuple[int, ...], tuple[Entry, ...]]):
    """Take from several rates at once: e.g. 500 requests and 90,000 tokens a minute.

    Example::

        limiter = MultiRateLimiter(
            requests=Rate(500, per=60, burst=500),
            tokens=Rate(90_000, per=60, burst=90_000, default_cost=1_000),
        )
        async with limiter.reserve(tokens=estimate) as reservation:
            response = await call_model()
            await reservation.settle(tokens=response.usage.total_tokens)

        await limiter.acquire()      # the default cost: 1 request, 1,000 tokens

    One call takes from every rate atomically: it waits until all of them allow
    its cost, then takes it from all of them at that moment. Callers are served
    first come, first served (a large cost is not overtaken by small ones); a
    caller cancelled while waiting takes nothing. A `Reservation` may be settled
    once with the actual cost: a refund lets the next callers go sooner, an extra
    charge holds them back. No window of a rate is granted more than its `Rate.limit`
    units (an extra charge settled later is counted at its grant's time, and later
    callers wait until the window is back within the limit). Memory
    follows grants, not units (one log entry per grant and rate, at most
    about 10,000 per rate). Usable wherever a rate limiter is: ``acquire()``,
    ``async with``, ``pause()``; ``adaptive=True`` as for `RateLimiter`.
    """

    __slots__ = ("_default_cost", "_default_pairs", "_granted", "_max_costs", "_names", "_rates")

    _owner = "MultiRateLimiter"

    def __init__(self, *, adaptive: bool = False, **rates: Rate) -> None:
        """Configure the limiter.

        Args:
            adaptive: Learn lower rates from pauses (a server's 429s) and recover
                towards the configured ones when they stop (default False).
            **rates: At least one `Rate`, each by the name its cost is given by
                (any name but ``adaptive``).

        Raises:
            TypeError: no rate, or a rate that is not a `Rate`.
        """
        boolean("MultiRateLimiter", "adaptive", adaptive)
        if not rates:
            raise TypeError(
                "MultiRateLimiter(**rates) must be given at least one rate, got none; "
                "e.g. MultiRateLimiter(requests=Rate(500, per=60))"
            )
        for name, rate in rates.items():
            if not isinstance(rate, Rate):
                raise TypeError(
                    f"MultiRateLimiter({name}=...) must be a Rate, e.g. Rate(500, per=60), "
                    f"got {type(rate).__name__}"
                )
        super().__init__(
            [
                Window(
                    rate.limit,
                    rate.per,
                    rate.burst,
                    adaptive,
                    sliding=True,
                    margin=rate.margin,
                )
                for rate in rates.values()
            ]
        )
        for window in self._windows:
            window.siblings = self._windows
        self._rates = dict(rates)
        self._granted = 0
        self._names = tuple(rates)
        self._default_cost = tuple(rate.default_cost for rate in rates.values())
        # Each window with its default cost: `acquire` loops over these, no zip.
        self._default_pairs = tuple(zip(self._windows, self._default_cost, strict=True))
        self._max_costs = tuple(rate.max_cost for rate in rates.values())

    def __repr__(self) -> str:
        rates = ", ".join(f"{name}={rate!r}" for name, rate in self._rates.items())
        adaptive = ", adaptive=True" if self._windows[0].adaptive else ""
        return f"MultiRateLimiter({rates}{adaptive})"

    @property
    def rates(self) -> Mapping[str, Rate]:
        """The configured rates, by name."""
        return dict(self._rates)

    async def acquire(self) -> None:
        """Wait until every rate allows its `Rate.default_cost`, then take it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._use_loop(loop)
        pairs = self._default_pairs
        # acquire()/release() rather than ``with``, which costs twice as much here.
        lock = self._lock
        lock.acquire()
        try:
            now = self._clock()
            if not self._waiters:
                # `_ready_at` inlined for the common case: on schedule, room in the
                # window, not slowed down; anything else takes the full check.
                for window, units in pairs:
                    if (
                        window.schedule - window.tolerance > now
                        or window.logged + units > window.capacity
                        or window.share < 1.0
                    ) and window.ready_at(now, units) > now:
                        break
                else:
                    self._granted += 1
                    for window, units in pairs:
                        if now < window.bucket_end:
                            # `Window.grant` inlined for a grant that joins the last entry.
                            schedule = window.schedule
                            window.schedule = (
                                schedule if schedule > now else now
                            ) + units * window.interval
                            window.logged += units
                            window.granted += units
                            window.log[-1][0] = now
                            window.log[-1][1] += units
                        else:
                            window.grant(now, units, now)
                    return
        finally:
            lock.release()
        await self._wait(loop, now, self._default_cost)

    def reserve(self, **costs: int) -> Reservation[tuple[Entry, ...]]:
        """Take ``costs`` from every rate at once; settle the actual cost later.

        Example::

            reservation = await limiter.reserve(tokens=800)
            ...
            await reservation.settle(tokens=1_130)    # 330 more tokens charged

        A rate left out takes its `Rate.default_cost`. Await the result, or use it
        with ``async with`` (which closes it on exit, keeping the cost as it stands).

        Raises:
            TypeError: an unknown rate name, or a cost that is not an int.
            ValueError: a cost below 0 or above the rate's `Rate.max_cost`.
        """
        return Reservation(self, self._costs("MultiRateLimiter.reserve", costs, self._default_cost))

    def statistics(self) -> MultiRateStatistics:
        """A snapshot: waiters, grants, waiting time, pauses, and each rate's window."""
        now = self._now()
        with self._lock:
            rates = {}
            for name, window in zip(self._names, self._windows, strict=True):
                window.refresh(now)
                rates[name] = RateStatistics(
                    round(window.logged), round(window.granted), window.rate
                )
            return MultiRateStatistics(
                waiting=len(self._waiters),
                granted=self._granted,
                total_wait=self._total_wait,
                pauses=self._pauses,
                paused_for=self._paused_for(now),
                rates=rates,
            )

    async def _take(self, cost: tuple[int, ...]) -> tuple[Entry, ...]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._use_loop(loop)
        with self._lock:
            now = self._clock()
            if not self._waiters and self._ready_at(now, cost) <= now:
                return self._record(now, cost, now)
        return await self._wait(loop, now, cost)

    def _costs(
        self, owner: str, given: Mapping[str, object], base: tuple[int, ...]
    ) -> tuple[int, ...]:
        """Validate ``given`` costs by name; the rates left out keep ``base``."""
        return checked_costs(
            owner, self._names, self._max_costs, given, base, up_front=owner.endswith(".reserve")
        )

    def _ready_at(self, now: float, cost: tuple[int, ...]) -> float:
        ready = -math.inf
        # Equal lengths by construction; strict=True would cost more than the check.
        for window, units in zip(self._windows, cost, strict=False):
            at = window.ready_at(now, units)
            if at > ready:
                ready = at
        return ready

    def _record(self, now: float, cost: tuple[int, ...], due: float) -> tuple[Entry, ...]:
        self._granted += 1
        return tuple(
            [
                window.grant(now, units, due)
                for window, units in zip(self._windows, cost, strict=True)
            ]
        )

    async def _settle(
        self, entries: tuple[Entry, ...], estimate: tuple[int, ...], actual: tuple[int, ...]
    ) -> None:
        """Change a grant from ``estimate`` to ``actual``; wake the head on a refund."""
        refunded = False
        # Adaptive mode: a rate refunded in full (no tokens used) marks a call the
        # server refused, so its other rates' units did not reach the server either.
        refused = self._windows[0].adaptive and any(
            units == 0 < estimated for units, estimated in zip(actual, estimate, strict=True)
        )
        with self._lock:
            for index, (window, entry) in enumerate(zip(self._windows, entries, strict=True)):
                difference = actual[index] - estimate[index]
                if difference:
                    window.settle(entry, difference)
                    refunded = refunded or difference < 0
                elif refused and estimate[index]:
                    window.refuse(entry, estimate[index])
            head = self._waiters[0] if refunded and self._waiters else None
        if head is not None:
            self._wake(head)
