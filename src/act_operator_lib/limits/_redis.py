"""Limiters shared by every process that uses the same Redis key.

`RedisRateLimiter` and `RedisConcurrencyLimiter` have the interface of
`RateLimiter` and `ConcurrencyLimiter`; every decision is one Lua script run
atomically on the Redis server with the server's clock (``TIME``), so processes on
any number of machines, sharing one key, together keep the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections import deque
from typing import TYPE_CHECKING, Final, Literal

from act_operator_lib._errors import LimiterKeyConflictError, LimiterUnavailableError
from act_operator_lib._redis_client import RedisHandle, ScriptConnection, check_key
from act_operator_lib.limits._arguments import positive_integer, positive_number
from act_operator_lib.limits._base import Limiter
from act_operator_lib.limits._concurrency import ConcurrencyLimiter
from act_operator_lib.limits._rate import RateLimiter
from act_operator_lib.limits._statistics import LimiterStatistics

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["OnUnavailable", "RedisConcurrencyLimiter", "RedisRateLimiter"]

logger = logging.getLogger("act_operator_lib.limits")

OnUnavailable = Literal["fail", "allow", "local"]
"""What a Redis limiter does when Redis is unavailable: raise, let calls through,
or fall back to an in-process limiter with the same parameters."""

_ON_UNAVAILABLE: Final = ("fail", "allow", "local")
_RETRY_REDIS_AFTER: Final = 1.0
"""With "allow" / "local", seconds to keep using the fallback before asking Redis again."""
_RECHECK_INTERVAL: Final = 1.0
"""Longest a concurrency waiter blocks on its wake list before checking again."""
_KIND_ERROR: Final = "ACTOPLIB_KIND"

# Shared by every script: KEYS[1] is the limiter's hash, whose field `kind` says
# which kind of limiter owns the key; any other kind, or another Redis type, is an
# error reply instead of silent corruption. One HMGET reads the hash (`limiter`:
# kind, tat, granted) and, in the usual case of the right kind, is the whole check.
_CHECK_KIND: Final = """
local limiter = redis.pcall('HMGET', KEYS[1], 'kind', 'tat', 'granted')
local owner = limiter[1]
if owner ~= ARGV[1] then
  local key_type = redis.call('TYPE', KEYS[1])['ok']
  if key_type ~= 'none' then
    if key_type ~= 'hash' then
      return redis.error_reply('ACTOPLIB_KIND a Redis ' .. key_type)
    end
    return redis.error_reply('ACTOPLIB_KIND ' .. (owner and ('a ' .. owner .. ' limiter')
      or 'a hash that is not a limiter'))
  end
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
"""

# GCRA with reservation, confirmed against a log of grants. KEYS[1]: hash {kind,
# tat, granted}; KEYS[2]: sorted set of confirmed grants, scored by server time (us),
# each member the count of units granted before it (so units in the window are
# `granted` minus the oldest member). ARGV: kind, "interval burst capacity per"
# (us per unit, units, ceil(rate) + burst - 1, us: one argument, as packing each
# costs the client microseconds), weight, due (us; -1 to reserve).
# Reserving moves TAT, the theoretical arrival time of the next unit, and makes the
# caller due at max(now, new_tat - burst * interval). A caller is granted only when
# it is due and the log has room for `weight` more units in the window (now - per,
# now]; the grant is then logged at `now`. Returns `now` when granted (one integer,
# cheaper to parse than an array), else {now, at}: sleep until `at` (server time)
# and call again with due = at. So a
# caller woken late is counted when it confirms, and the window holds at most
# `capacity` units by confirmation time.
_RATE_SCRIPT: Final = (
    _CHECK_KIND
    + """
local interval, burst, capacity, per = string.match(ARGV[2], '(%d+) (%d+) (%d+) (%d+)')
interval, per = tonumber(interval), tonumber(per)
local weight = tonumber(ARGV[3])
local due = tonumber(ARGV[4])
local tat = tonumber(limiter[2]) or now
local granted = tonumber(limiter[3]) or 0
if due < 0 then
  if tat < now then tat = now end
  tat = tat + weight * interval
  due = tat - tonumber(burst) * interval
