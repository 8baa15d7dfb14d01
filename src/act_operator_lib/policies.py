"""Timeout, retry and limits for one async call, as a node's policies do for a node.

The same engine runs a node's policies, each item of the fan-out functions and this
helper: each attempt takes a concurrency slot, then a rate token, then runs under
its own timeout; a failed attempt is retried under LangGraph's `RetryPolicy` rules,
after the delay a Retry-After asks for (`retry_after`) when there is one::

    from act_operator_lib import RateLimiter, call_with_policies
    from langgraph.types import RetryPolicy

    limiter = RateLimiter(10)
    data = await call_with_policies(
        lambda: client.get(url),
        timeout=5,
        retry=RetryPolicy(max_attempts=3),
        rate_limiter=limiter,
    )
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Final, Literal, TypeVar

from langgraph.types import RetryPolicy, TimeoutPolicy

from act_operator_lib._errors import CallTimeoutError, FunctionNotAsyncError
from act_operator_lib._policies import (
    resolve_concurrency_limiter,
    resolve_rate_limiter,
    resolve_retry,
    resolve_timeout,
)
from act_operator_lib._public import publish
from act_operator_lib._retry import AttemptObserver, CallPolicy, run_attempts
from act_operator_lib._retry_after import retry_after
from act_operator_lib.limits import SupportsAcquire, SupportsRelease

__all__ = ["AttemptObserver", "call_with_policies", "retry_after"]

T = TypeVar("T")

_OWNER = "call_with_policies"
_OBSERVER_METHODS = ("waited", "retrying", "timed_out")

LOGGER: Final = logging.getLogger("act_operator_lib.policies")


class _LoggedAttempts:
    """Logs a single call's retries and timeouts, then tells the caller's observer."""

    __slots__ = ("_observer",)

    def __init__(self, observer: AttemptObserver | None) -> None:
        self._observer = observer

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        if self._observer is not None:
            self._observer.waited(kind, seconds)

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        described = f"{type(error).__name__}: {error}"
        LOGGER.warning(
            "[call_with_policies] attempt %d failed (%s); retrying in %.3fs",
            attempt,
            described,
            delay,
            extra={"event": "retry", "attempt": attempt, "error": described, "delay": delay},
        )
        if self._observer is not None:
            self._observer.retrying(attempt, error, delay)

    def timed_out(self, attempt: int, timeout: float) -> None:
        LOGGER.warning(
            "[call_with_policies] attempt %d timed out after %gs",
            attempt,
            timeout,
            extra={"event": "timeout", "attempt": attempt, "timeout": timeout},
        )
        if self._observer is not None:
            self._observer.timed_out(attempt, timeout)


async def call_with_policies(
    fn: Callable[[], Awaitable[T]],
    *,
    timeout: float | timedelta | TimeoutPolicy | None = None,  # noqa: ASYNC109 - per attempt
    retry: RetryPolicy | tuple[RetryPolicy, ...] | list[RetryPolicy] | None = None,
    rate_limiter: SupportsAcquire | None = None,
    max_concurrency: SupportsRelease | None = None,
    observer: AttemptObserver | None = None,
) -> T:
    """Await ``fn()`` with a per-attempt timeout, retries and limiters; return its result.

    Args:
        fn: A zero-argument async callable; called once per attempt.
        timeout: Seconds each attempt may run (waiting for a slot or a token and the
            backoff are not counted); past it the attempt is cancelled and
            `CallTimeoutError` (a ``TimeoutError``) is raised, retried by the default
            ``RetryPolicy``.
        retry: A LangGraph ``RetryPolicy``, or several (the first whose ``retry_on``
            matches applies). Never retried: LangGraph's ``interrupt()`` and
            ``Command(graph=PARENT)``, cancellation, `NodeDefinitionError`,
            `NodeResultError`.
        rate_limiter: Each attempt awaits ``acquire()`` on it (ours, a Redis one,
            ``aiolimiter.AsyncLimiter``...). If it can ``pause`` and an attempt fails
            with a Retry-After, everyone sharing it waits that long.
        max_concurrency: A limiter shared by the callers (e.g. ``ConcurrencyLimiter(5)``);
            each attempt holds one of its slots.
        observer: Told about this call's attempts (`AttemptObserver`): each wait for
            a slot or a token, each retry (with its error and delay) and each
            timeout, e.g. to count them or stream them. Retries and timeouts are
            also logged (logger ``act_operator_lib.policies``, WARNING, with
            ``extra={"event": "retry" | "timeout", ...}``), observer or not.

    Raises:
        FunctionNotAsyncError: ``fn()`` returned something that cannot be awaited
            (never retried).
        TypeError, ValueError: a bad argument, before any attempt.

    Example::

        result = await call_with_policies(lambda: fetch(url), timeout=5,
                                          retry=RetryPolicy(max_attempts=3))
    """
    if not callable(fn):
        raise TypeError(
            f"{_OWNER}(fn=...) must be a zero-argument async callable, e.g. "
            f"`lambda: client.get(url)`, got {type(fn).__name__}"
        )
    if isinstance(max_concurrency, int):
        raise TypeError(
            f"{_OWNER}(max_concurrency=...) must be a limiter shared by the callers, "
            f"e.g. ConcurrencyLimiter({max_concurrency!r}) made once, got an int: "
            "one call has nothing to share a count with"
        )
    if observer is not None and not all(
        callable(getattr(observer, name, None)) for name in _OBSERVER_METHODS
    ):
        raise TypeError(
            f"{_OWNER}(observer=...) must have waited(kind, seconds), "
            "retrying(attempt, error, delay) and timed_out(attempt, timeout) methods "
            f"(see AttemptObserver), got {type(observer).__name__}"
        )
    policy = CallPolicy(
        timeout=resolve_timeout(_OWNER, timeout),
        retry=resolve_retry(_OWNER, retry),
        rate_limiter=resolve_rate_limiter(_OWNER, "rate_limiter", rate_limiter),
        concurrency_limiter=resolve_concurrency_limiter(_OWNER, "max_concurrency", max_concurrency),
    )

    async def attempt() -> T:
        call = fn()
        if not inspect.isawaitable(call):
            name = getattr(fn, "__qualname__", type(fn).__name__)
            raise FunctionNotAsyncError(
                f"{_OWNER}(fn=...) must return an awaitable, but {name}() returned "
                f"{type(call).__name__}: pass `lambda: client.get(url)` for an async call, "
                "or `lambda: run_sync(function)` to run a blocking one in a thread"
            )
        return await call

    return await run_attempts(
        policy, attempt, timeout_error=CallTimeoutError, observer=_LoggedAttempts(observer)
    )


publish(__name__, globals())
