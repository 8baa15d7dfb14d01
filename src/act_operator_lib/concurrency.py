"""Run many awaitables at once: bounded, in order, with timeouts, and no orphan task.

`map_concurrent` is the guide's ``Semaphore`` + ``gather`` pattern done right: a pool
of ``limit`` workers pulls items from the iterable as it goes, so a million items
never become a million coroutines, and results come back in input order::

    pages = await map_concurrent(fetch, urls, limit=20, timeout=10)

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
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sized,
)
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, overload

from act_operator_lib import streaming
from act_operator_lib._errors import FunctionNotAsyncError, ItemTimeoutError
from act_operator_lib.limits._protocols import SupportsAcquire

__all__ = [
    "AsCompleted",
    "GatherResult",
    "SupportsAcquire",
    "as_completed",
    "first_completed",
    "gather_within",
    "map_concurrent",
]

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")

PROGRESS_INTERVAL: Final = 0.1
"""Seconds (of loop time) between two progress reports of one run."""


@overload
async def map_concurrent(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
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
            call's ``timeout``), e.g. ``RateLimiter(10, per=1)``.
        return_exceptions: False: the first failure cancels every call in flight,
            waits for them, and is raised as is. True: a failed or timed-out item's
            exception takes its place in the list, and the other items go on.
        progress: Inside a LangGraph node, write ``{"done": n, "total": m}`` to the
            custom stream (``total`` is None when ``items`` has no ``len``) at the
            start, at most every 0.1 s, and at the end, and record a heartbeat for
            the node's idle timeout each time.

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
    run = _Run(
        fn, items, limit, timeout, rate_limiter, return_exceptions, progress, "map_concurrent"
    )
    return await _collect(run)


async def _collect(run: _Run) -> list[Any]:
    """Run ``run``'s workers to the end and return its results in input order.

    The one body of `map_concurrent`, shared with `act_operator_lib.durable`.
    """
    results: list[Any] = []
    run.results = results
    workers = run.start()
    if workers:
        try:
            await asyncio.wait(workers)
        except asyncio.CancelledError:
            await _cancel_and_wait(workers)
            raise
        _raise_unexpected(workers)
    if run.error is not None:
        error, run.error = run.error, None
        raise error
    run.finish()
    return results


@overload
def as_completed(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    limit: int,
    timeout: float | None = None,
    rate_limiter: SupportsAcquire | None = None,
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
    run = _Run(fn, items, limit, timeout, rate_limiter, return_exceptions, progress, "as_completed")
    return AsCompleted(run)


class AsCompleted(Generic[R]):
    """The async iterator of `as_completed`: ``(index, result)`` pairs as calls finish.

    Also an async context manager; leaving it (or ``aclose()``) cancels the calls in
    flight and waits for them.
    """

    __slots__ = ("_generator",)

    def __init__(self, run: _Run) -> None:
        self._generator: AsyncGenerator[tuple[int, R], None] = _iterate(run)

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
        await _cancel_and_wait(futures)
        raise
    await _cancel_and_wait(futures)
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
    _check_timeout(timeout, required=True)
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
            await _cancel_and_wait(futures)
            raise
    unfinished = tuple(key for key, future in zip(keys, futures, strict=True) if not future.done())
    await _cancel_and_wait([future for future in futures if not future.done()])
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


_END: Final = object()


class _Failure:
    """A failure on its way to the `as_completed` consumer (return_exceptions=False)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Progress:
    """Throttled ``{"done", "total"}`` reports plus heartbeats for one run."""

    __slots__ = ("_last", "_loop", "done", "total")

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.done = 0
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._report()

    def advance(self) -> None:
        self.done += 1
        now = self._loop.time()
        if now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self._report()

    def _report(self) -> None:
        streaming.emit({"done": self.done, "total": self.total})
        streaming.heartbeat()


