"""What a limiter must offer to be used by node policies, the fan-out functions and requests.

Structural protocols, so any limiter with the right methods works (ours, the Redis
twins, ``aiolimiter.AsyncLimiter``, ``asyncio.Semaphore`` for slots), not only
subclasses of a base class of ours.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Limiter", "SupportsAcquire", "SupportsPause", "SupportsRelease"]


@runtime_checkable
class SupportsAcquire(Protocol):
    """A rate limiter: ``await limiter.acquire()`` waits for a token.

    Example::

        async def call(limiter: SupportsAcquire) -> None:
            await limiter.acquire()
            await send_request()
    """

    def acquire(self) -> Awaitable[Any]: ...


@runtime_checkable
class SupportsRelease(SupportsAcquire, Protocol):
    """A concurrency limiter: ``acquire()`` takes a slot, ``release()`` gives it back.

    ``release()`` may return an awaitable (ours do) or nothing (``asyncio.Semaphore``);
    callers await it when it is awaitable.

    Example::

        await limiter.acquire()
        try:
            await send_request()
        finally:
            await limiter.release()
    """

    def release(self) -> Any: ...


@runtime_checkable
class SupportsPause(Protocol):
    """A limiter that can stop granting for a while (a server's Retry-After, shared).

    Example::

        await limiter.pause(2.0)   # nobody sharing the limiter is granted for 2 s
    """

    def pause(self, seconds: float) -> Awaitable[None]: ...


@runtime_checkable
class Limiter(SupportsRelease, Protocol):
    """Any limiter of this library: ``acquire``/``release``, ``async with``, ``statistics()``.

    Every limiter in `act_operator_lib.limits` (in-process and Redis) meets it, so
    ``isinstance(x, Limiter)`` tells them apart from other objects; what a call site
    needs is usually narrower (`SupportsAcquire` for a rate, `SupportsRelease` for
    slots), which aiolimiter's ``AsyncLimiter`` or ``asyncio.Semaphore`` also meet.

    Example::

        def describe(limiter: Limiter) -> str:
            return f"{limiter!r}: {limiter.statistics()}"
    """

    def statistics(self) -> Any: ...

    def __aenter__(self) -> Awaitable[Any]: ...

    def __aexit__(self, *exc_info: Any) -> Awaitable[Any]: ...
