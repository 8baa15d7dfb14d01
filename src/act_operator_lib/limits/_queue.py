"""The line of callers waiting for a rate: first come, first served, across loops and threads.

`RateLimiter` and `MultiRateLimiter` differ only in what they check and record
(`_ready_at`, `_record`); this base holds the waiting, the pause and the lock.
Each waiter waits on a future of its own loop and is woken on that loop
(``call_soon_threadsafe`` from another thread), so one limiter may be shared by
event loops running in several threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from act_operator_lib._validation import non_negative_number
from act_operator_lib.limits._base import _LimiterBase
from act_operator_lib.limits._window import Window

__all__ = ["GrantQueue", "Waiter", "Wakeable", "wake_on_its_loop"]

_TICK = 2 * time.get_clock_info("monotonic").resolution
_BLAMED = 0.9
"""Adaptive mode blames a refusal on the rates at least this full, relative to the fullest."""

C = TypeVar("C")
"""What one grant costs: an int for `RateLimiter`, a tuple of units for multi-rate."""
G = TypeVar("G")
"""What a grant records, handed back to the caller (log entries for multi-rate)."""


class Waiter(Generic[C]):
    """One caller in line: its loop, its cost, and the future it sleeps on."""

    __slots__ = ("cost", "future", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, cost: C) -> None:
        self.loop = loop
        self.cost = cost
        self.future: asyncio.Future[None] = loop.create_future()
        self.timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        """Resolve the current future; runs on the waiter's own loop."""
        if not self.future.done():
            self.future.set_result(None)


class GrantQueue(_LimiterBase, Generic[C, G]):
    """Shared waiting logic of the in-process rate limiters (private base)."""

    __slots__ = (
        "_clock",
        "_lock",
        "_loop",
        "_pauses",
        "_total_wait",
        "_waiters",
        "_windows",
    )

    _owner = "RateLimiter"

    def __init__(self, windows: Sequence[Window]) -> None:
        self._windows = tuple(windows)
        self._waiters: deque[Waiter[C]] = deque()
        self._lock = threading.Lock()
        self._total_wait = 0.0
        self._pauses = 0
        # The loop in use, as last seen, and its clock (see `loop_clock`).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: Callable[[], float] = time.monotonic

    def _use_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take time from ``loop`` (the running loop) from now on."""
        self._clock = loop_clock(loop)
        self._loop = loop

    def _now(self) -> float:
        """The running loop's time, or the last loop's clock outside a loop."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return self._clock()

    @abstractmethod
    def _ready_at(self, now: float, cost: C) -> float:
        """The earliest time ``cost`` may be granted."""

    @abstractmethod
    def _record(self, now: float, cost: C, due: float) -> G:
        """Take ``cost`` at ``now`` for a caller due at ``due``."""

    async def release(self) -> None:
        """Do nothing: a rate limiter's capacity comes back with time."""

    async def pause(self, seconds: float) -> None:
        """Grant nothing to anyone sharing this limiter for ``seconds`` from now.

        Example::

            await limiter.pause(2.0)   # e.g. a server answered 429 with retry-after: 2

        A later pause extends a running one, never shortens it; callers already
        waiting keep their places; after the pause a `RateLimiter` resumes evenly
        spaced (no burst), a `MultiRateLimiter` with each rate's burst (a `Rate`'s
        window never holds more than its limit). In adaptive mode a pause is a
        refusal: the fullest rate slows down to what the server took (once per
        episode: not again while paused or within a window of the last), measured
        again when the pause ends, and the burst the pause took away comes back at
        the learned rate (docs/limits.md).

        Raises:
            TypeError: ``seconds`` is not a number.
            ValueError: ``seconds`` is negative, infinite or NaN.
        """
        seconds = non_negative_number(f"{self._owner}.pause", "seconds", seconds)
        now = asyncio.get_running_loop().time()
        with self._lock:
            self._pauses += 1
            windows = self._windows
            if windows[0].adaptive:
                # The refusal is blamed on the fullest rate (and any within 10% of
                # it): a rate held back by another one never reached the server's
                # limit, and cutting it too would ratchet it down episode by episode.
                used = [window.used(now) for window in windows]
                fullest = max(used)
                for window, share in zip(windows, used, strict=True):
                    window.decrease(now, blamed=share >= _BLAMED * fullest)
            for window in windows:
                window.pause(now + seconds)

    def _paused_for(self, now: float) -> float:
        until = max(window.paused_until for window in self._windows)
        return until - now if until > now else 0.0

    async def _wait(self, loop: asyncio.AbstractEventLoop, requested: float, cost: C) -> G:
        """Queue behind earlier callers; grant when this caller is the head and the
        windows allow it, at the moment it runs."""
        waiter = Waiter(loop, cost)
        with self._lock:
            self._waiters.append(waiter)
            at_head = self._waiters[0] is waiter
        try:
            if not at_head:
                await waiter.future
            while True:
                with self._lock:
                    now = loop.time()
                    ready = self._ready_at(now, cost)
                    if ready <= now:
                        self._waiters.popleft()
                        granted = self._record(now, cost, ready)
                        self._total_wait += now - requested
                        following = self._waiters[0] if self._waiters else None
                        break
                # Woken early (asyncio fires timers up to its clock resolution early,
                # a pause pushed the time back): wait again, at least a tick, so a
                # fake clock moves on.
                if waiter.timer is not None:
                    waiter.timer.cancel()
                waiter.future = loop.create_future()
                waiter.timer = loop.call_at(max(ready, now + _TICK), waiter.wake)
                await waiter.future
        except BaseException:
            if waiter.timer is not None:
                waiter.timer.cancel()
            self._leave(waiter)
            raise
        if following is not None:
            self._wake(following)
        return granted

    def _leave(self, waiter: Waiter[C]) -> None:
        """Take a waiter out of line, passing the turn on if it was at the head."""
        with self._lock:
            waiters = self._waiters
            if not waiters or waiters[0] is not waiter:
                if waiter in waiters:
                    waiters.remove(waiter)
                return
            waiters.popleft()
            following = waiters[0] if waiters else None
        if following is not None:
            self._wake(following)

    def _wake(self, waiter: Waiter[C]) -> None:
        """Wake ``waiter`` on its own loop, from whichever thread calls."""
        if not wake_on_its_loop(waiter):
            # Its loop is closed: the waiter will never run, so it leaves the line.
            self._leave(waiter)


class Wakeable(Protocol):
    """A waiter parked on one event loop."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def wake(self) -> None: ...


def wake_on_its_loop(waiter: Wakeable) -> bool:
    """Wake ``waiter`` on its own loop, from whichever thread calls; False if it is closed."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if waiter.loop is running:
        waiter.wake()
        return True
    try:
        waiter.loop.call_soon_threadsafe(waiter.wake)
    except RuntimeError:
        return False
    return True


def loop_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The clock of ``loop``: `time.monotonic` itself for asyncio's own loops."""
    default = type(loop).time is asyncio.BaseEventLoop.time and "time" not in vars(loop)
    return time.monotonic if default else loop.time
