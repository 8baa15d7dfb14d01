"""The engine that runs one async function over many items, shared by every fan-out.

`concurrency.map_concurrent`, `concurrency.as_completed` and `durable.map_durable` are
fronts over one `Run`: ``limit`` worker tasks pull items lazily from the iterable,
each call has its own timeout, and every result goes to one sink: a list in input
order (`Run.collect`), a stream in completion order (`Run.stream`), or a list plus a
hook per new result, which is how `map_durable` records (``collect(on_result=...)``)::

    run = Run(fetch, urls, limit=20, timeout=10, rate_limiter=None,
              return_exceptions=False, progress=False, caller="map_concurrent")
    pages = await run.collect()

With ``retry=``, each item runs through the retry engine (`_retry.run_attempts`):
every attempt takes its own token from ``rate_limiter`` and has its own ``timeout``.

Whatever way a run ends (results, a failure, the caller cancelled, the consumer of a
stream leaving early), every task it started has finished when control returns. Each
item runs in its own copy of the context captured when the run was made, as a task
of ``asyncio.gather`` would, without a task per item. LangGraph's control flow
(`GraphBubbleUp`: ``interrupt()``, ``Command(graph=PARENT)``) and any error that is
not an `Exception` end the run whatever ``return_exceptions`` says; the latter cancels
the calls in flight at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import types
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from functools import partial
from typing import Any, Final, Literal

from langgraph.errors import GraphBubbleUp
from langgraph.types import RetryPolicy

from act_operator_lib import streaming
from act_operator_lib._deadline import DeadlineExceeded, deadline
from act_operator_lib._errors import FunctionNotAsyncError, ItemTimeoutError
from act_operator_lib._policies import resolve_retry
from act_operator_lib._retry import CallPolicy, run_attempts
from act_operator_lib._validation import positive_integer, seconds
from act_operator_lib.limits import SupportsAcquire

__all__ = ["LOGGER", "PROGRESS_INTERVAL", "Run", "cancel_and_wait", "check_timeout"]

LOGGER: Final = logging.getLogger("act_operator_lib.concurrency")
"""Where an item's retries are logged (WARNING), as a node's are on ``act_operator_lib.node``."""

PROGRESS_INTERVAL: Final = 0.1
"""Seconds (of loop time) between two progress reports of one run."""

ResultHook = Callable[[int, Any], Awaitable[object] | None]
"""Told each new result (index, value) of a list run; may return an awaitable the
worker waits for before it takes its next item (backpressure from a slow writer)."""

_END: Final = object()


class _Failure:
    """A failure on its way to the consumer of a stream (return_exceptions=False)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


@types.coroutine
def _in_context(
    context: contextvars.Context, awaitable: Awaitable[Any]
) -> Generator[Any, Any, Any]:
    """Await ``awaitable`` with each of its steps run in ``context``, as a task would.

    A task per item would give each item its own context too, at several times the
    cost of this trampoline, which itself is used only once an item left a change
    in its worker's context (see `Run._work`).
    """
    steps = awaitable if type(awaitable) is types.CoroutineType else awaitable.__await__()
    run = context.run
    send = steps.send
    step: Callable[[Any], Any] = send
    argument: Any = None
    while True:
        try:
            yielded = run(step, argument)
        except StopIteration as stop:
            return stop.value
        try:
            argument = yield yielded
            step = send
        except GeneratorExit:
            run(steps.close)
            raise
        except BaseException as error:
            step = steps.throw
            argument = error


class _Progress:
    """Throttled ``{"done", "total"}`` reports plus heartbeats for one run.

    With retries counted (``retries`` not None), reports carry ``"retries"`` too.
    """

    __slots__ = ("_last", "_loop", "_reported", "done", "retries", "total")

    def __init__(self, total: int | None, *, count_retries: bool) -> None:
        self.total = total
        self.done = 0
        self.retries: int | None = 0 if count_retries else None
        self._reported = -1
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self.report()

    def advance(self) -> None:
        self.done += 1
        now = self._loop.time()
        if now - self._last >= PROGRESS_INTERVAL:
            self._last = now
            self.report()

    def report(self) -> None:
        self._reported = self.done
        if self.retries is None:
            streaming.emit({"done": self.done, "total": self.total})
        else:
            streaming.emit({"done": self.done, "total": self.total, "retries": self.retries})
        streaming.heartbeat()

    def finish(self) -> None:
        """The final report, unless the last one already said as much."""
        if self._reported != self.done:
            self.report()


