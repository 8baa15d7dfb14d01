"""`RedisMultiRateLimiter`: `MultiRateLimiter` shared by every process using the same Redis key."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from act_operator_lib._redis_client import Script, ScriptConnection
from act_operator_lib._validation import boolean
from act_operator_lib.limits._multi_rate import (
    MultiRateLimiter,
    MultiRateStatistics,
    Rate,
    RateStatistics,
)
from act_operator_lib.limits._redis_base import UNAVAILABLE, OnUnavailable, RedisLimiterBase
from act_operator_lib.limits._redis_scripts import (
    MULTI_RATE_SCRIPT,
    PAUSE_MULTI_RATE_SCRIPT,
    SETTLE_MULTI_RATE_SCRIPT,
)
from act_operator_lib.limits._reservation import Reservation, checked_costs
from act_operator_lib.limits._window import Entry

if TYPE_CHECKING:
    from act_operator_lib._redis_client import Client

__all__ = ["RedisMultiRateLimiter"]


class _Grant:
    """Where one grant came from, to settle it in the same place.

    ``grant_id`` and ``time_us`` for a grant from Redis; ``entries`` for one from
    the in-process fallback; neither for one let through by ``"allow"``.
    ``record`` is this process's log entry of it (``[time, units...]``).
    """

    __slots__ = ("entries", "grant_id", "record", "time_us")

    def __init__(
        self,
        record: list[float],
        grant_id: int | None = None,
        time_us: int | None = None,
        entries: tuple[Entry, ...] | None = None,
    ) -> None:
        self.record = record
        self.grant_id = grant_id
        self.time_us = time_us
        self.entries = entries


class RedisMultiRateLimiter(RedisLimiterBase):
    """`MultiRateLimiter` across processes: several rates taken atomically by one call.

    Example::

        llm = RedisMultiRateLimiter(                 # one budget for every worker
            "redis://127.0.0.1:6379/0",
            "openai",
            requests=Rate(500, per=60, burst=500),
            tokens=Rate(90_000, per=60, burst=90_000, margin=0.1),
            adaptive=True,                           # a 429 anywhere slows all down
        )
        reservation = await llm.reserve(tokens=estimate)
        await reservation.settle(tokens=used)    # reaches every process on "openai"
        await llm.aclose()

    The same API and guarantee as `MultiRateLimiter`, for every process and
    machine sharing ``key``: no window of ``per`` seconds of a rate holds more
    than its `Rate.limit` units, counted on the Redis server's clock when each
    grant is confirmed (an extra charge settled later counts at its grant's
    time, and later callers wait until the window is back within the limit). A
    caller reserves its turn on every rate's schedule at once, sleeps until it,
    then is granted from all rates in one script call, or told when the windows
    will have room (nobody polls). An uncontended caller
    reserves and is granted in one call. A settled refund lets later callers go
    sooner; an extra charge holds them back; callers already sleeping keep their
    turn. `pause` holds back every process sharing the key. A caller cancelled
    while waiting takes nothing from the windows; its turn on the schedules is
    not handed back, which only makes the limits stricter for a moment.
    `Rate.margin` counts each grant that much longer, as in process;
    ``adaptive=True`` as for `MultiRateLimiter`, with the learned rates kept in
    Redis and shared by every process (docs/distributed.md).

    Memory in Redis follows grants, not units: one entry per grant and rate in
    the last ``per`` seconds. Keys: ``key`` (a hash: schedules, sums, pause) and,
    per rate NAME, ``key:NAME:grants`` and ``key:NAME:units``; all expire when
    idle and share one hash slot on a cluster. Every process must configure the
    same rates and ``adaptive`` for a key.
    """

    __slots__ = (
        "_adaptive",
        "_default_cost",
        "_default_costs",
        "_keys",
        "_log",
        "_max_costs",
        "_max_per",
        "_names",
        "_rate_granted",
        "_rates",
        "_schedule",
        "_script",
        "_settle_script",
        "_shares",
    )

    _kind = "multi-rate"

    def __init__(
        self,
        redis: str | Client,
        key: str,
        *,
        adaptive: bool = False,
        timeout: float = 2.0,
        on_unavailable: OnUnavailable = "fail",
        **rates: Rate,
    ) -> None:
        """Configure the limiter; nothing is sent to Redis until the first grant.

        Args:
            redis: A URL or a redis-py asyncio client, as for `RedisRateLimiter`.
            key: The Redis key every process sharing the limits uses.
            adaptive: Learn lower rates from pauses (a server's 429s), shared by
                every process on ``key``, and recover towards the configured ones
                when they stop (default False).
            timeout: Seconds each Redis operation may take before the server counts
                as unavailable.
            on_unavailable: ``"fail"`` raises `LimiterUnavailableError`; ``"allow"``
                lets the call through unlimited; ``"local"`` limits it with an
                in-process `MultiRateLimiter` of the same rates.
            **rates: At least one `Rate`, each by the name its cost is given by
                (a Python identifier; any but ``timeout``, ``on_unavailable`` and
                ``adaptive``).

        Raises:
            TypeError: no rate, a rate that is not a `Rate`, or a bad argument type.
            ValueError: a malformed URL, an invalid key or rate name, a number out
                of range.
        """
        owner = "RedisMultiRateLimiter"
        self._adaptive = boolean(owner, "adaptive", adaptive)
        if not rates:
            raise TypeError(
                f"{owner}(**rates) must be given at least one rate, got none; "
                f'e.g. {owner}(url, "openai", requests=Rate(500, per=60))'
            )
        for name, rate in rates.items():
            if not isinstance(rate, Rate):
                raise TypeError(
                    f"{owner}({name}=...) must be a Rate, e.g. Rate(500, per=60), "
                    f"got {type(rate).__name__}"
                )
            if not name.isidentifier() or name == "adaptive":
                raise ValueError(
                    f"{owner}({name!r}=...) must be named by a Python identifier other "
                    f"than 'adaptive' (it names Redis keys), got {name!r}"
                )
        super().__init__(redis, key, owner=owner, timeout=timeout, on_unavailable=on_unavailable)
        self._rates = dict(rates)
        self._names = tuple(rates)
        self._max_costs = tuple(rate.max_cost for rate in rates.values())
        self._default_cost = tuple(rate.default_cost for rate in rates.values())
        self._default_costs = " ".join(map(str, self._default_cost))
        # Whole microseconds, rounded up: integer arithmetic in Lua is exact, and
        # rounding up can only make the limits stricter.
        schedule = ["1" if self._adaptive else "0"]
        for name, rate in rates.items():
            interval_us = math.ceil(rate.per / rate.limit * 1_000_000)
            per_us = math.ceil(rate.per * 1_000_000)
            held_us = math.ceil((rate.per + rate.margin) * 1_000_000)
            tolerance_us = (rate.burst - 1) * interval_us
            schedule.append(
                f"{name} {interval_us} {tolerance_us} {rate.max_cost} {per_us} {held_us} "
                f"{rate.limit!r} {rate.burst}"
            )
        self._schedule = " ".join(schedule).encode()
        self._keys = [self._redis_key]
        for name in self._names:
            self._keys += [f"{self._redis_key}:{name}:grants", f"{self._redis_key}:{name}:units"]
        self._script = ScriptConnection(MULTI_RATE_SCRIPT)
        self._settle_script = Script(SETTLE_MULTI_RATE_SCRIPT)
        self._pause_script = Script(PAUSE_MULTI_RATE_SCRIPT)
        # This process's grants of the last (longest) window, [time, units...],
        # for `statistics()`; a settle updates its grant's entry in place.
        self._log: deque[list[float]] = deque()
        self._max_per = max(rate.per for rate in rates.values())
        self._rate_granted = [0] * len(rates)
        # The learned share of each rate as of the last script reply (adaptive mode).
        self._shares = [1.0] * len(rates)

    def __repr__(self) -> str:
        rates = ", ".join(f"{name}={rate!r}" for name, rate in self._rates.items())
        adaptive = ", adaptive=True" if self._adaptive else ""
        return (
            f"RedisMultiRateLimiter(key={self._key!r}, {rates}{adaptive}, "
            f"on_unavailable={self._on_unavailable!r})"
        )

    @property
    def rates(self) -> Mapping[str, Rate]:
        """The configured rates, by name."""
        return dict(self._rates)

    async def acquire(self) -> None:
        """Wait until every rate allows its `Rate.default_cost`, then take it.

        Raises:
            LimiterUnavailableError: Redis is unavailable and on_unavailable="fail".
            LimiterKeyConflictError: ``key`` belongs to another kind of limiter.
        """
        await self._take(self._default_cost)

    async def acquire_with_grant_time(self) -> float | None:
        """`acquire`, returning the Redis server time (Unix seconds) of the grant.

        None when the grant did not come from Redis (``on_unavailable`` fallback).
        Useful to check the schedule across processes, as the tests do.
        """
        grant = await self._take(self._default_cost)
        return None if grant.time_us is None else grant.time_us / 1_000_000

    def reserve(self, **costs: int) -> Reservation[_Grant]:
        """Take ``costs`` from every rate at once; settle the actual cost later.

        Example::

            reservation = await limiter.reserve(tokens=800)
            ...
            await reservation.settle(tokens=1_130)    # 330 more tokens charged

        A rate left out takes its `Rate.default_cost`. Await the result, or use it
        with ``async with``. A settle reaches every process sharing ``key``.

        Raises:
            TypeError: an unknown rate name, or a cost that is not an int.
            ValueError: a cost below 0 or above the rate's `Rate.max_cost`.
        """
        return Reservation(
            self, self._costs("RedisMultiRateLimiter.reserve", costs, self._default_cost)
        )

    async def release(self) -> None:
        """Do nothing: a rate limiter's capacity comes back with time."""

    def statistics(self) -> MultiRateStatistics:
        """This process's view: its waiting callers, its grants, its seconds spent
        waiting, and per rate the units it was granted in the last ``per`` seconds
        (as settled) and the rate shared on the key as of its last call to Redis
        (below `Rate.limit` while adaptive mode has slowed every process down)."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # no running loop: count the whole log
            now = -math.inf
        self._trim_log(now)
        rates = {}
        for index, (name, rate) in enumerate(self._rates.items()):
            since = now - rate.per
            in_window = sum(record[index + 1] for record in self._log if record[0] > since)
            rates[name] = RateStatistics(
                round(in_window), self._rate_granted[index], rate.limit * self._shares[index]
            )
        return MultiRateStatistics(
            waiting=self._waiting,
            granted=self._granted,
            total_wait=self._total_wait,
            pauses=self._pauses,
            paused_for=self._paused_for(),
            rates=rates,
        )

    def _costs(
        self, owner: str, given: Mapping[str, object], base: tuple[int, ...]
    ) -> tuple[int, ...]:
        return checked_costs(
            owner, self._names, self._max_costs, given, base, up_front=owner.endswith(".reserve")
        )

    async def _take(self, cost: tuple[int, ...]) -> _Grant:
        loop = asyncio.get_running_loop()
        with self._waiting_caller(loop):
            grant_id, time_us, entries = await self._grant(loop, cost)
        self._granted += 1
        now = loop.time()
        self._trim_log(now)
        record: list[float] = [now, *cost]
        self._log.append(record)
        for index, units in enumerate(cost):
            self._rate_granted[index] += units
        return _Grant(record, grant_id, time_us, entries)

    async def _grant(
        self, loop: asyncio.AbstractEventLoop, cost: tuple[int, ...]
    ) -> tuple[int | None, int | None, tuple[Entry, ...] | None]:
        """Take ``cost`` from Redis, or from the fallback ``on_unavailable`` names."""
        costs = self._default_costs if cost == self._default_cost else " ".join(map(str, cost))
        due_us = told_us = -1
        while self._use_redis(loop.time()):
            arguments = [self._kind, self._schedule, costs, due_us, told_us]
            reply = await self._run(self._script, self._keys, arguments)
            if reply is UNAVAILABLE:
                break
            granted, now_us, value, *shares = reply
            if shares:
                self._learn(shares)
            if granted:
                return value, now_us, None
            due_us, told_us = value, now_us
            await asyncio.sleep((due_us - now_us) / 1_000_000)
        if self._on_unavailable == "local":
            await self._sit_out_pause(loop)
            return None, None, await self._local()._take(cost)
        return None, None, None

    def _local(self) -> MultiRateLimiter:
        if self._fallback is None:
            # No rate is named "adaptive" (checked in __init__).
            self._fallback = MultiRateLimiter(adaptive=self._adaptive, **self._rates)
        assert isinstance(self._fallback, MultiRateLimiter)
        return self._fallback

    async def _settle(
        self, grant: _Grant, estimate: tuple[int, ...], actual: tuple[int, ...]
    ) -> None:
        """Change a grant from ``estimate`` to ``actual`` where it was taken."""
        if actual == estimate:
            return
        for index, units in enumerate(actual):
            grant.record[index + 1] = units
            self._rate_granted[index] += units - estimate[index]
        if grant.entries is not None:
            await self._local()._settle(grant.entries, estimate, actual)
            return
        if grant.grant_id is None:
            return
        arguments = [
            self._kind,
            self._schedule,
            grant.grant_id,
            grant.time_us,
            " ".join(map(str, estimate)),
            " ".join(map(str, actual)),
        ]
        # Redis unavailable ("allow" / "local"): the grant stays at its estimate there.
        await self._run(self._settle_script, self._keys, arguments)

    def _pause_keys(self) -> list[str]:
        return self._keys

    def _pause_arguments(self, microseconds: int) -> list[object]:
        return [self._kind, self._schedule, microseconds]

    def _learn(self, shares: Sequence[bytes | str]) -> None:
        self._shares = [float(share) for share in shares]

    def _trim_log(self, now: float) -> None:
        log = self._log
        while log and log[0][0] <= now - self._max_per:
            log.popleft()
