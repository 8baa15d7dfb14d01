"""`RedisConcurrencyLimiter`: `ConcurrencyLimiter` shared by every process using the same key."""

from __future__ import annotations

import asyncio
import math
import uuid
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

from act_operator_lib._errors import LimiterUnavailableError
from act_operator_lib._redis_client import Script
from act_operator_lib._validation import positive_integer, positive_number
from act_operator_lib.limits._concurrency import ConcurrencyLimiter
from act_operator_lib.limits._redis_base import OnUnavailable, RedisLimiterBase, logger
from act_operator_lib.limits._redis_scripts import (
    ACQUIRE_SCRIPT,
    PAUSE_LEASES_SCRIPT,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
)
from act_operator_lib.limits._statistics import LimiterStatistics

if TYPE_CHECKING:
    from act_operator_lib._redis_client import Client, Session

__all__ = ["RedisConcurrencyLimiter"]

_RECHECK_INTERVAL: Final = 1.0
"""Longest a concurrency waiter blocks on its wake list before checking again."""
_ALLOWED: Final = "allowed"
_LOCAL: Final = "local"


class RedisConcurrencyLimiter(RedisLimiterBase):
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
        redis: str | Client,
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
        self._acquire_script = Script(ACQUIRE_SCRIPT)
        self._renew_script = Script(RENEW_SCRIPT)
        self._release_script = Script(RELEASE_SCRIPT)
        self._pause_script = Script(PAUSE_LEASES_SCRIPT)
        self._local = ConcurrencyLimiter(self._limit)
        self._blocking: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # Each permit with the task that took it, in grant order: a release gives
        # back its own task's permit, so one granted by the fallback during an
        # outage never frees a lease another caller holds in Redis.
        self._permits: list[tuple[asyncio.Task[Any] | None, str]] = []
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
        key = self._redis_key
        return [key, f"{key}:holders", f"{key}:wake"]

    async def acquire(self) -> None:
        """Wait for a permit and take it; pair with one `release`.

        Raises:
            LimiterUnavailableError: Redis is unavailable and on_unavailable="fail".
            LimiterKeyConflictError: ``key`` belongs to another kind of limiter.
        """
        loop = asyncio.get_running_loop()
        with self._waiting_caller(loop):
            permit = await self._take(loop)
        self._permits.append((asyncio.current_task(), permit))
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
                blocking = self._blocking.get(loop)
                if blocking is None:
                    blocking = self._blocking[loop] = asyncio.Lock()
                async with blocking:
                    while self._use_redis(loop.time()):
                        # Asked again first: the lease may have come free while this
                        # caller queued behind another waiter.
                        outcome = await self._try_acquire(loop)
                        if isinstance(outcome, str):
                            return outcome
                        wake = f"{self._redis_key}:wake"
                        await self._handle.call(
                            lambda session: session.client.blpop([wake], timeout=outcome),  # noqa: B023
                            self._key,
                            extra_time=outcome,
                        )
        except LimiterUnavailableError as error:
            self._unavailable(error, loop.time())
        if self._on_unavailable == "local":
            await self._sit_out_pause(loop)
            return _LOCAL
        return _ALLOWED

    def _pause_keys(self) -> list[str]:
        return [self._redis_key]

    def _pause_arguments(self, microseconds: int) -> list[object]:
        return [self._kind, microseconds]

    async def _try_acquire(self, loop: asyncio.AbstractEventLoop) -> str | float:
        """One run of the acquire script: the holder id granted, or seconds to block."""
        holder = uuid.uuid4().hex
        # Shielded: a cancelled caller must not cancel the script mid-flight, or
        # its give-back could reach the server before the script and the permit
        # would be taken after it was "released" (held by nobody until its lease
        # ran out). The give-back waits for the script to finish instead.
        started: list[asyncio.Task[Any]] = []

        def start(session: Session) -> Awaitable[Any]:
            script = loop.create_task(
                self._acquire_script.run(
                    session, self._keys(), [self._kind, holder, self._limit, self._lease_us]
                )
            )
            started.append(script)
            return asyncio.shield(script)

        try:
            granted, wait_us = await self._handle.call(start, self._key)
        except BaseException as error:
            # The script may have run before the cancellation or failure reached
            # us: give the id back, shielded, so no permit waits for its lease.
            if started:
                self._give_back(holder, after=started[0])
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
                    lambda session: self._renew_script.run(
                        session, self._keys(), [self._kind, holder, self._lease_us]
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
                lambda session: self._release_script.run(
                    session, self._keys(), [self._kind, holder, self._limit]
                ),
                self._key,
            )
        except LimiterUnavailableError as error:
            logger.warning("%s; the permit comes back when its lease runs out", error)

    async def release(self) -> None:
        """Give back the permit the calling task took (the latest one if it took
        none), even if the caller is being cancelled.

        A permit goes back where it was granted: a lease to Redis, a permit of
        the ``"local"`` / ``"allow"`` fallback to the fallback.

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
        permit = self._pop_permit()
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

    def _pop_permit(self) -> str:
        """Remove and return the calling task's latest permit, else the latest one."""
        task = asyncio.current_task()
        permits = self._permits
        for index in range(len(permits) - 1, -1, -1):
            if permits[index][0] is task:
                return permits.pop(index)[1]
        return permits.pop()[1]

    def statistics(self) -> LimiterStatistics:
        """This process's view: permits it holds, its waiting callers, its grants
        and its seconds spent waiting.
        """
        return LimiterStatistics(
            in_use=len(self._permits),
            waiting=self._waiting,
            granted=self._granted,
            total_wait=self._total_wait,
            pauses=self._pauses,
            paused_for=self._paused_for(),
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