class _ItemAttempts:
    """Told about the attempts of one item: counts, logs and streams its retries."""

    __slots__ = ("_index", "_run")

    def __init__(self, run: Run, index: int) -> None:
        self._run = run
        self._index = index

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        pass

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        caller = self._run.caller
        described = f"{type(error).__name__}: {error}"
        LOGGER.warning(
            "[%s] item %d attempt %d failed (%s); retrying in %.3fs",
            caller,
            self._index,
            attempt,
            described,
            delay,
            extra={
                "caller": caller,
                "event": "retry",
                "item": self._index,
                "attempt": attempt,
                "error": described,
                "delay": delay,
            },
        )
        progress = self._run.progress
        if progress is not None and progress.retries is not None:
            progress.retries += 1
            streaming.emit(
                {
                    "retry": {
                        "index": self._index,
                        "attempt": attempt,
                        "error": described,
                        "delay": delay,
                    }
                }
            )

    def timed_out(self, attempt: int, timeout: float) -> None:
        caller = self._run.caller
        LOGGER.warning(
            "[%s] item %d attempt %d timed out after %gs",
            caller,
            self._index,
            attempt,
            timeout,
            extra={
                "caller": caller,
                "event": "timeout",
                "item": self._index,
                "attempt": attempt,
                "timeout": timeout,
            },
        )


