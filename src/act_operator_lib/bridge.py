"""Crossing between sync and async code: `run_sync` and `run_async`.

``await run_sync(fn, *args)`` runs blocking code in a bounded, library-owned thread
pool; ``run_async(coroutine)`` runs a coroutine to completion from synchronous code,
even where an event loop is already running in the calling thread. Both carry the
caller's contextvars across, so LangGraph's config, ``get_stream_writer()`` and
``emit`` work on the other side::

    class Mixed(AsyncBaseNode):
        async def execute(self, state):
            text = await run_sync(legacy_parse, state["raw"])   # blocking library
            return {"text": text}

    class Legacy(BaseNode):
        def execute(self, state):
            return {"data": run_async(fetch_json(state["url"]))}
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import functools
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from act_operator_lib._validation import positive_integer

__all__ = ["ThreadPoolStatistics", "run_async", "run_sync", "set_thread_limit", "thread_statistics"]

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_THREAD_LIMIT = 16
"""Threads `run_sync` uses at most unless `set_thread_limit` says otherwise."""


@dataclasses.dataclass(frozen=True, slots=True)
class ThreadPoolStatistics:
    """A snapshot of `run_sync`'s thread pool, from `thread_statistics`."""

    limit: int
    """Most functions running at once."""
    in_flight: int
    """Functions submitted and not finished yet (running or waiting for a thread)."""


class _ThreadPool:
    __slots__ = ("executor", "in_flight", "limit", "lock")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.in_flight = 0
        self.executor: concurrent.futures.ThreadPoolExecutor | None = None

    def get(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self.executor
        if executor is None:
            with self.lock:
                if self.executor is None:
                    self.executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self.limit, thread_name_prefix="act-operator-run-sync"
                    )
                executor = self.executor
        return executor


_POOL = _ThreadPool(DEFAULT_THREAD_LIMIT)


def set_thread_limit(limit: int) -> None:
    """Set how many threads `run_sync` uses at most (default 16).

    Functions already running finish on the old pool; new calls use the new one.

    Example::

        set_thread_limit(4)   # e.g. a library that allows 4 connections
    """
    positive_integer(
        "set_thread_limit", "limit", limit, hint="; it is how many threads run at once (int >= 1)"
    )
    with _POOL.lock:
        old, _POOL.executor, _POOL.limit = _POOL.executor, None, limit
    if old is not None:
        old.shutdown(wait=False)


def thread_statistics() -> ThreadPoolStatistics:
    """The limit and current load of `run_sync`'s thread pool."""
    return ThreadPoolStatistics(limit=_POOL.limit, in_flight=_POOL.in_flight)


