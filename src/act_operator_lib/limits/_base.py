"""The surface every limiter shares: ``async with``, use as a decorator, ``statistics()``.

In-process and Redis-backed limiters implement `acquire` / `release` (and
`statistics`); this base turns those into the context manager and decorator forms,
so node policies and the concurrency toolkit accept any limiter unchanged.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = ["Limiter"]

P = ParamSpec("P")
R = TypeVar("R")


class Limiter(ABC):
    """Base of every limiter: subclasses provide `acquire`, `release`, `statistics`.

    Example::

        async with limiter:          # acquire ... release
            await call_api()

        @limiter                      # the same, around every call
        async def call_api(): ...
    """

    __slots__ = ()

    @abstractmethod
    async def acquire(self) -> None:
        """Wait until the limiter grants the caller one unit."""

    @abstractmethod
    async def release(self) -> None:
        """Give back what `acquire` took (a no-op for rate limiters)."""

    @abstractmethod
    def statistics(self) -> LimiterStatistics:
        """A snapshot of the limiter's state."""

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.release()

    def __call__(self, function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        """Decorate an async function so every call runs inside ``async with self``."""

        @functools.wraps(function)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self:
                return await function(*args, **kwargs)

        return limited
