"""Node policies (timeout, retry, rate_limit, max_concurrency): checks and retry rules.

A node's policies are resolved once, when the class is defined (to report mistakes
at import time) and when an instance is built (keywords override class attributes),
into a frozen `NodePolicies`. A call only reads it; what runs per call is
`AttemptDeadlines` (a node's timeout) and `retry_delay`, after an attempt failed.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from langgraph.errors import GraphBubbleUp
from langgraph.types import RetryPolicy, TimeoutPolicy

from act_operator_lib._errors import (
    NodeDefinitionError,
    NodeResultError,
    NodeTimeoutError,
)
from act_operator_lib._retry_after import retry_after as read_retry_after
from act_operator_lib.limits._arguments import positive_integer, positive_number
from act_operator_lib.limits._base import Limiter

__all__ = [
    "ASYNC_ONLY_POLICIES",
    "POLICY_NAMES",
    "AttemptDeadlines",
    "NodePolicies",
    "resolve_policies",
    "retry_delay",
]

POLICY_NAMES = ("timeout", "retry", "rate_limit", "max_concurrency")
"""The node options that are policies, in the order they are documented."""

ASYNC_ONLY_POLICIES = ("timeout", "rate_limit", "max_concurrency")
"""Policies that need an event loop: cancellation for a timeout, async limiters."""

# LangGraph's own default `retry_on`. A timeout is retryable by LangGraph's design
# (its NodeTimeoutError deliberately is not a builtin TimeoutError, which the default
# treats as a permanent OSError); ours *is* a TimeoutError, so with the default
# predicate we retry it explicitly to keep LangGraph's meaning.
_DEFAULT_RETRY_ON: Any = RetryPolicy._field_defaults["retry_on"]

# Never retried, whatever `retry_on` says: LangGraph control flow (interrupt(),
# Command(graph=PARENT), drain) and the library's own "fix your code" errors.
_NEVER_RETRIED = (GraphBubbleUp, NodeDefinitionError, NodeResultError)


@dataclass(frozen=True, slots=True)
class NodePolicies:
    """The resolved policies of one node instance; ``None`` means "not set"."""

    timeout: float | None = None
    retry: tuple[RetryPolicy, ...] = ()
    rate_limit: Limiter | None = None
    max_concurrency: Limiter | None = None

    def __bool__(self) -> bool:
        return bool(
            self.timeout is not None
            or self.retry
            or self.rate_limit is not None
            or self.max_concurrency is not None
        )


# asyncio runs a timer early by up to the clock's resolution; so do we.
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution


class _Attempt:
    """One running attempt under a node's timeout."""

    __slots__ = ("deadline", "done", "expired", "task")

    def __init__(self, deadline: float, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline
        self.task = task
        self.done = False
        self.expired = False


class AttemptDeadlines:
    """A node's running attempts on one event loop, each cancelled at its deadline.

    Example::

        attempt = deadlines.start(task)
        try:
            result = await execute()
        finally:
            expired = deadlines.finish(attempt)

    What ``asyncio.timeout(timeout)`` around each attempt would do (the attempt's
    task is cancelled at the deadline; the caller uncancels and turns the
    cancellation into a timeout), with one timer per node instead of one per
    attempt: a timer handle costs over 2 us to make and cancel. The attempts of a
    node share its timeout, so their deadlines come in the order they started; the
    timer is armed for the earliest and, when it fires, cancels the expired
    attempts and re-arms for the next. A timer whose attempt has already finished
    fires for nothing, once, and is not re-armed if no attempt is running.
    """

    __slots__ = ("attempts", "loop", "timeout", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.attempts: deque[_Attempt] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[Any]) -> _Attempt:
        """Register an attempt of ``task`` starting now; it is cancelled ``timeout`` later."""
        attempt = _Attempt(self.loop.time() + self.timeout, task)
        self.attempts.append(attempt)
        if self.timer is None:
            self.timer = self.loop.call_at(attempt.deadline, self._expire)
        return attempt

    def finish(self, attempt: _Attempt) -> bool:
        """Take ``attempt`` off the list; return whether its deadline cancelled it."""
        attempt.done = True
        attempts = self.attempts
        while attempts and attempts[0].done:
            attempts.popleft()
        return attempt.expired

    def _expire(self) -> None:
        self.timer = None
        attempts = self.attempts
        due = self.loop.time() + _CLOCK_RESOLUTION
        while attempts:
            attempt = attempts[0]
            if not attempt.done:
                if attempt.deadline >= due:
                    self.timer = self.loop.call_at(attempt.deadline, self._expire)
                    return
                attempt.expired = True
                attempt.task.cancel()
            attempts.popleft()


def resolve_policies(
    owner: str, values: Mapping[str, Any], *, asynchronous: bool, at_definition: bool
) -> NodePolicies | None:
    """Check ``values`` (policy name -> value) and return them resolved, or None if none set.

    ``owner`` names the node or class in messages. An int ``max_concurrency`` becomes a
    new `ConcurrencyLimiter` (one per call of this function, so one per node instance).

    Raises:
        NodeDefinitionError: (``at_definition``) a policy a sync node cannot have.
        TypeError: a policy a sync node cannot have (constructor), or a value of the
            wrong type.
        ValueError: a value out of range.
    """
    if not asynchronous:
        for name in ASYNC_ONLY_POLICIES:
            if values.get(name) is not None:
                _refuse_on_sync_node(owner, name, at_definition=at_definition)
    policies = NodePolicies(
        timeout=_resolve_timeout(owner, values.get("timeout")),
        retry=_resolve_retry(owner, values.get("retry")),
        rate_limit=_resolve_limiter(owner, "rate_limit", values.get("rate_limit")),
        max_concurrency=_resolve_max_concurrency(owner, values.get("max_concurrency")),
    )
    return policies if policies else None


def _refuse_on_sync_node(owner: str, name: str, *, at_definition: bool) -> None:
    why = (
        "a timeout cancels the attempt, and only async code can be cancelled"
        if name == "timeout"
        else "limiters are awaited, and a sync node runs in a worker thread without a loop"
    )
    message = (
        f"{owner}: `{name}` is an AsyncBaseNode policy; a sync BaseNode cannot have it "
        f"({why}). Derive from AsyncBaseNode and run blocking code with "
        "`await asyncio.to_thread(...)`, or set the limit on LangGraph's add_node()"
        + (" where it exists" if name != "timeout" else "")
        + ". If this attribute is your own setting, rename it."
    )
    if at_definition:
        raise NodeDefinitionError(message)
    raise TypeError(message)


def _seconds(owner: str, name: str, value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return positive_number(owner, name, value)


def _resolve_timeout(owner: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, TimeoutPolicy):
        if value.idle_timeout is not None:
            raise ValueError(
                f"{owner} timeout: idle_timeout is not a node policy (only run_timeout is); "
                "pass TimeoutPolicy(idle_timeout=...) to LangGraph's "
                "add_node(..., timeout=...), which refreshes it on runtime.heartbeat()."
            )
        if value.run_timeout is None:
            raise ValueError(f"{owner} timeout: the TimeoutPolicy has no run_timeout.")
        return _seconds(owner, "timeout.run_timeout", value.run_timeout)
    if not isinstance(value, int | float | timedelta) or isinstance(value, bool):
        raise TypeError(
            f"{owner} timeout must be seconds (int, float or timedelta) or a LangGraph "
            f"TimeoutPolicy, got {type(value).__name__}. If this attribute is your own "
            "setting (e.g. an HTTP client timeout), rename it: `timeout` is a node policy."
        )
    return _seconds(owner, "timeout", value)


def _resolve_retry(owner: str, value: object) -> tuple[RetryPolicy, ...]:
    if value is None:
        return ()
    if isinstance(value, RetryPolicy):
        policies: Sequence[object] = (value,)
    elif isinstance(value, list | tuple) and value:
        policies = value
    else:
        raise TypeError(
            f"{owner} retry must be a LangGraph RetryPolicy (or a non-empty list of them, "
            f"tried in order), got {value!r}. Example: retry=RetryPolicy(max_attempts=3)."
        )
    for policy in policies:
        if not isinstance(policy, RetryPolicy):
            raise TypeError(
                f"{owner} retry must hold RetryPolicy objects, got {type(policy).__name__}."
            )
        _check_retry_policy(owner, policy)
    return tuple(policies)  # type: ignore[arg-type]


def _check_retry_policy(owner: str, policy: RetryPolicy) -> None:
    positive_integer(owner, "retry.max_attempts", policy.max_attempts)
    for field in ("initial_interval", "backoff_factor", "max_interval"):
        number = getattr(policy, field)
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise TypeError(f"{owner} retry.{field} must be a number, got {type(number).__name__}.")
        if not (number >= 0 and math.isfinite(number)):
            raise ValueError(
                f"{owner} retry.{field} must be a finite number of at least 0, got {number!r}."
            )
    retry_on = policy.retry_on
    valid = (
        (isinstance(retry_on, type) and issubclass(retry_on, Exception))
        or (
            isinstance(retry_on, list | tuple)
            and all(isinstance(kind, type) and issubclass(kind, Exception) for kind in retry_on)
        )
        or (callable(retry_on) and not isinstance(retry_on, type))
    )
    if not valid:
        raise TypeError(
            f"{owner} retry.retry_on must be an Exception class, a list or tuple of them, "
            f"or a callable taking the exception, got {retry_on!r}."
        )


def _resolve_limiter(owner: str, name: str, value: object) -> Limiter | None:
    if value is None or isinstance(value, Limiter):
        return value
    example = "RateLimiter(10)" if name == "rate_limit" else "ConcurrencyLimiter(5)"
    raise TypeError(
        f"{owner} {name} must be a limiter from act_operator_lib.limits (e.g. "
        f"{example}, or a Redis-backed one), got {type(value).__name__}."
    )


def _resolve_max_concurrency(owner: str, value: object) -> Limiter | None:
    if isinstance(value, Limiter) or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{owner} max_concurrency must be an int (at least 1) or a limiter such as "
            f"ConcurrencyLimiter, got {type(value).__name__}."
        )
    from act_operator_lib.limits._concurrency import ConcurrencyLimiter

    return ConcurrencyLimiter(positive_integer(owner, "max_concurrency", value))


def retry_delay(
    policies: tuple[RetryPolicy, ...], error: Exception, failed_attempts: int
) -> float | None:
    """Seconds to wait before the next attempt, or None if ``error`` must propagate.

    The first policy whose ``retry_on`` matches applies, as in LangGraph. The delay is
    LangGraph's: ``min(max_interval, initial_interval * backoff_factor ** (n - 1))``
    plus ``uniform(0, 1)`` with jitter, after the n-th failure; an exception's
    ``retry_after`` (seconds, e.g. from a 429 response) replaces it.
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
    retry_after = read_retry_after(error)
    if retry_after is not None:
        return retry_after
    interval = min(
        policy.max_interval,
        policy.initial_interval * policy.backoff_factor ** (failed_attempts - 1),
    )
    return interval + random.uniform(0, 1) if policy.jitter else interval


def _matches(retry_on: Any, error: Exception) -> bool:
    if retry_on is _DEFAULT_RETRY_ON and isinstance(error, NodeTimeoutError):
        return True
    if isinstance(retry_on, type):
        return isinstance(error, retry_on)
    if isinstance(retry_on, list | tuple):
        return isinstance(error, tuple(retry_on))
    predicate: Callable[[Exception], bool] = retry_on
    return bool(predicate(error))