class Run:
    """One call of a fan-out: ``fn`` over ``items`` by at most ``limit`` workers.

    Arguments are checked here, with messages naming ``caller`` (the public function).
    A run is used once, by `collect` or by `stream`.
    """

    __slots__ = (
        "_aiterator",
        "_context",
        "_iterator",
        "_lock",
        "_next_index",
        "_on_result",
        "_policy",
        "_progress_wanted",
        "_queue",
        "_recorded",
        "_results",
        "_stopped",
        "_workers",
        "alive",
        "caller",
        "error",
        "fn",
        "limit",
        "progress",
        "rate_limiter",
        "return_exceptions",
        "timeout",
        "total",
    )

    def __init__(
        self,
        fn: Callable[[Any], Awaitable[Any]],
        items: Iterable[Any] | AsyncIterable[Any],
        *,
        limit: int,
        timeout: float | None,
        rate_limiter: SupportsAcquire | None,
        return_exceptions: bool,
        progress: bool,
        caller: str,
        retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(
                f"{caller}(fn=...) must be an async function taking one item, "
                f"got {type(fn).__name__}"
            )
        positive_integer(caller, "limit", limit, hint="; it is how many calls run at once")
        check_timeout(timeout, required=False, caller=caller)
        if rate_limiter is not None and not callable(getattr(rate_limiter, "acquire", None)):
            raise TypeError(
                f"{caller}(rate_limiter=...) needs an `async acquire()` method, "
                f"got {type(rate_limiter).__name__}; pass e.g. a limits.RateLimiter"
            )
        retry_policies = resolve_retry(caller, retry)
        self._policy = (
            CallPolicy(timeout=timeout, retry=retry_policies, rate_limiter=rate_limiter)
            if retry_policies
            else None
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
        self._context = contextvars.copy_context()
        self.caller = caller
        self.fn = fn
        self.limit = limit
        self.timeout = timeout
        self.rate_limiter = rate_limiter
        self.return_exceptions = return_exceptions
        self.error: BaseException | None = None
        self.alive = 0
        self._progress_wanted = progress
        self.progress: _Progress | None = None
        self._results: list[Any] | None = None
        self._recorded: Mapping[int, Any] | None = None
        self._on_result: ResultHook | None = None
        self._queue: asyncio.Queue[Any] | None = None
        self._stopped = False
        self._next_index = 0
        self._lock: asyncio.Lock | None = None
        self._workers: list[asyncio.Task[None]] = []

    async def collect(
        self,
        *,
        recorded: Mapping[int, Any] | None = None,
        on_result: ResultHook | None = None,
    ) -> list[Any]:
        """Run to the end; return the results in input order (the list sink).

        ``recorded``: results known before the run, by index; those items are not
        called. ``on_result``: told each new result as it arrives.
        """
        results: list[Any] = []
        self._results = results
        self._recorded = recorded
        self._on_result = on_result
        workers = self._start()
        if workers:
            try:
                await asyncio.wait(workers)
            except asyncio.CancelledError:
                await cancel_and_wait(workers)
                raise
            _raise_unexpected(workers)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        self._finish()
        return results

    async def stream(self) -> AsyncGenerator[tuple[int, Any], None]:
        """Yield ``(index, result)`` as calls finish (the stream sink).

        At most ``limit`` finished results wait for the consumer. Closing the
        generator cancels the calls in flight and waits for them.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.limit)
        self._queue = queue
        workers = self._start()
        if not workers:
            self._finish()
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
            await cancel_and_wait(workers)
        _raise_unexpected(workers)

    def abort(self, error: BaseException) -> None:
        """Stop a list run: cancel the other workers; `collect` raises ``error``."""
        self._stopped = True
        if self.error is None:
            self.error = error
        self._cancel_others()

    def _cancel_others(self) -> None:
        current = asyncio.current_task()
        for worker in self._workers:
            if worker is not current:
                worker.cancel()

    def _start(self) -> list[asyncio.Task[None]]:
        """Create the workers (no more than there are items) in the caller's context."""
        if self._progress_wanted:
            self.progress = _Progress(self.total, count_retries=self._policy is not None)
        count = self.limit if self.total is None else min(self.limit, self.total)
        if self._aiterator is not None:
            self._lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        context = self._context
        self._workers = [
            loop.create_task(self._worker(), context=context.copy()) for _ in range(count)
        ]
        self.alive = count
        return self._workers

    def _finish(self) -> None:
        """Send the final progress report."""
        if self.progress is not None:
            self.progress.finish()

    async def _worker(self) -> None:
        await self._work()
        self.alive -= 1
        if self.alive == 0 and self._queue is not None:
            self._finish()
            await self._queue.put(_END)

    async def _work(self) -> None:
        fn = self.fn
        policy = self._policy
        # With a policy, the retry engine takes a token and sets a deadline per attempt.
        timeout = self.timeout if policy is None else None
        rate_limiter = self.rate_limiter if policy is None else None
        results = self._results
        iterator = self._iterator
        recorded = self._recorded
        on_result = self._on_result
        context = self._context
        # Items run in the worker's own context (a copy of the caller's) as long as
        # none of them changed it, which costs one comparison per item; once one did,
        # each later item of this worker runs in a fresh copy of the caller's.
        clean = True
        # Each worker checks its first call's result is awaitable, so a sync ``fn``
        # stops the run with an error naming the argument (even with
        # return_exceptions=True) instead of failing every item with Python's "can't
        # be used in 'await' expression".
        checked = False
        while not self._stopped:
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
                if clean:
                    call = fn(item)
                else:
                    item_context = context.copy()
                    call = item_context.run(fn, item)
                if not checked:
                    checked = True
                    if not inspect.isawaitable(call):
                        await self._stop_with(_not_async(fn, call, self.caller))
                        return
                if policy is not None:
                    call = self._attempts(policy, item, call, index)
                if not clean:
                    call = _in_context(item_context, call)
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
            except BaseException as error:
                # KeyboardInterrupt, SystemExit, pytest.fail(): nobody wants the rest.
                await self._stop_with(error, at_once=True)
                return
            del item
            if clean and contextvars.copy_context() != context:
                clean = False
            if results is not None:
                results[index] = value
                if on_result is not None:
                    try:
                        waiting = on_result(index, value)
                    except Exception as error:
                        self.abort(error)
                        return
                    if waiting is not None:
                        await waiting
            else:
                assert self._queue is not None
                await self._queue.put((index, value))
            if self.progress is not None:
                self.progress.advance()

    async def _attempts(
        self, policy: CallPolicy, item: Any, first: Awaitable[Any], index: int
    ) -> Any:
        """Run ``fn(item)`` under ``policy``; ``first`` is the first attempt's awaitable."""
        fn = self.fn
        made = [first]

        def attempt() -> Awaitable[Any]:
            return made.pop() if made else fn(item)

        try:
            return await run_attempts(
                policy,
                attempt,
                timeout_error=partial(ItemTimeoutError, index),
                observer=_ItemAttempts(self, index),
            )
        finally:
            # Cancelled while waiting for the first token: close the unawaited call.
            if made and inspect.iscoroutine(first):
                first.close()

    async def _pull(self) -> Any:
        """The next item of the async iterable, or _END (its failure is recorded)."""
        assert self._lock is not None
        assert self._aiterator is not None
        async with self._lock:
            if self._stopped:
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
        if self._results is not None:
            self._results.append(None)
        if await self._item_failed(index, error):
            if self._results is not None:
                self._results[index] = error
            else:
                assert self._queue is not None
                await self._queue.put((index, error))
            if self.progress is not None:
                self.progress.advance()
        self._stopped = True

    async def _item_failed(self, index: int, error: BaseException) -> bool:
        """Record a failed item; True when the run goes on (return_exceptions=True).

        LangGraph's control flow is never an item's result: it ends the run, so the
        graph pauses (``interrupt()``) or routes (``Command(graph=PARENT)``).
        """
        if self.return_exceptions and not isinstance(error, GraphBubbleUp):
            return True
        await self._stop_with(error)
        return False

    async def _stop_with(self, error: BaseException, *, at_once: bool = False) -> None:
        """End the run with ``error``, whatever ``return_exceptions`` says.

        ``at_once``: a stream cancels the calls in flight now, not when its consumer
        reaches the error (a list run always does).
        """
        self._stopped = True
        if self._queue is not None:
            if at_once:
                self._cancel_others()
            await self._queue.put(_Failure(error))
        else:
            self.abort(error)


def _not_async(fn: Callable[[Any], Any], result: object, caller: str) -> FunctionNotAsyncError:
    """The error for a sync ``fn``: a bad argument of the run, not a bad item."""
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return FunctionNotAsyncError(
        f"{caller}(fn=...) must return an awaitable, but {name}() returned "
        f"{type(result).__name__}: make it `async def`, or wrap a blocking function "
        f"as `lambda item: run_sync(function, item)` to run it in a thread"
    )


async def _within(call: Awaitable[Any], index: int, seconds: float) -> Any:
    # A deadline on the loop's shared timer for this timeout (`_deadline`), not an
    # `asyncio.timeout` with a timer handle of its own per item.
    try:
        with deadline(seconds):
            return await call
    except DeadlineExceeded as error:
        raise ItemTimeoutError(index, seconds) from error


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_and_wait(tasks: Collection[asyncio.Future[Any]]) -> None:
    """Cancel ``tasks`` and wait until all are done, even if cancelled meanwhile.

    Their exceptions are marked retrieved: they lost, and nobody will read them.
    A cancellation of the caller that arrives during the wait is re-raised after it::

        await cancel_and_wait(losers)
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


def check_timeout(timeout: float | None, *, required: bool, caller: str) -> None:
    """Refuse a timeout that is not a number of seconds above 0 (None allowed unless required).

    Example::

        check_timeout(timeout, required=False, caller="map_concurrent")
    """
    if timeout is None and not required:
        return
    seconds(caller, "timeout", timeout, hint="" if required else "; pass None for no timeout")
