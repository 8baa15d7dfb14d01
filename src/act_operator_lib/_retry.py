"""The one attempt loop behind node policies, fan-out items and single requests.

Each attempt reads as ``slot -> token -> timeout -> attempt()``: take a slot from
the concurrency limiter, a token from the rate limiter, then run the attempt under
its own ``asyncio.timeout``. Waiting for a slot or a token and sleeping a backoff
never count against the attempt's timeout. A failed attempt is retried under
LangGraph's `RetryPolicy` semantics (`retry_delay`), and the slot is given back
before the backoff::

    policy = CallPolicy(timeout=5, retry=(RetryPolicy(max_attempts=3),))
    result = await run_attempts(
        policy, lambda: fetch(url), timeout_error=lambda seconds: TimeoutError(seconds)
    )

`run_attempts_sync` is the same loop for sync code (retry only, ``time.sleep``
between attempts).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeGuard, TypeVar

from langgraph.errors import GraphBubbleUp
from langgraph.types import RetryPolicy

from act_operator_lib._deadline import DeadlineExceeded, deadline
from act_operator_lib._errors import (
    ActOperatorError,
    FunctionNotAsyncError,
    NodeDefinitionError,
    NodeResultError,
)
from act_operator_lib._retry_after import retry_after
from act_operator_lib.limits import (
    ConcurrencyLimiter,
    RateLimiter,
    SupportsAcquire,
    SupportsPause,
    SupportsRelease,
)

__all__ = [
    "AttemptObserver",
    "CallPolicy",
    "retry_delay",
    "run_attempts",
    "run_attempts_sync",
    "share_cooldown",
]

T = TypeVar("T")

# Never retried, whatever `retry_on` says: LangGraph control flow (interrupt(),
# Command(graph=PARENT), drain) and the library's own "fix your code" errors.
_NEVER_RETRIED = (GraphBubbleUp, NodeDefinitionError, NodeResultError, FunctionNotAsyncError)

# LangGraph's own default `retry_on`, which retries LangGraph's timeout errors.
_DEFAULT_RETRY_ON: Any = RetryPolicy._field_defaults["retry_on"]

_Future = asyncio.Future


def _grants_at_once(limiter: object) -> TypeGuard[RateLimiter | ConcurrencyLimiter]:
    """Whether ``limiter``'s ``async with`` entry grants at once with a completed future.

    Our in-process limiters' entry does (no coroutine to run, no wait to time), and
    their exit gives a slot back the same way; the engine then uses those, and
    ``acquire()``/``release()`` for any other limiter.
    """
    return isinstance(limiter, RateLimiter | ConcurrencyLimiter)


class AttemptObserver(Protocol):
    """Told what happens to the attempts of one call: logs, counters, spans, stream events.

    Example::

        class Counting:
            def waited(self, kind, seconds): ...
            def retrying(self, attempt, error, delay): print(f"retry {attempt} in {delay}s")
            def timed_out(self, attempt, timeout): ...
    """

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        """An attempt waited ``seconds`` (event-loop clock) for a slot or a token."""

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        """Attempt number ``attempt`` failed with ``error``; the next starts after ``delay`` s."""

    def timed_out(self, attempt: int, timeout: float) -> None:
        """Attempt number ``attempt`` ran past ``timeout`` seconds and was cancelled."""


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """What each attempt of a call goes through; an empty policy runs the call once.

    Example::

        CallPolicy(timeout=10, retry=(RetryPolicy(max_attempts=3),), rate_limiter=limiter)
    """

    timeout: float | None = None
    """Seconds each attempt may run (waits for a slot or a token not counted)."""
    retry: tuple[RetryPolicy, ...] = ()
    """LangGraph retry policies; the first whose ``retry_on`` matches applies."""
    rate_limiter: SupportsAcquire | None = None
    """Each attempt awaits ``acquire()`` on it: one token per attempt."""
    concurrency_limiter: SupportsRelease | None = None
    """Each attempt holds one of its slots."""
    # How an attempt takes a token, takes a slot and gives it back (`_grants_at_once`).
    _take_token: Callable[[], Awaitable[Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _take_slot: Callable[[], Awaitable[Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _give_slot: Callable[[], Any] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        tokens, slots = self.rate_limiter, self.concurrency_limiter
        if tokens is not None:
            take = tokens.__aenter__ if _grants_at_once(tokens) else tokens.acquire
            object.__setattr__(self, "_take_token", take)
        if slots is not None:
            take_slot: Callable[[], Awaitable[Any]]
            give_slot: Callable[[], Any]
            if _grants_at_once(slots):
                take_slot, give_slot = slots.__aenter__, slots.__aexit__
            else:
                take_slot, give_slot = slots.acquire, slots.release
            object.__setattr__(self, "_take_slot", take_slot)
            object.__setattr__(self, "_give_slot", give_slot)

    def __bool__(self) -> bool:
        return bool(
            self.timeout is not None
            or self.retry
            or self.rate_limiter is not None
            or self.concurrency_limiter is not None
        )


async def run_attempts(
    policy: CallPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    timeout_error: Callable[[float], TimeoutError],
    observer: AttemptObserver | None = None,
    before_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``attempt()`` under ``policy`` until it returns or may not be retried.

    An attempt stopped by ``policy.timeout`` raises ``timeout_error(seconds)`` with
    the deadline's ``TimeoutError`` as ``__cause__``; a cancellation from outside
    stays a cancellation. ``before_retry`` runs before every attempt after the first.
    When an attempt that took a token fails with a Retry-After (`retry_after`) and
    the rate limiter can pause (`SupportsPause`), the limiter pauses for everyone
    sharing it and the retry waits for its next token there instead of sleeping.

    Example::

        await run_attempts(CallPolicy(retry=(RetryPolicy(),)), lambda: fetch(url),
                           timeout_error=TimeoutError)
    """
    rate_limiter = policy.rate_limiter
    take_slot, take_token, give_slot = policy._take_slot, policy._take_token, policy._give_slot
    timeout = policy.timeout
    waited = observer.waited if observer is not None else None
    # One running-loop lookup per call for the deadlines (each costs a getpid on 3.11).
    loop = asyncio.get_running_loop() if timeout is not None else None
    failed = 0
    while True:
        took_token = False
        try:
            if take_slot is not None:
                granted = take_slot()
                if type(granted) is _Future and granted.done():
                    granted.result()  # at once: nothing was waited for, no clock to read
                    if waited is not None:
                        waited("concurrency", 0.0)
                else:
                    await _wait_for(granted, "concurrency", waited)
            try:
                if take_token is not None:
                    granted = take_token()
                    if type(granted) is _Future and granted.done():
                        granted.result()
                        if waited is not None:
                            waited("rate", 0.0)
                    else:
                        await _wait_for(granted, "rate", waited)
                    took_token = True
                if timeout is None:
                    return await attempt()
                try:
                    with deadline(timeout, loop):
                        return await attempt()
                except DeadlineExceeded as error:
                    if observer is not None:
                        observer.timed_out(failed + 1, timeout)
                    raise timeout_error(timeout) from error
            finally:
                if give_slot is not None:
                    released = give_slot()
                    if released is not None and not (type(released) is _Future and released.done()):
                        await released
        except Exception as error:
            failed += 1
            delay = _next_delay(policy, error, failed, observer)
            if delay is None:
                raise
            # Everyone sharing the limiter waits out the server's Retry-After; this
            # caller then queues for its next token like the others.
            if not (took_token and await share_cooldown(rate_limiter, error, delay)):
                await asyncio.sleep(delay)
            if before_retry is not None:
                before_retry()


