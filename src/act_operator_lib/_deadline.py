"""One attempt under a deadline: what ``asyncio.timeout`` does, for a fraction of its cost.

``async with asyncio.timeout(s)`` costs several microseconds per use on Python 3.11
(a `Timeout` object, coroutine frames for ``__aenter__`` and ``__aexit__``, three
running-loop lookups, each a ``getpid`` call), which the retry engine pays on every
attempt. `within` runs the same algorithm with public asyncio APIs only: a
``loop.call_at`` timer that cancels the task, then ``Task.uncancel()`` to tell that
cancellation from anyone else's, exactly as ``asyncio.timeouts.Timeout`` does::

    try:
        result = await within(10.0, fetch)
    except DeadlineExceeded:
        ...  # fetch ran past 10 s and was cancelled
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["DeadlineExceeded", "within"]

T = TypeVar("T")

_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task


class DeadlineExceeded(TimeoutError):
    """The attempt ran past its deadline and was cancelled (``asyncio.timeout``'s error)."""


class _Expiry:
    """The timer's callback: cancels the task, and remembers that it did."""

    __slots__ = ("fired", "task")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False

    def __call__(self) -> None:
        self.fired = True
        self.task.cancel()


async def within(
    seconds: float,
    attempt: Callable[[], Awaitable[T]],
    loop: asyncio.AbstractEventLoop | None = None,
) -> T:
    """``await attempt()``, cancelled after ``seconds``; then `DeadlineExceeded` is raised.

    A cancellation from outside stays a `asyncio.CancelledError`, even when it
    arrives together with the deadline (the task's cancel count tells them apart).
    ``loop``, when the caller has it, saves looking up the running loop again.

    Example::

        await within(0.5, lambda: asyncio.sleep(1))   # raises DeadlineExceeded
    """
    if loop is None:
        loop = _get_running_loop()
    task = _current_task(loop)
    if task is None:
        raise RuntimeError("within() must be awaited inside a task")
    cancelling = task.cancelling()
    expiry = _Expiry(task)
    handle = loop.call_at(loop.time() + seconds, expiry)
    try:
        result = await attempt()
    except BaseException as error:
        handle.cancel()
        if (
            expiry.fired
            and task.uncancel() <= cancelling
            and isinstance(error, asyncio.CancelledError)
        ):
            raise DeadlineExceeded from error
        raise
    handle.cancel()
    if expiry.fired:
        task.uncancel()
    return result
