"""The surface every limiter of ours shares: ``async with`` and use as a decorator.

In-process and Redis-backed limiters implement `acquire` / `release` (and
`statistics`); this private base turns those into the context manager and decorator
forms. Callers never need it: they check the public protocols in `_protocols`.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

__all__ = ["Limiter", "_LimiterBase"]

P = ParamSpec("P")
R = TypeVar("R")


class _LimiterBase(ABC):
    """Base of our limiters: subclasses provide `acquire`, `release`, `statistics`.

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
    def statistics(self) -> Any:
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


Limiter = _LimiterBase
"""The old name of the base, kept while modules that subclass or check it move to
`_LimiterBase` and the public `act_operator_lib.limits.Limiter` protocol."""