end
local granted_now = false
if due <= now then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - per)
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local in_window = oldest[1] and granted - tonumber(oldest[1]) or 0
  if in_window < 0 then
    redis.call('DEL', KEYS[2])
    in_window = 0
  end
  if in_window + weight > tonumber(capacity) then
    due = tonumber(oldest[2]) + per
  else
    redis.call('ZADD', KEYS[2], now, string.format('%.0f', granted))
    granted = granted + weight
    granted_now = true
  end
end
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'tat', string.format('%.0f', tat),
  'granted', string.format('%.0f', granted))
local ttl = math.ceil((math.max(tat - now, 0) + per) / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
if granted_now then return now end
return {now, due}
"""
)

# Leases. KEYS: hash {kind}, sorted set of holder ids scored by lease expiry (us),
# wake list. Both keys expire a second after the last lease, so an abandoned key
# cleans itself up; the TTL follows the longest lease, whatever process set it.
_LEASES: Final = """
local function keep_alive()
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local ttl = 1000
  if last[2] then ttl = math.ceil((tonumber(last[2]) - now) / 1000) + 1000 end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
"""

# ARGV: kind, holder id, limit, lease (us). Purges expired leases, then takes a
# permit if fewer than `limit` are held. Returns {1, 0} when granted, else {0, us
# until the earliest lease expires}. Safe to run twice (the client resends it when
# the connection drops, and the first run may have reached the server): a holder
# already in the set is granted again, not counted twice or refused.
_ACQUIRE_SCRIPT: Final = (
    _CHECK_KIND
    + _LEASES
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[2], ARGV[2]) or redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[4])), ARGV[2])
  redis.call('HSET', KEYS[1], 'kind', ARGV[1])
  keep_alive()
  return {1, 0}
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
"""
)

# ARGV: kind, holder id, lease (us). Extends a lease still held; 0 if it was lost.
_RENEW_SCRIPT: Final = (
    _CHECK_KIND
    + _LEASES
    + """
if not redis.call('ZSCORE', KEYS[2], ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], 'XX', string.format('%.0f', now + tonumber(ARGV[3])), ARGV[2])
keep_alive()
return 1
"""
)

# ARGV: kind, holder id, limit. Drops the lease and, if it was held, pushes one
# wake-up token (the list is capped at `limit`) for a waiter blocked in BLPOP.
_RELEASE_SCRIPT: Final = (
    _CHECK_KIND
    + """
if redis.call('ZREM', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 1000 then ttl = 1000 end
redis.call('PEXPIRE', KEYS[3], ttl)
return 1
"""
)


def _check_on_unavailable(owner: str, value: object) -> OnUnavailable:
    if value == "fail":
        return "fail"
    if value == "allow":
        return "allow"
    if value == "local":
        return "local"
    raise ValueError(f"{owner} on_unavailable must be one of {_ON_UNAVAILABLE}, got {value!r}")


def _conflict(error: Exception, key: str, kind: str) -> LimiterKeyConflictError | None:
    """The key conflict an error reply from one of the scripts reports, if any."""
    message = str(error)
    if _KIND_ERROR not in message:
        return None
    found = message.split(_KIND_ERROR, 1)[1].strip()
    return LimiterKeyConflictError(key, kind, found)