async def run_sync(function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking ``function(*args, **kwargs)`` in a worker thread and await its result.

    At most `set_thread_limit` functions run at once (others wait for a thread), and
    the function sees the caller's contextvars, so LangGraph's
    ``get_stream_writer()``, ``get_config()`` and `emit` work inside it::

        rows = await run_sync(legacy_client.query, "SELECT 1")

    Cancelling the await stops waiting; a function already running in its thread
    cannot be interrupted and finishes there, its result discarded.
    """
    if not callable(function):
        raise TypeError(
            f"run_sync() needs a function to call in a thread, got {type(function).__name__}; "
            "pass the function and its arguments separately: run_sync(query, 'SELECT 1')"
        )
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    call = functools.partial(context.run, function, *args, **kwargs)
    with _POOL.lock:
        _POOL.in_flight += 1
    try:
        return await loop.run_in_executor(_POOL.get(), call)
    finally:
        with _POOL.lock:
            _POOL.in_flight -= 1


class _Portal:
    """An event loop on a daemon thread that `run_async` submits coroutines to."""

    __slots__ = ("loop", "thread")

    def __init__(self) -> None:
        ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(
            target=self._main, args=(ready,), name="act-operator-run-async", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _main(self, ready: threading.Event) -> None:
        # asyncio.Runner cancels what is left and runs loop.shutdown_asyncgens() on exit,
        # which closes the pooled resources opened on this loop.
        with asyncio.Runner() as runner:
            runner.run(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self.loop = asyncio.get_running_loop()
        forever = self.loop.create_future()
        ready.set()
        await forever


_PORTAL: _Portal | None = None
_PORTAL_LOCK = threading.Lock()


def _portal_loop() -> asyncio.AbstractEventLoop:
    global _PORTAL
    with _PORTAL_LOCK:
        if _PORTAL is None or not _PORTAL.thread.is_alive():
            _PORTAL = _Portal()
        loop = _PORTAL.loop
    assert loop is not None
    return loop


def run_async(coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
    """Run ``coroutine`` to completion from synchronous code and return its result.

    Works whether or not an event loop is running in the calling thread (a sync
    node, a sync callback inside async code, a notebook): the coroutine runs on the
    library's event-loop thread, with the caller's contextvars, while this thread
    waits. Its exception is raised here. Pooled resources it uses live on that loop
    and are reused by later calls::

        data = run_async(fetch_json(url), timeout=30)

    Args:
        coroutine: The coroutine to run.
        timeout: Seconds to wait; then the coroutine is cancelled, its cleanup runs
            to the end, and `TimeoutError` is raised. ``None``: no limit.

    If the waiting thread is interrupted (``KeyboardInterrupt``), the coroutine is
    cancelled and finishes its cleanup before the interrupt propagates. Don't call
    it from async code you own: ``await`` the coroutine there instead (this blocks
    the calling loop until the result is ready).
    """
    if not asyncio.iscoroutine(coroutine):
        if callable(coroutine):
            fix = "call the async function: run_async(fetch(url)), not run_async(fetch)"
        else:
            fix = (
                "futures and tasks belong to the loop that made them; pass a coroutine "
                "that awaits them instead, e.g. run_async(fetch_all(urls)) where "
                "fetch_all does `return await asyncio.gather(...)`"
            )
        raise TypeError(f"run_async() needs a coroutine, got {type(coroutine).__name__}; {fix}.")
    if timeout is not None and not timeout > 0:
        coroutine.close()
        raise ValueError(f"run_async(timeout=...) must be > 0 or None, got {timeout!r}.")
    loop = _portal_loop()
    if threading.current_thread() is _loop_thread():
        return _run_in_new_thread(coroutine, timeout)
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()
    finished = threading.Event()
    tasks: list[asyncio.Task[T]] = []

    def start() -> None:
        # Runs on the portal loop inside a copy of the caller's context (call_soon_threadsafe
        # copies it in the calling thread), so the task inherits the caller's contextvars.
        task = loop.create_task(coroutine)
        tasks.append(task)
        task.add_done_callback(report)

    def report(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            outcome.set_exception(asyncio.CancelledError())
        elif (error := task.exception()) is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(task.result())
        finished.set()

    loop.call_soon_threadsafe(start)
    try:
        return outcome.result(timeout)
    except BaseException as error:
        if outcome.done():
            return outcome.result()
        # Timed out or interrupted while waiting: cancel, and let the cleanup finish.
        loop.call_soon_threadsafe(_cancel, tasks)
        finished.wait()
        if isinstance(error, TimeoutError):
            raise TimeoutError(
                f"run_async: the coroutine did not finish within {timeout:g}s and was "
                "cancelled; raise `timeout` or make it faster"
            ) from None
        raise


def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()


def _loop_thread() -> threading.Thread | None:
    portal = _PORTAL
    return None if portal is None else portal.thread


def _run_in_new_thread(coroutine: Coroutine[Any, Any, T], timeout: float | None) -> T:
    """Run on a fresh loop in a fresh thread: the portal loop is the caller, and busy."""
    context = contextvars.copy_context()
    outcome: concurrent.futures.Future[T] = concurrent.futures.Future()

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    def main() -> None:
        try:
            outcome.set_result(context.run(asyncio.run, bounded()))
        except BaseException as error:  # reported to the waiting caller
            outcome.set_exception(error)

    thread = threading.Thread(target=main, name="act-operator-run-async-nested")
    thread.start()
    thread.join()
    return outcome.result()