class _Run:
    """The state the workers of one `map_concurrent` / `as_completed` call share."""

    __slots__ = (
        "_aiterator",
        "_iterator",
        "_lock",
        "_next_index",
        "_progress_wanted",
        "_workers",
        "alive",
        "caller",
        "error",
        "fn",
        "limit",
        "on_finished",
        "progress",
        "queue",
        "rate_limiter",
        "recorded",
        "results",
        "return_exceptions",
        "stopped",
        "timeout",
        "total",
    )

    def __init__(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        items: Iterable[Any] | AsyncIterable[Any],
        limit: int,
        timeout: float | None,
        rate_limiter: SupportsAcquire | None,
        return_exceptions: bool,
        progress: bool,
        caller: str,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"{caller}(fn=...) must be an async function taking one item, "
                f"got {type(fn).__name__}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"{caller}(limit=...) must be an int, got {type(limit).__name__}")
        if limit < 1:
            raise ValueError(
                f"{caller}(limit=...) must be at least 1, got {limit}; "
                "it is how many calls run at once"
            )
        _check_timeout(timeout, required=False, caller=caller)
        if rate_limiter is not None and not callable(getattr(rate_limiter, "acquire", None)):
            raise TypeError(
                f"{caller}(rate_limiter=...) needs an `async acquire()` method, "
                f"got {type(rate_limiter).__name__}; pass e.g. a limits.RateLimiter"
            )
        self._iterator: Iterator[Any] | None = None
        self._aiterator: AsyncIterator[Any] | None = None
        if isinstance(items, AsyncIterable):
            self._aiterator = aiter(items)
        elif isinstance(items, Iterable):
            self._iterator = iter(items)
        else:
            raise TypeError(
                f"{caller}(items=...) must be an iterable or async iterable, "
                f"got {type(items).__name__}"
            )
        self.total = len(items) if isinstance(items, Sized) else None
        self.caller = caller
        self.fn = fn
        self.limit = limit
        self.timeout = timeout
        self.rate_limiter = rate_limiter
        self.return_exceptions = return_exceptions
        self._progress_wanted = progress
        self.progress: _Progress | None = None
        self.results: list[Any] | None = None
        self.queue: asyncio.Queue[Any] | None = None
        self.error: BaseException | None = None
        self.stopped = False
        self._next_index = 0
        self._lock: asyncio.Lock | None = None
        self._workers: list[asyncio.Task[None]] = []
        self.alive = 0
        # Hooks of map_durable (map mode only): results known before the run, by
        # index, are used without calling fn; on_finished sees each new result and
        # may return an awaitable the worker waits for before its next item.
        self.recorded: Mapping[int, Any] | None = None
        self.on_finished: Callable[[int, Any], Awaitable[object] | None] | None = None

    def start(self) -> list[asyncio.Task[None]]:
        """Create the workers (no more than there are items) in the caller's context."""
        if self._progress_wanted:
            self.progress = _Progress(self.total)
        count = self.limit if self.total is None else min(self.limit, self.total)
        if self._aiterator is not None:
            self._lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._worker()) for _ in range(count)]
        self.alive = count
        return self._workers

    def finish(self) -> None:
        """Send the final progress report."""
        if self.progress is not None:
            self.progress._report()

    async def _worker(self) -> None:
        await self._work()
        self.alive -= 1
        if self.alive == 0 and self.queue is not None:
            self.finish()
            await self.queue.put(_END)

    async def _work(self) -> None:
        fn = self.fn
        timeout = self.timeout
        rate_limiter = self.rate_limiter
        results = self.results
        iterator = self._iterator
        recorded = self.recorded
        on_finished = self.on_finished
        # Each worker checks its first call's result is awaitable, so a sync ``fn``
        # stops the run with an error naming the argument (even with
        # return_exceptions=True) instead of failing every item with Python's "can't
        # be used in 'await' expression".
        checked = False
        while not self.stopped:
            if iterator is not None:
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                except Exception as error:
                    await self._source_failed(error)
                    return
            else:
                pulled = await self._pull()
                if pulled is _END:
                    return
                item = pulled
            index = self._next_index
            self._next_index = index + 1
            if results is not None:
                results.append(None)
                if recorded is not None and index in recorded:
                    results[index] = recorded[index]
                    if self.progress is not None:
                        self.progress.advance()
                    continue
            try:
                if rate_limiter is not None:
                    await rate_limiter.acquire()
                call = fn(item)
                if not checked:
                    checked = True
                    if not inspect.isawaitable(call):
                        await self._stop_with(_not_async(fn, call, self.caller))
                        return
                if timeout is None:
                    value = await call
                else:
                    value = await _within(call, index, timeout)
            except Exception as error:
                if not await self._item_failed(index, error):
                    return
                value = error
            except asyncio.CancelledError as error:
                if _cancel_requested():
                    raise
                # fn raised CancelledError without our worker being cancelled (it
                # awaited something someone else cancelled): that item failed.
                if not await self._item_failed(index, error):
                    return
                value = error
            del item
            if results is not None:
                results[index] = value
                if on_finished is not None:
                    try:
                        waiting = on_finished(index, value)
                    except Exception as error:
                        self.abort(error)
                        return
                    if waiting is not None:
                        await waiting
            else:
                assert self.queue is not None
                await self.queue.put((index, value))
            if self.progress is not None:
                self.progress.advance()

    async def _pull(self) -> Any:
        """The next item of the async iterable, or _END (its failure is recorded)."""
        assert self._lock is not None
        assert self._aiterator is not None
        async with self._lock:
            if self.stopped:
                return _END
            try:
                return await anext(self._aiterator)
            except StopAsyncIteration:
                return _END
            except Exception as error:
                await self._source_failed(error)
                return _END

    async def _source_failed(self, error: Exception) -> None:
        """The iterable raised: that is the failure of the item it was producing."""
        index = self._next_index
        self._next_index = index + 1
        if self.results is not None:
            self.results.append(None)
        if await self._item_failed(index, error):
            if self.results is not None:
                self.results[index] = error
            else:
                assert self.queue is not None
                await self.queue.put((index, error))
            if self.progress is not None:
                self.progress.advance()
        self.stopped = True

    async def _item_failed(self, index: int, error: BaseException) -> bool:
        """Record a failed item; True when the run goes on (return_exceptions=True)."""
        if self.return_exceptions:
            return True
        await self._stop_with(error)
        return False

    async def _stop_with(self, error: BaseException) -> None:
        """End the run with ``error``, whatever ``return_exceptions`` says."""
        self.stopped = True
        if self.queue is not None:
            await self.queue.put(_Failure(error))
        else:
            self.abort(error)

    def abort(self, error: BaseException) -> None:
        """Stop the run (map mode): cancel the other workers; `_collect` raises ``error``."""
        self.stopped = True
        if self.error is None:
            self.error = error
        current = asyncio.current_task()
        for worker in self._workers:
            if worker is not current:
                worker.cancel()