async def _wait_for(
    granted: Awaitable[Any],
    kind: Literal["concurrency", "rate"],
    waited: Callable[[Literal["concurrency", "rate"], float], None] | None,
) -> None:
    """Await a slot or token that was not granted at once; report the wait.

    Measured on the loop's clock, so fake clocks (``looptime``) see it.
    """
    clock = asyncio.get_running_loop().time
    asked = clock()
    await granted
    if waited is not None:
        waited(kind, clock() - asked)


def run_attempts_sync(
    policy: CallPolicy,
    attempt: Callable[[], T],
    *,
    observer: AttemptObserver | None = None,
    before_retry: Callable[[], None] | None = None,
) -> T:
    """`run_attempts` for sync code: retry only, the backoff slept with ``time.sleep``.

    Example::

        run_attempts_sync(CallPolicy(retry=(RetryPolicy(),)), lambda: parse(text))
    """
    if (
        policy.timeout is not None
        or policy.rate_limiter is not None
        or (policy.concurrency_limiter is not None)
    ):
        raise ValueError(
            "run_attempts_sync(policy=...) must have only `retry`: a timeout needs a "
            f"cancellable attempt and limiters are awaited, got {policy!r}"
        )
    failed = 0
    while True:
        try:
            return attempt()
        except Exception as error:
            failed += 1
            delay = _next_delay(policy, error, failed, observer)
            if delay is None:
                raise
            time.sleep(delay)
            if before_retry is not None:
                before_retry()


