"""`ConcurrencyLimiter`: at most ``limit`` callers inside at once, served in arrival order."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable

from act_operator_lib._validation import positive_integer
from act_operator_lib.limits._base import _LimiterBase
from act_operator_lib.limits._queue import wake_on_its_loop
from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = ["ConcurrencyLimiter"]


class _Waiter:
    """One caller in line: its loop, the future it sleeps on, whether it got a permit."""

    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False

    def wake(self) -> None:
        """Resolve the future; runs on the waiter's own loop."""
        if not self.future.done():
            self.future.set_result(None)


class ConcurrencyLimiter(_LimiterBase):
    """Let at most ``limit`` callers hold a permit at once; the rest wait in line.

    Example::

        limiter = ConcurrencyLimiter(10)        # at most 10 requests in flight
        async with limiter:
            await client.get(url)

        @limiter
        async def fetch(url): ...

    Callers are served first come, first served. With ``async with`` (or the
    decorator) the permit always comes back: on success, on an exception, on a
    timeout and on cancellation, including a cancellation that lands just as the
    permit was handed over (the permit then passes to the next caller). A caller
    that uses `acquire` directly must call `release` once for each successful
    `acquire`.

    One limiter may be shared by event loops running in several threads (a
    compiled graph run with ``asyncio.run`` in worker threads): a permit released
    on one loop wakes a waiter of another on its own loop. It has no ``pause``: a
    server's cooldown belongs to the rate limiter in front of it.
    """

    __slots__ = ("_done", "_granted", "_in_use", "_limit", "_lock", "_total_wait", "_waiters")

    def __init__(self, limit: int) -> None:
        """Configure the limiter.

        Args:
            limit: How many callers may hold a permit at once; an int of at least 1.

        Raises:
            TypeError: ``limit`` is not an int.
            ValueError: ``limit`` is below 1.
        """
        self._limit = positive_integer("ConcurrencyLimiter", "limit", limit)
        self._in_use = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._done: asyncio.Future[None] | None = None
        self._granted = 0
        self._total_wait = 0.0

    def __repr__(self) -> str:
        return f"ConcurrencyLimiter(limit={self._limit})"

    @property
    def limit(self) -> int:
        """How many callers may hold a permit at once."""
        return self._limit

    async def acquire(self) -> None:
        """Wait for a permit and take it; pair with one `release`."""
        await self.__aenter__()

    async def release(self) -> None:
        """Give a permit back, handing it straight to the longest waiter if any.

        Raises:
            RuntimeError: more releases than acquires.
        """
        self._release()

    # `async with` awaits whatever __aenter__/__aexit__ return: an uncontended call
    # returns a completed future (any loop may await it), cheaper than a coroutine.
    # The one fast path of `acquire` and ``async with``. The lock is taken with
    # acquire()/release() rather than ``with``, which costs twice as much (docs/design.md).
    def __aenter__(self) -> Awaitable[None]:  # type: ignore[override]
        lock = self._lock
        lock.acquire()
        try:
            free = self._in_use < self._limit and not self._waiters
            if free:
                self._in_use += 1
                self._granted += 1
        finally:
            lock.release()
        if free:
            return self._done or self._make_done()
        return self._wait()

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:  # type: ignore[override]
        self._release()
        return self._done or self._make_done()

    def _make_done(self) -> Awaitable[None]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        self._done = done
        return done

    def statistics(self) -> LimiterStatistics:
        """A snapshot: permits held, callers waiting, permits granted in total, and
        seconds spent waiting in total.
        """
        with self._lock:
            return LimiterStatistics(
                in_use=self._in_use,
                waiting=len(self._waiters),
                granted=self._granted,
                total_wait=self._total_wait,
            )

    async def _wait(self) -> None:
        """Queue for a permit; `_release` hands it over and wakes us on our loop."""
        loop = asyncio.get_running_loop()
        requested = loop.time()
        waiter = _Waiter(loop)
        with self._lock:
            # A permit may have come back between the fast path and here.
            if self._in_use < self._limit and not self._waiters:
                self._in_use += 1
                self._granted += 1
                return
            self._waiters.append(waiter)
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                handed_over = waiter.granted
                if not handed_over:
                    self._waiters.remove(waiter)
            if handed_over:
                # The permit was handed to us just before the cancellation: pass it on.
                self._release()
            raise
        with self._lock:
            self._granted += 1
            self._total_wait += loop.time() - requested

    def _release(self) -> None:
        lock = self._lock
        lock.acquire()
        try:
            if self._waiters:
                # The permit moves to the next caller without ever being free, so a
                # newcomer cannot take it out of turn.
                waiter = self._waiters.popleft()
                waiter.granted = True
            elif self._in_use > 0:
                self._in_use -= 1
                return
            else:
                raise RuntimeError(
                    f"{self!r} was released more times than it was acquired; "
                    "call release() once per successful acquire()"
                )
        finally:
            lock.release()
        if not wake_on_its_loop(waiter):
            # Its loop is closed: that caller will never run, so the permit moves on.
            self._release()