class _RedisLimiterBase(Limiter):
    """What both Redis limiters share: the handle, the fallback and the bookkeeping."""

    __slots__ = (
        "_fallback",
        "_granted",
        "_handle",
        "_key",
        "_on_unavailable",
        "_retry_redis_at",
        "_total_wait",
        "_waiting",
    )

    _kind: str

    def __init__(
        self,
        redis: str | Redis,
        key: str,
        *,
        owner: str,
        timeout: float,
        on_unavailable: OnUnavailable,
        read_slack: float = 0.0,
    ) -> None:
        self._key = check_key(owner, "key", key)
        self._on_unavailable = _check_on_unavailable(owner, on_unavailable)
        timeout = positive_number(owner, "timeout", timeout)
        self._handle = RedisHandle(redis, owner=owner, timeout=timeout, read_slack=read_slack)
        self._fallback: Limiter | None = None
        self._retry_redis_at = -math.inf
        self._granted = 0
        self._waiting = 0
        self._total_wait = 0.0

    @property
    def key(self) -> str:
        """The Redis key every process sharing this limit uses."""
        return self._key

    async def aclose(self) -> None:
        """Close the Redis client if this limiter built it from a URL."""
        await self._handle.aclose()

    def _use_redis(self, now: float) -> bool:
        """False while a recent failure sends "allow" / "local" callers to the fallback."""
        return now >= self._retry_redis_at

    def _unavailable(self, error: LimiterUnavailableError, now: float) -> None:
        """Re-raise for "fail"; otherwise log and keep off Redis for a while."""
        if self._on_unavailable == "fail":
            raise error
        if self._retry_redis_at < now:
            logger.warning("%s; using on_unavailable=%r", error, self._on_unavailable)
        self._retry_redis_at = now + _RETRY_REDIS_AFTER

    def _raise_conflict(self, error: Exception) -> None:
        conflict = _conflict(error, self._key, self._kind)
        if conflict is not None:
            raise conflict from None


