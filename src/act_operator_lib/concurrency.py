"""Run many awaitables at once: bounded, in order, with timeouts, and no orphan task.

`map_concurrent` is the guide's ``Semaphore`` + ``gather`` pattern done right: a pool
of ``limit`` workers pulls items from the iterable as it goes, so a million items
never become a million coroutines, and results come back in input order::

    pages = await map_concurrent(fetch, urls, limit=20, timeout=10)

Each item can be retried on its own under a LangGraph ``RetryPolicy``, taking a rate
token and a fresh timeout per attempt::

    pages = await map_concurrent(
        fetch, urls, limit=20, timeout=10, rate_limiter=limiter, retry=RetryPolicy()
    )

`as_completed` yields ``(index, result)`` as each call finishes; `first_completed`
returns the first success and cancels the rest; `gather_within` collects what
finishes before a deadline and cancels what doesn't.

Every function keeps one promise, in the style of trio's nurseries: when it returns
or raises (including because the caller was cancelled), every task it started has
finished. Nothing is left pending, and no exception goes unretrieved.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

from langgraph.types import RetryPolicy

from act_operator_lib._engine import Run, cancel_and_wait, check_timeout
from act_operator_lib.limits import SupportsAcquire

__all__ = [
    "AsCompleted",
    "GatherResult",
    "as_completed",
    "first_completed",
    "gather_within",
    "map_concurrent",
]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")


@overload
async def map_concurrent(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: Literal[False] = False,
    progress: bool = False,
) -> list[R]: ...


@overload
async def map_concurrent(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: bool,
    progress: bool = False,
) -> list[R | Exception]: ...


async def map_concurrent(
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: bool = False,
    progress: bool = False,
) -> list[Any]:
    """Await ``fn(item)`` for every item, at most ``limit`` at a time; results in input order.

    Example::

        summaries = await map_concurrent(summarise, documents, limit=10, timeout=30)

    Args:
        fn: An async function taking one item.
        items: Any iterable or async iterable. It is consumed lazily: at most
            ``limit`` items are taken ahead of their results, so a generator of
            millions of items costs memory for the results only.
        limit: How many calls run at once (at least 1).
        timeout: Seconds each call may take; a call that takes longer is cancelled
            and fails with `ItemTimeoutError` (naming its index). None: no limit.
        rate_limiter: Awaited with ``acquire()`` before each call (outside the
            call's ``timeout``), e.g. ``RateLimiter(10, per=1)``; with ``retry``,
            before each attempt.
        retry: A LangGraph ``RetryPolicy`` (or a list, the first whose ``retry_on``
            matches applies) for each item: a failed attempt is retried after
            LangGraph's backoff, or after the Retry-After the error carries
            (`retry_after`); each attempt takes its own token and has its own
            ``timeout``, and waiting for either is not counted in it. A limiter that
            can ``pause`` pauses for everyone sharing it on a Retry-After. Retries are
            logged at WARNING on ``act_operator_lib.concurrency`` and, with
            ``progress``, streamed. Only the last attempt's failure counts.
        return_exceptions: False: the first failure cancels every call in flight,
            waits for them, and is raised as is. True: a failed or timed-out item's
            exception takes its place in the list, and the other items go on.
        progress: Inside a LangGraph node, write ``{"done": n, "total": m}`` to the
            custom stream (``total`` is None when ``items`` has no ``len``) at the
            start, at most every 0.1 s, and at the end, and record a heartbeat for
            the node's idle timeout each time. With ``retry``, the reports also
            carry ``"retries"`` (so far), and each retry is written as
            ``{"retry": {"index", "attempt", "error", "delay"}}``.

    An exception raised by the iterable itself counts as the failure of the item it
    was producing; no further items are taken. Cancelling the caller cancels every
    call in flight and waits for them before the `CancelledError` propagates.

    Raises:
        ValueError: ``limit`` < 1 or ``timeout`` <= 0.
        TypeError: ``fn`` is not callable, ``items`` is not iterable, or
            ``rate_limiter`` has no ``acquire``.
        FunctionNotAsyncError: ``fn`` returned something not awaitable (a sync
            function); this ends the run even with ``return_exceptions=True``.
    """
    run = Run(
        fn,
        items,
        limit=limit,
        timeout=timeout,
        rate_limiter=rate_limiter,
        retry=retry,
        return_exceptions=return_exceptions,
        progress=progress,
        caller="map_concurrent",
    )
    return await run.collect()


@overload
def as_completed(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
    timeout: float | None = None,
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: Literal[False] = False,
    progress: bool = False,
) -> AsCompleted[R]: ...


@overload
def as_completed(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
    timeout: float | None = None,
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: bool,
    progress: bool = False,
) -> AsCompleted[R | Exception]: ...


def as_completed(
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    limit: int,
    timeout: float | None = None,
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: bool = False,
    progress: bool = False,
) -> AsCompleted[Any]:
    """Like `map_concurrent`, but yield ``(index, result)`` as each call finishes.

    Use it as an async context manager, so that leaving the loop early (``break``,
    an exception) cancels and awaits the calls still in flight right there::

        async with as_completed(fetch, urls, limit=20) as results:
            async for index, page in results:
                if is_what_we_want(page):
                    break

    Plain ``async for`` works too, but a loop left early then relies on garbage
    collection to stop the work; call ``aclose()`` (or use the ``async with``).

    Arguments are those of `map_concurrent`. With ``return_exceptions=False`` the
    first failure is raised from the loop when it is reached (results finished
    before it are yielded first) and the calls still in flight are cancelled. With
    True, a failed item is yielded as ``(index, exception)``. Nothing starts until
    the first iteration; at most ``limit`` finished results wait for the consumer,
    so a slow loop body holds the workers back instead of buffering everything.
    """
    run = Run(
        fn,
        items,
        limit=limit,
        timeout=timeout,
        rate_limiter=rate_limiter,
        retry=retry,
        return_exceptions=return_exceptions,
        progress=progress,
        caller="as_completed",
    )
    return AsCompleted(run)


class AsCompleted(Generic[R]):
    """The async iterator of `as_completed`: ``(index, result)`` pairs as calls finish.

    Also an async context manager; leaving it (or ``aclose()``) cancels the calls in
    flight and waits for them.
    """

    __slots__ = ("_generator",)

    def __init__(self, run: Run) -> None:
        self._generator: AsyncGenerator[tuple[int, R], None] = run.stream()

    def __aiter__(self) -> AsCompleted[R]:
        return self

    def __anext__(self) -> Awaitable[tuple[int, R]]:
        return self._generator.__anext__()

    async def aclose(self) -> None:
        """Stop: cancel the calls in flight and wait until they have finished."""
        await self._generator.aclose()

    async def __aenter__(self) -> AsCompleted[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsCompleted {self._generator!r}>"


async def first_completed(*awaitables: Awaitable[T]) -> T:
    """Return the result of the first awaitable to succeed; cancel and await the others.

    Example (race two mirrors)::

        page = await first_completed(fetch(primary), fetch(mirror))

    Coroutines are wrapped in tasks; futures and tasks are used as they are, and
    are cancelled too when they lose. A failure does not end the race: the next
    success still wins. If every awaitable fails, an `ExceptionGroup` of their
    errors (in argument order) is raised. If several succeed in the same loop
    iteration, the first in argument order wins.

    Raises:
        ValueError: no awaitable was given.
        TypeError: an argument is not awaitable (the coroutines among the arguments
            are closed, so none is left "never awaited").
    """
    if not awaitables:
        raise ValueError("first_completed() needs at least one awaitable")
    _check_awaitables(awaitables, "first_completed")
    futures = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    pending: set[asyncio.Future[T]] = set(futures)
    winner: asyncio.Future[T] | None = None
    try:
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in futures:
                if future in done and not future.cancelled() and future.exception() is None:
                    winner = future
                    break
    except asyncio.CancelledError:
        await cancel_and_wait(futures)
        raise
    await cancel_and_wait(futures)
    if winner is not None:
        return winner.result()
    errors = [
        asyncio.CancelledError() if future.cancelled() else future.exception() for future in futures
    ]
    raise BaseExceptionGroup(
        f"all {len(futures)} awaitables given to first_completed() failed",
        [error for error in errors if error is not None],
    )


@dataclass(frozen=True, slots=True)
class GatherResult(Generic[K, T]):
    """What `gather_within` collected before its deadline.

    Keys are positions (``gather_within(a, b, ...)``) or the mapping's keys
    (``gather_within({"user": ..., "posts": ...})``), in input order.
    """

    results: dict[K, T]
    """The values of the awaitables that finished in time and succeeded."""
    errors: dict[K, BaseException]
    """The exceptions of the awaitables that finished in time by failing."""
    unfinished: tuple[K, ...]
    """The awaitables still running at the deadline; they were cancelled and awaited."""

    @property
    def complete(self) -> bool:
        """True when everything finished in time and nothing failed."""
        return not self.errors and not self.unfinished


@overload
async def gather_within(
    awaitables: Mapping[K, Awaitable[T]],
    /,
    *,
    timeout: float,  # noqa: ASYNC109 - the deadline is the point
) -> GatherResult[K, T]: ...


@overload
async def gather_within(
    *awaitables: Awaitable[T],
    timeout: float,  # noqa: ASYNC109 - the deadline is the point
) -> GatherResult[int, T]: ...


async def gather_within(
    *awaitables: Any,
    timeout: float,  # noqa: ASYNC109 - the deadline is the point
) -> GatherResult[Any, Any]:
    """Run awaitables concurrently for at most ``timeout`` seconds; keep what finished.

    Example::

        outcome = await gather_within(
            {"user": fetch_user(uid), "posts": fetch_posts(uid)}, timeout=2
        )
        outcome.results      # {"user": {...}}            succeeded in time
        outcome.errors       # {}                          failed in time
        outcome.unfinished   # ("posts",)                  cancelled at the deadline

    Returns as soon as everything has finished, or at the deadline after cancelling
    and awaiting what is still running. Failures never raise: they are in
    ``errors``. Cancelling the caller cancels and awaits every awaitable.

    Raises:
        ValueError: ``timeout`` <= 0.
        TypeError: an argument is not awaitable (coroutines among the arguments are
            closed first).
    """
    check_timeout(timeout, required=True, caller="gather_within")
    keys: list[Any]
    values: list[Any]
    if len(awaitables) == 1 and isinstance(awaitables[0], Mapping):
        keys = list(awaitables[0].keys())
        values = list(awaitables[0].values())
    else:
        keys = list(range(len(awaitables)))
        values = list(awaitables)
    _check_awaitables(values, "gather_within")
    futures = [asyncio.ensure_future(value) for value in values]
    if futures:
        try:
            await asyncio.wait(futures, timeout=timeout)
        except asyncio.CancelledError:
            await cancel_and_wait(futures)
            raise
    unfinished = tuple(key for key, future in zip(keys, futures, strict=True) if not future.done())
    await cancel_and_wait([future for future in futures if not future.done()])
    results: dict[Any, Any] = {}
    errors: dict[Any, BaseException] = {}
    late = set(unfinished)
    for key, future in zip(keys, futures, strict=True):
        if key in late:
            continue
        if future.cancelled():
            errors[key] = asyncio.CancelledError()
        elif (error := future.exception()) is not None:
            errors[key] = error
        else:
            results[key] = future.result()
    return GatherResult(results, errors, unfinished)


def _check_awaitables(values: Iterable[Any], caller: str) -> None:
    values = list(values)
    for position, value in enumerate(values):
        if not inspect.isawaitable(value):
            for other in values:
                if inspect.iscoroutine(other):
                    other.close()
            raise TypeError(
                f"{caller}() takes awaitables (coroutines, tasks, futures); argument "
                f"{position} is {type(value).__name__}. Pass `fetch()`, not `fetch`."
            )