def _next_delay(
    policy: CallPolicy, error: Exception, failed: int, observer: AttemptObserver | None
) -> float | None:
    """`retry_delay` after the ``failed``-th failure, told to ``observer`` when retried."""
    delay = retry_delay(policy.retry, error, failed)
    if delay is not None and observer is not None:
        observer.retrying(failed, error, delay)
    return delay


def retry_delay(
    policies: tuple[RetryPolicy, ...], error: Exception, failed_attempts: int
) -> float | None:
    """Seconds to wait before the next attempt, or None if ``error`` must propagate.

    The first policy whose ``retry_on`` matches applies, as in LangGraph. The delay is
    LangGraph's: ``min(max_interval, initial_interval * backoff_factor ** (n - 1))``
    plus ``uniform(0, 1)`` with jitter, after the n-th failure; a Retry-After the
    error carries (`retry_after`) replaces it.

    Example::

        retry_delay((RetryPolicy(jitter=False),), ConnectionError(), 1)   # 0.5
    """
    if not policies or isinstance(error, _NEVER_RETRIED):
        return None
    for policy in policies:
        if _matches(policy.retry_on, error):
            break
    else:
        return None
    if failed_attempts >= policy.max_attempts:
        return None
    asked = retry_after(error)
    if asked is not None:
        return asked
    interval = min(
        policy.max_interval,
        policy.initial_interval * policy.backoff_factor ** (failed_attempts - 1),
    )
    return interval + random.uniform(0, 1) if policy.jitter else interval


def _matches(retry_on: Any, error: Exception) -> bool:
    if (
        retry_on is _DEFAULT_RETRY_ON
        and isinstance(error, TimeoutError)
        and isinstance(error, ActOperatorError)
    ):
        # Our attempt timeouts are builtin TimeoutErrors, which LangGraph's default
        # treats as permanent OSErrors; LangGraph retries its own timeouts, so do we.
        return True
    if isinstance(retry_on, type):
        return isinstance(error, retry_on)
    if isinstance(retry_on, list | tuple):
        return isinstance(error, tuple(retry_on))
    predicate: Callable[[Exception], bool] = retry_on
    return bool(predicate(error))


async def share_cooldown(
    limiter: object, error: BaseException, seconds: float | None = None
) -> bool:
    """Pause ``limiter`` for everyone sharing it when ``error`` asks for a Retry-After.

    The one shared-cooldown rule of the retry engine and of `with_token_budget`:
    only an error carrying a Retry-After, only a limiter that can pause
    (`SupportsPause`). ``seconds`` overrides the wait (the engine passes its retry
    delay). True when the limiter was paused.

    Example::

        if not await share_cooldown(limiter, error):
            await asyncio.sleep(backoff)
    """
    asked = retry_after(error)
    if asked is None or not isinstance(limiter, SupportsPause):
        return False
    await limiter.pause(asked if seconds is None else seconds)
    return True