class RedisRateLimiter(_RedisLimiterBase):
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

    Every process must use the same ``rate``, ``per`` and ``burst`` for a key.
    Keys: ``key`` (a hash holding the schedule) and ``key:grants`` (the log of
    confirmed grants); both expire when idle.
    """

    __slots__ = (
        "_burst",
        "_capacity",
        "_grant_log",
        "_keys",
        "_per",
        "_rate",
        "_schedule",
        "_script",
    )

    _kind = "rate"

    def __init__(
        self,
        redis: str | Redis,
        key: str,
        rate: float,
        per: float = 1.0,
        burst: int = 1,
        *,
        timeout: float = 2.0,
        on_unavailable: OnUnavailable = "fail",
    ) -> None:
        """Configure the limiter; nothing is sent to Redis until the first `acquire`.

        Args:
            redis: A URL (``redis://host:port/db``) or a ``redis.asyncio.Redis`` client
                (redis-py; a client passed in is not closed by `aclose`).
            key: The Redis key every process sharing the limit uses.
            rate: Units granted per ``per`` seconds; a number above 0.
            per: The window, in seconds; a number above 0.
            burst: Units that may go at once after a quiet spell; an int of at least 1.
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
        super().__init__(redis, key, owner=owner, timeout=timeout, on_unavailable=on_unavailable)
        # Whole microseconds, rounded up: integer arithmetic in Lua is exact, and
        # rounding up can only make the limit stricter.
        interval_us = math.ceil(self._per / self._rate * 1_000_000)
        self._capacity = math.ceil(self._rate) + self._burst - 1
        per_us = math.ceil(self._per * 1_000_000)
        self._schedule = f"{interval_us} {self._burst} {self._capacity} {per_us}".encode()
        self._keys = [self._key, f"{self._key}:grants"]
        self._script = ScriptConnection(self._handle, _RATE_SCRIPT)
        self._grant_log: deque[float] = deque()

    def __repr__(self) -> str:
        return (
            f"RedisRateLimiter(key={self._key!r}, rate={self._rate:g}, per={self._per:g}, "
            f"burst={self._burst}, on_unavailable={self._on_unavailable!r})"
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
        started = loop.time()
        self._waiting += 1
        try:
            grant_time = await self._take(loop, weight)
        finally:
            self._waiting -= 1
            self._total_wait += loop.time() - started
        self._granted += weight
        now = loop.time()
        self._trim_grant_log(now)
        self._grant_log.append(now)
        return grant_time

    async def _take(self, loop: asyncio.AbstractEventLoop, weight: int) -> float | None:
        due_us = -1
        while self._use_redis(loop.time()):
            try:
                reply = await self._handle.call(
                    self._script.run(self._keys, [self._kind, self._schedule, weight, due_us]),
                    self._key,
                )
            except LimiterUnavailableError as error:
                self._unavailable(error, loop.time())
                break
            except Exception as error:
                self._raise_conflict(error)
                raise
            if isinstance(reply, int):
                return float(reply) / 1_000_000
            now_us, due_us = reply
            await asyncio.sleep((due_us - now_us) / 1_000_000)
        if self._on_unavailable == "local":
            if self._fallback is None:
                self._fallback = RateLimiter(self._rate, self._per, self._burst)
            assert isinstance(self._fallback, RateLimiter)
            await self._fallback.acquire(weight)
        return None

    async def release(self) -> None:
        """Do nothing: a rate limiter's capacity comes back with time."""

    async def aclose(self) -> None:
        """Close the limiter's own connection, and the client if built from a URL."""
        await self._script.aclose()
        await super().aclose()

    def _trim_grant_log(self, now: float) -> None:
        log = self._grant_log
        while log and log[0] <= now - self._per:
            log.popleft()

    def statistics(self) -> LimiterStatistics:
        """This process's view: units it was granted in the last ``per`` seconds
        (``in_use``), its waiting callers, its grants and its seconds spent waiting.
        """
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to trim by
            self._trim_grant_log(asyncio.get_running_loop().time())
        return LimiterStatistics(
            in_use=len(self._grant_log),
            waiting=self._waiting,
            granted=self._granted,
            total_wait=self._total_wait,
        )


_ALLOWED: Final = "allowed"
_LOCAL: Final = "local"


class RedisConcurrencyLimiter(_RedisLimiterBase):
    """`ConcurrencyLimiter` across processes: at most ``limit`` holders in total.

    Example::

        limiter = RedisConcurrencyLimiter("redis://127.0.0.1:6379/0", "browser", 4)
        async with limiter:             # at most 4 in flight across all processes
            await render(page)
        await limiter.aclose()

    Each permit is a lease: a holder id in a sorted set scored by its expiry on the
    server clock. A background task renews it every ``lease / 3`` seconds while it is
    held; `release` removes it, and with ``async with`` that happens on success,
    error, timeout and cancellation (the release runs shielded, so a cancelled
    caller still gives the permit back). A process that dies without releasing
    (SIGKILL, power loss) loses its permits when their lease runs out.

    In front of Redis sits an in-process `ConcurrencyLimiter` with the same
    ``limit``: one process never lets more than ``limit`` of its own callers in,
    even when Redis restarts without persistence and forgets the leases, or while
    it switches to and from the ``"local"`` fallback (which is that same in-process
    limiter, so its permits carry over). Across processes such a restart can still
    let up to 2 x ``limit`` in until the old holders leave (docs/distributed.md).

    Waiting does not poll, and it does not take a connection per waiter: one caller
    per process at a time (the others queue in process, first come first served)
    blocks in ``BLPOP`` on the key's wake list, to which every release pushes a
    token, for at most the time until the earliest lease expires (so a dead
    holder's permit is taken as soon as it lapses), and at most one second, after
    which it checks again (a bounded fallback for a token lost to a cancelled
    waiter). Across processes waiters are not served in arrival order.

    Every process must use the same ``limit`` for a key. Keys: ``key`` (a hash
    marking the kind), ``key:holders`` (the leases), ``key:wake`` (the wake list).
    """

    __slots__ = (
        "_acquire_script",
        "_blocking",
        "_lease",
        "_lease_us",
        "_limit",
        "_local",
        "_permits",
        "_release_script",
        "_releases",
        "_renew_script",
        "_renewals",
    )

    _kind = "concurrency"

    def __init__(
        self,
        redis: str | Redis,
        key: str,
        limit: int,
        lease: float = 30.0,
        *,
        timeout: float = 2.0,
        on_unavailable: OnUnavailable = "fail",
    ) -> None:
        """Configure the limiter; nothing is sent to Redis until the first `acquire`.

        Args:
            redis: A URL or a ``redis.asyncio.Redis`` client (see `RedisRateLimiter`).
            key: The Redis key every process sharing the limit uses.
            limit: Permits held at once across all processes; an int of at least 1.
            lease: Seconds a permit outlives its holder if the holder dies; renewed
                every ``lease / 3`` seconds while held. A number above 0.
            timeout: Seconds each Redis operation may take (see `RedisRateLimiter`).
            on_unavailable: ``"fail"``, ``"allow"`` or ``"local"`` (an in-process
                `ConcurrencyLimiter` with the same ``limit``).

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: a malformed URL, an invalid key, or a number out of range.
        """
        owner = "RedisConcurrencyLimiter"
        self._limit = positive_integer(owner, "limit", limit)
        self._lease = positive_number(owner, "lease", lease)
        super().__init__(
            redis,
            key,
            owner=owner,
            timeout=timeout,
            on_unavailable=on_unavailable,
            read_slack=_RECHECK_INTERVAL,
        )
        self._lease_us = math.ceil(self._lease * 1_000_000)
        client = self._handle.client
        self._acquire_script: AsyncScript = client.register_script(_ACQUIRE_SCRIPT)
        self._renew_script: AsyncScript = client.register_script(_RENEW_SCRIPT)
        self._release_script: AsyncScript = client.register_script(_RELEASE_SCRIPT)
        self._local = ConcurrencyLimiter(self._limit)
        self._blocking = asyncio.Lock()
        self._permits: list[str] = []
        self._renewals: dict[str, asyncio.Task[None]] = {}
        self._releases: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return (
            f"RedisConcurrencyLimiter(key={self._key!r}, limit={self._limit}, "
            f"lease={self._lease:g}, on_unavailable={self._on_unavailable!r})"
        )

    @property
    def limit(self) -> int:
        """How many holders may hold a permit at once, across all processes."""
        return self._limit

    def _keys(self) -> list[str]:
        return [self._key, f"{self._key}:holders", f"{self._key}:wake"]

    async def acquire(self) -> None:
        """Wait for a permit and take it; pair with one `release`.

        Raises:
            LimiterUnavailableError: Redis is unavailable and on_unavailable="fail".
            LimiterKeyConflictError: ``key`` belongs to another kind of limiter.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._waiting += 1
        try:
            permit = await self._take(loop)
        finally:
            self._waiting -= 1
            self._total_wait += loop.time() - started
        self._permits.append(permit)
        self._granted += 1
        if permit not in (_ALLOWED, _LOCAL):
            self._renewals[permit] = loop.create_task(self._renew(permit))

    async def _take(self, loop: asyncio.AbstractEventLoop) -> str:
        """Return the permit taken: a holder id, or `_ALLOWED` / `_LOCAL`.

        A holder id and `_LOCAL` come with a permit of the in-process limiter.
        """
        if self._on_unavailable == "allow" and not self._use_redis(loop.time()):
            return _ALLOWED
        await self._local.acquire()
        try:
            permit = await self._take_from_redis(loop)
        except BaseException:
            await self._local.release()
            raise
        if permit == _ALLOWED:
            await self._local.release()
        return permit

    async def _take_from_redis(self, loop: asyncio.AbstractEventLoop) -> str:
        """Take a lease; while none is free, at most one caller of this process at a
        time waits on the server (so waiters do not take a connection each).
        """
        try:
            if self._use_redis(loop.time()):
                outcome = await self._try_acquire(loop)
                if isinstance(outcome, str):
                    return outcome
                async with self._blocking:
                    while self._use_redis(loop.time()):
                        # Asked again first: the lease may have come free while this
                        # caller queued behind another waiter.
                        outcome = await self._try_acquire(loop)
                        if isinstance(outcome, str):
                            return outcome
                        await self._handle.call(
                            self._handle.client.blpop([f"{self._key}:wake"], timeout=outcome),
                            self._key,
                            extra_time=outcome,
                        )
        except LimiterUnavailableError as error:
            self._unavailable(error, loop.time())
        return _LOCAL if self._on_unavailable == "local" else _ALLOWED

    async def _try_acquire(self, loop: asyncio.AbstractEventLoop) -> str | float:
        """One run of the acquire script: the holder id granted, or seconds to block."""
        holder = uuid.uuid4().hex
        # Shielded: a cancelled caller must not cancel the script mid-flight, or
        # its give-back could reach the server before the script and the permit
        # would be taken after it was "released" (held by nobody until its lease
        # ran out). The give-back waits for the script to finish instead.
        script = loop.create_task(
            self._acquire_script(
                keys=self._keys(),
                args=[self._kind, holder, self._limit, self._lease_us],
            )
        )
        try:
            granted, wait_us = await self._handle.call(asyncio.shield(script), self._key)
        except BaseException as error:
            # The script may have run before the cancellation or failure reached
            # us: give the id back, shielded, so no permit waits for its lease.
            self._give_back(holder, after=script)
            if isinstance(error, Exception) and not isinstance(error, LimiterUnavailableError):
                self._raise_conflict(error)
            raise
        if granted:
            return holder
        return float(min(max(wait_us / 1_000_000, 0.001), _RECHECK_INTERVAL))

    async def _renew(self, holder: str) -> None:
        """Extend ``holder``'s lease every ``lease / 3`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                held = await self._handle.call(
                    self._renew_script(
                        keys=self._keys(), args=[self._kind, holder, self._lease_us]
                    ),
                    self._key,
                )
            except LimiterUnavailableError as error:
                logger.warning("%s; lease of a permit not renewed", error)
                continue
            if not held:
                logger.warning(
                    "%r: a permit's lease ran out before it was renewed (the process "
                    "stalled for over %gs); raise `lease`",
                    self,
                    self._lease,
                )
                return

    def _give_back(
        self, holder: str, after: asyncio.Future[object] | None = None
    ) -> asyncio.Task[None]:
        """Release ``holder`` on the server in a task that no cancellation reaches.

        ``after``: the acquire script that may be granting ``holder``; the release is
        sent once it has finished, so it cannot overtake it on the server.
        """
        task = asyncio.get_running_loop().create_task(self._release_on_server(holder, after))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)
        return task

    async def _release_on_server(
        self, holder: str, after: asyncio.Future[object] | None = None
    ) -> None:
        if after is not None:
            await asyncio.wait((after,))
            if not after.cancelled():
                after.exception()  # seen here: the caller that started it is gone
        try:
            await self._handle.call(
                self._release_script(keys=self._keys(), args=[self._kind, holder, self._limit]),
                self._key,
            )
        except LimiterUnavailableError as error:
            logger.warning("%s; the permit comes back when its lease runs out", error)

    async def release(self) -> None:
        """Give a permit back, even if the caller is being cancelled.

        The server-side release runs in a shielded task: cancelling the caller
        does not stop it. If Redis is unavailable the permit is not renewed any
        more and comes back when its lease runs out.

        Raises:
            RuntimeError: more releases than acquires.
        """
        if not self._permits:
            raise RuntimeError(
                f"{self!r} was released more times than it was acquired; "
                "call release() once per successful acquire()"
            )
        permit = self._permits.pop()
        if permit == _ALLOWED:
            return
        try:
            if permit != _LOCAL:
                renewal = self._renewals.pop(permit, None)
                if renewal is not None:
                    renewal.cancel()
                await asyncio.shield(self._give_back(permit))
        finally:
            await self._local.release()

    def statistics(self) -> LimiterStatistics:
        """This process's view: permits it holds, its waiting callers, its grants
        and its seconds spent waiting.
        """
        return LimiterStatistics(
            in_use=len(self._permits),
            waiting=self._waiting,
            granted=self._granted,
            total_wait=self._total_wait,
        )

    async def aclose(self) -> None:
        """Release the permits still held, finish pending releases, close the client."""
        while self._permits:
            await self.release()
        for renewal in self._renewals.values():
            renewal.cancel()
        self._renewals.clear()
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await super().aclose()