async def _iterate(run: _Run) -> AsyncGenerator[tuple[int, Any], None]:
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=run.limit)
    run.queue = queue
    workers = run.start()
    if not workers:
        run.finish()
        return
    try:
        while True:
            entry = await queue.get()
            if entry is _END:
                break
            if type(entry) is _Failure:
                raise entry.error
            yield entry
    finally:
        await _cancel_and_wait(workers)
    _raise_unexpected(workers)


def _not_async(fn: Callable[[Any], Any], result: object, caller: str) -> FunctionNotAsyncError:
    """The error for a sync ``fn``: a bad argument of the run, not a bad item."""
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return FunctionNotAsyncError(
        f"{caller}(fn=...) must return an awaitable, but {name}() returned "
        f"{type(result).__name__}: make it `async def`, or wrap a blocking function "
        f"as `lambda item: run_sync(function, item)` to run it in a thread"
    )


async def _within(call: Awaitable[Any], index: int, seconds: float) -> Any:
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await call
    except TimeoutError as error:
        if scope.expired():
            raise ItemTimeoutError(index, seconds) from error
        raise


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _cancel_and_wait(tasks: Collection[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until all are done, even if cancelled meanwhile.

    Their exceptions are marked retrieved: they lost, and nobody will read them.
    A cancellation of the caller that arrives during the wait is re-raised after it.
    """
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    interrupted = False
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError:
            interrupted = True
            pending = {task for task in pending if not task.done()}
    for task in tasks:
        if not task.cancelled():
            task.exception()
    if interrupted:
        raise asyncio.CancelledError


def _raise_unexpected(workers: Iterable[asyncio.Task[None]]) -> None:
    """Re-raise an exception a worker itself raised (a bug, never an item's failure)."""
    for worker in workers:
        if not worker.cancelled() and (error := worker.exception()) is not None:
            raise error


def _check_timeout(timeout: float | None, *, required: bool, caller: str = "gather_within") -> None:
    if timeout is None and not required:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"{caller}(timeout=...) must be a number of seconds, got {type(timeout).__name__}"
        )
    if not timeout > 0:
        raise ValueError(
            f"{caller}(timeout=...) must be more than 0 seconds, got {timeout!r}"
            + ("" if required else "; pass None for no timeout")
        )


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
