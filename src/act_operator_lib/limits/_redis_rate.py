"""`RedisRateLimiter`: `RateLimiter` shared by every process using the same Redis key."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from act_operator_lib._redis_client import Script, ScriptConnection
from act_operator_lib._validation import boolean, positive_integer, positive_number
from act_operator_lib.limits._rate import RateLimiter
from act_operator_lib.limits._redis_base import UNAVAILABLE, OnUnavailable, RedisLimiterBase
from act_operator_lib.limits._redis_scripts import PAUSE_RATE_SCRIPT, RATE_SCRIPT
from act_operator_lib.limits._statistics import LimiterStatistics

if TYPE_CHECKING:
    from act_operator_lib._redis_client import Client

__all__ = ["RedisRateLimiter"]


class RedisRateLimiter(RedisLimiterBase):
    """`RateLimiter` across processes: at most ``rate`` grants per ``per`` seconds in total.

    Example::

        limiter = RedisRateLimiter("redis://127.0.0.1:6379/0", "openai", 100)
        async with limiter:                 # every process using "openai" shares 100/s
            await client.get(url)
        await limiter.acquire(weight=5)     # costs 5 units
        await limiter.aclose()

    Guarantee: in any window of ``per`` seconds at most ``ceil(rate) + burst - 1``
    units are granted across every process sharing ``key``, counted at the moment
    each grant is confirmed on the server (Redis ``TIME``), after the caller has
    resumed, so an event loop that wakes a caller late cannot let a burst through.
    A GCRA on the server spaces reservations ``per / rate`` apart (``burst`` units
    may go at once after a quiet spell); a caller reserves its slot, sleeps until
    it, then confirms it against a log of the grants in the last ``per`` seconds.
    An uncontended caller reserves and confirms in one script call. If a late
    wake-up filled the window, the server says how long to sleep before confirming
    again: nobody polls.

    Cancellation: a caller cancelled (or timed out) while sleeping loses its
    reserved slot; the slot is not handed back, which only makes the limit
    stricter for a moment, never looser.

    ``adaptive=True`` as for `RateLimiter`, with the learned rate kept in Redis:
    a pause from any process lowers it for all, recovery raises it for all, on
    the server's clock (docs/distributed.md, "Adaptive mode across processes").

    Every process must use the same ``rate``, ``per``, ``burst`` and ``adaptive``
    for a key. Keys: ``key`` (a hash holding the schedule and the learned rate)
    and ``key:grants`` (the log of confirmed grants); both expire when idle.
    """

    __slots__ = (
        "_adaptive",
        "_burst",
        "_capacity",
        "_grant_log",
        "_keys",
        "_logged_units",
        "_per",
        "_rate",
        "_schedule",
        "_script",
        "_share",
    )

    _kind = "rate"

    def __init__(
        self,
        redis: str | Client,
        key: str,
        rate: float,
        per: float = 1.0,
        burst: int = 1,
        *,
        adaptive: bool = False,
        timeout: float = 2.0,
        on_unavailable: OnUnavailable = "fail",
    ) -> None:
        """Configure the limiter; nothing is sent to Redis until the first `acquire`.

        Args:
            redis: A URL (``redis://host:port/db``, ``redis+cluster://host:port``,
                ``redis+sentinel://host:port[,host:port...]/service``) or a redis-py
                client: ``redis.asyncio.Redis`` (one server, or a Sentinel's
                ``master_for(...)``) or ``redis.asyncio.cluster.RedisCluster``. A
                client passed in is not closed by `aclose`.
            key: The Redis key every process sharing the limit uses.
            rate: Units granted per ``per`` seconds; a number above 0.
            per: The window, in seconds; a number above 0.
            burst: Units that may go at once after a quiet spell; an int of at least 1.
            adaptive: Learn a lower rate from pauses (a server's 429s), shared by every
                process on ``key``, and recover towards ``rate`` when they stop.
            timeout: Seconds each Redis operation may take before the server counts
                as unavailable (also the socket connect/read timeouts of a URL client).
            on_unavailable: ``"fail"`` raises `LimiterUnavailableError`; ``"allow"``
                lets the call through unlimited; ``"local"`` limits it with an
                in-process `RateLimiter` of the same parameters.

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: a malformed URL, an invalid key, or a number out of range.
        """
        owner = "RedisRateLimiter"
        self._rate = positive_number(owner, "rate", rate)
        self._per = positive_number(owner, "per", per)
        self._burst = positive_integer(owner, "burst", burst)
        self._adaptive = boolean(owner, "adaptive", adaptive)
        super().__init__(redis, key, owner=owner, timeout=timeout, on_unavailable=on_unavailable)
        # Whole microseconds, rounded up: integer arithmetic in Lua is exact, and
        # rounding up can only make the limit stricter.
        interval_us = math.ceil(self._per / self._rate * 1_000_000)
        self._capacity = math.ceil(self._rate) + self._burst - 1
        per_us = math.ceil(self._per * 1_000_000)
        schedule = f"{interval_us} {self._burst} {self._capacity} {per_us}"
        if self._adaptive:
            schedule += f" {self._rate!r}"
        self._schedule = schedule.encode()
        # The learned share of `rate` as of the last script reply (adaptive mode).
        self._share = 1.0
        self._keys = [self._redis_key, f"{self._redis_key}:grants"]
        self._script = ScriptConnection(RATE_SCRIPT)
        self._pause_script = Script(PAUSE_RATE_SCRIPT)
        # This process's grants of the last `per` seconds, (time, units), and
        # their sum: `statistics().in_use` counts units, as `RateLimiter` does.
        self._grant_log: deque[tuple[float, int]] = deque()
        self._logged_units = 0

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(key={self._key!r}, rate={self._rate:g}, per={self._per:g}, "
            f"burst={self._burst}{', adaptive=True' if self._adaptive else ''}, "
            f"on_unavailable={self._on_unavailable!r})"
        )

    @property
    def max_weight(self) -> int:
        """The largest ``weight`` one `acquire` may ask for: ``ceil(rate) + burst - 1``."""
        return self._capacity

    async def acquire(self, weight: int = 1) -> None:
        """Wait until ``weight`` units may go, then take them.

        Raises:
            TypeError, ValueError: ``weight`` is not an int from 1 to `max_weight`.
            LimiterUnavailableError: Redis is unavailable and on_unavailable="fail".
            LimiterKeyConflictError: ``key`` belongs to another kind of limiter.
        """
        await self.acquire_with_grant_time(weight)

    async def acquire_with_grant_time(self, weight: int = 1) -> float | None:
        """`acquire`, returning the Redis server time (Unix seconds) the grant was
        confirmed, after this caller resumed from any wait.

        None when the grant did not come from Redis (``on_unavailable`` fallback).
        Useful to check the schedule across processes, as the tests do.
        """
        if type(weight) is not int or not 1 <= weight <= self._capacity:
            positive_integer(repr(self), "weight", weight, self._capacity)
        loop = asyncio.get_running_loop()
        with self._waiting_caller(loop):
            grant_time = await self._take(loop, weight)
        self._granted += weight
        now = loop.time()
        self._trim_grant_log(now)
        self._grant_log.append((now, weight))
        self._logged_units += weight
        return grant_time

    async def _take(self, loop: asyncio.AbstractEventLoop, weight: int) -> float | None:
        due_us = told_us = -1
        while self._use_redis(loop.time()):
            arguments = [self._kind, self._schedule, weight, due_us, told_us]
            reply = await self._run(self._script, self._keys, arguments)
            if reply is UNAVAILABLE:
                break
            if isinstance(reply, int):
                return float(reply) / 1_000_000
            now_us, due_us, *shares = reply
            if shares:
                self._learn(shares)
                if due_us < 0:  # granted (adaptive mode's reply)
                    return float(now_us) / 1_000_000
            told_us = now_us
            await asyncio.sleep((due_us - now_us) / 1_000_000)
        if self._on_unavailable == "local":
            await self._sit_out_pause(loop)
            if self._fallback is None:
                self._fallback = RateLimiter(
                    self._rate, self._per, self._burst, adaptive=self._adaptive
                )
            assert isinstance(self._fallback, RateLimiter)
            await self._fallback.acquire(weight)
        return None

    def _pause_keys(self) -> list[str]:
        return self._keys

    def _pause_arguments(self, microseconds: int) -> list[object]:
        return [self._kind, self._schedule, microseconds]

    def _learn(self, shares: Sequence[bytes | str]) -> None:
        self._share = float(shares[0])

    async def release(self) -> None:
        """Do nothing: a rate limiter's capacity comes back with time."""

    def _trim_grant_log(self, now: float) -> None:
        log = self._grant_log
        while log and log[0][0] <= now - self._per:
            self._logged_units -= log.popleft()[1]

    def statistics(self) -> LimiterStatistics:
        """This process's view: units it was granted in the last ``per`` seconds
        (``in_use``), its waiting callers, its grants and its seconds spent waiting;
        ``rate`` is the rate shared on the key as of this process's last call to
        Redis (below ``rate`` while adaptive mode has slowed every process down).
        """
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to trim by
            self._trim_grant_log(asyncio.get_running_loop().time())
        return LimiterStatistics(
            in_use=self._logged_units,
            waiting=self._waiting,
            granted=self._granted,
            total_wait=self._total_wait,
            pauses=self._pauses,
            paused_for=self._paused_for(),
            rate=self._rate * self._share,
        )
