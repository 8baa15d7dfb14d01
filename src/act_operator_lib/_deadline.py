"""Attempt deadlines: what ``asyncio.timeout`` does, on one shared timer per loop and timeout.

``async with asyncio.timeout(s)`` costs several microseconds per use on Python 3.11
(a `Timeout` object, coroutine frames for ``__aenter__`` and ``__aexit__``, a
``loop.call_at`` timer handle made and cancelled, ~2.3 us of it), which the retry
engine would pay on every attempt. `deadline` keeps asyncio.timeout's algorithm, on
public asyncio APIs only: at the deadline the task is cancelled, and on exit
``Task.uncancel()`` tells that cancellation from anyone else's. What it shares is the
timer: attempts on one loop with the same timeout have their deadlines in the order
they started, so one timer armed for the earliest running attempt serves them all
(`_Deadlines`). A plain ``with`` block, as anyio's ``fail_after``::

    try:
        with deadline(10.0):
            result = await fetch()
    except DeadlineExceeded:
        ...  # fetch ran past 10 s and was cancelled
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from types import TracebackType

__all__ = ["Deadline", "DeadlineExceeded", "deadline"]

_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task

_COMPACT_AFTER = 32
"""Finished attempts left behind a running one before the line is compacted."""
_MOST_LINES = 64
"""Lines (distinct timeouts) a loop keeps before the idle ones are dropped."""


class DeadlineExceeded(TimeoutError):
    """The attempt ran past its deadline and was cancelled (``asyncio.timeout``'s error)."""


class Deadline:
    """One attempt's deadline: a ``with`` block that ends in `DeadlineExceeded` when due.

    A cancellation from outside stays a `asyncio.CancelledError`, even when it
    arrives together with the deadline (the task's cancel count tells them apart).
    Made by `deadline`; each block is used once.

    Example::

        with deadline(0.5):
            await asyncio.sleep(1)   # raises DeadlineExceeded
    """

    __slots__ = ("_line", "cancelling", "due", "expired", "finished", "loop", "task")

    # Set on entry (`__enter__`, `_Deadlines.start`).
    task: asyncio.Task[object] | None
    cancelling: int
    due: float

    def __init__(self, line: _Deadlines, loop: asyncio.AbstractEventLoop) -> None:
        self._line = line
        self.loop: asyncio.AbstractEventLoop | None = loop
        self.expired = False
        self.finished = False

    def __enter__(self) -> Deadline:
        # `_Deadlines.start` and `finish` are inlined here: this runs on every attempt.
        loop = self.loop
        assert loop is not None, "a Deadline is entered once"
        task = _current_task(loop)
        if task is None:
            raise RuntimeError("deadline() must be entered inside a task")
        self.task = task
        self.cancelling = task.cancelling()
        line = self._line
        due = self.due = loop.time() + line.seconds
        line.running.append(self)
        armed_for = line.armed_for
        # Armed for no later than `due` unless the clock stepped back (a fake one).
        if armed_for is None or due < armed_for:
            line.arm(loop, due)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.expired:
            self.finished = True
            # A finished attempt may wait in line a while: it holds no task, no loop.
            self.task = self.loop = None
            line = self._line
            running = line.running
            if running[0] is self:
                running.popleft()
                if running and running[0].finished:
                    line.prune()
            else:
                line.left_behind()
            return
        task = self.task
        assert task is not None
        if task.uncancel() <= self.cancelling and isinstance(error, asyncio.CancelledError):
            raise DeadlineExceeded from error


class _Deadlines:
    """The running attempts of one loop with one timeout, in start order, on one timer.

    Each new attempt's deadline comes no earlier than those before it, so the timer,
    armed for the earliest running attempt, is due before any other. A finished
    attempt is marked and dropped once it reaches the head of the line; when more
    than `_COMPACT_AFTER` (and more than half the line) wait behind a slow head, the
    line is compacted, so memory follows the running attempts. When the timer fires
    it cancels every attempt then due and is armed again for the next running one;
    with none running it stays unarmed, so a quiet loop has no timer at all.
    """

    __slots__ = ("armed_for", "finished", "running", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running: deque[Deadline] = deque()
        self.finished = 0
        self.armed_for: float | None = None

    def prune(self) -> None:
        """Drop the finished attempts at the head of the line."""
        running = self.running
        while running and running[0].finished:
            running.popleft()
            self.finished -= 1

    def left_behind(self) -> None:
        """An attempt behind the head finished: compact the line if too many did."""
        self.finished += 1
        if self.finished > _COMPACT_AFTER and 2 * self.finished > len(self.running):
            self.running = deque(waiting for waiting in self.running if not waiting.finished)
            self.finished = 0

    def arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """Have the timer fire at ``due``, superseding the one armed (now stale)."""
        # The handle is not kept: the loop holds it, and a line held by the loop
        # registry must not hold the loop.
        self.armed_for = due
        loop.call_at(due, self._expire, loop, due)

    def _expire(self, loop: asyncio.AbstractEventLoop, armed_for: float) -> None:
        if armed_for != self.armed_for:
            return
        self.armed_for = None
        # The loop ran this timer, so its own deadline counts as reached even if
        # the clock reads a little earlier (asyncio fires within its resolution).
        now = loop.time()
        reached = now if now > armed_for else armed_for
        running = self.running
        while running:
            attempt = running[0]
            if attempt.finished:
                self.finished -= 1
            elif attempt.due > reached:
                self.arm(loop, attempt.due)
                return
            else:
                attempt.expired = True
                assert attempt.task is not None
                attempt.task.cancel()
            running.popleft()


_lines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Deadlines]] = (
    weakref.WeakKeyDictionary()
)
_lines_lock = threading.Lock()
# The lines of the loop that asked last, so the usual case (one loop) skips the
# weak-keyed lookup; held by a weak reference, so no loop is kept alive.
_recent: tuple[weakref.ref[asyncio.AbstractEventLoop], dict[float, _Deadlines]] | None = None


def deadline(seconds: float, loop: asyncio.AbstractEventLoop | None = None) -> Deadline:
    """A ``with`` block whose task is cancelled ``seconds`` after it is entered.

    On expiry the block raises `DeadlineExceeded` (a `TimeoutError`) with the
    cancellation as ``__cause__``; a cancellation from outside stays one. ``loop``
    (the running loop), when the caller has it, saves looking it up again. The
    attempts of one loop with the same ``seconds`` share a line and its timer; a
    loop runs in one thread, so they never race.

    Example::

        with deadline(0.5):
            await asyncio.sleep(1)   # raises DeadlineExceeded
    """
    global _recent
    if loop is None:
        loop = _get_running_loop()
    recent = _recent
    if recent is not None and recent[0]() is loop:
        lines = recent[1]
    else:
        found = _lines.get(loop)
        if found is None:
            with _lines_lock:
                found = _lines.setdefault(loop, {})
        lines = found
        _recent = (weakref.ref(loop), lines)
    line = lines.get(seconds)
    if line is None:
        if len(lines) >= _MOST_LINES:
            # Timeouts computed per call (a remaining budget) are each a new line:
            # the idle ones go, so the registry follows the attempts running. A
            # timer still armed for a dropped line finds it empty and does nothing.
            for idle in [key for key, kept in lines.items() if not kept.running]:
                del lines[idle]
        line = lines[seconds] = _Deadlines(seconds)
    return Deadline(line, loop)
