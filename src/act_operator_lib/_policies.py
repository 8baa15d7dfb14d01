"""Node policies (timeout, retry, rate_limiter, max_concurrency): their checks.

A node's policies are resolved once, when the class is defined (to report mistakes
at import time) and when an instance is built (keywords override class attributes),
into the frozen `CallPolicy` the retry engine (`_retry.run_attempts`) runs each call
under. `call_with_policies` resolves its arguments here too.
"""

from __future__ import annotations

import abc
import difflib
import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from langgraph.types import RetryPolicy, TimeoutPolicy

from act_operator_lib._errors import NodeDefinitionError
from act_operator_lib._retry import CallPolicy
from act_operator_lib._validation import (
    is_int,
    is_number,
    non_negative_number,
    positive_integer,
    positive_number,
)
from act_operator_lib.limits import SupportsAcquire, SupportsRelease

__all__ = [
    "ASYNC_ONLY_POLICIES",
    "POLICY_NAMES",
    "RENAMED_POLICIES",
    "NodePolicies",
    "check_misspelled_policies",
    "check_renamed_policy",
    "resolve_concurrency_limiter",
    "resolve_policies",
    "resolve_rate_limiter",
    "resolve_retry",
    "resolve_timeout",
]

POLICY_NAMES = ("timeout", "retry", "rate_limiter", "max_concurrency")
"""The node options that are policies, in the order they are documented."""

ASYNC_ONLY_POLICIES = ("timeout", "rate_limiter", "max_concurrency")
"""Policies that need an event loop: cancellation for a timeout, async limiters."""

RENAMED_POLICIES = {"rate_limit": "rate_limiter"}
"""Old spelling -> current name of a policy; the old one works, with a DeprecationWarning,
until the next release."""


@dataclass(frozen=True, slots=True)
class NodePolicies:
    """The resolved policies of one node instance; ``None`` means "not set"."""

    timeout: float | None = None
    retry: tuple[RetryPolicy, ...] = ()
    rate_limiter: SupportsAcquire | None = None
    max_concurrency: SupportsRelease | None = None

    def call_policy(self) -> CallPolicy:
        """The same policies in the retry engine's terms."""
        return CallPolicy(
            timeout=self.timeout,
            retry=self.retry,
            rate_limiter=self.rate_limiter,
            concurrency_limiter=self.max_concurrency,
        )

    def __bool__(self) -> bool:
        return bool(
            self.timeout is not None
            or self.retry
            or self.rate_limiter is not None
            or self.max_concurrency is not None
        )


def check_misspelled_policies(owner: str, namespace: Mapping[str, Any]) -> None:
    """Refuse a class attribute that looks like a misspelled policy (``retries = RetryPolicy()``).

    Such an attribute would be silently ignored. Flagged: a name close to a policy's
    (difflib; plurals count: ``retries``, ``time_out``, ``ratelimiter``, ``max_concurrent``)
    holding a value that policy takes. Not flagged: the policy name extended with
    ``_...`` (``timeout_s``), private names, methods, and values the policy could not
    take (``timeouts = {"connect": 5}``).

    Raises:
        NodeDefinitionError: naming the attribute and the policy it resembles.
    """
    for name, value in namespace.items():
        if (
            name.startswith("_")
            or name in POLICY_NAMES
            or name in RENAMED_POLICIES
            or not _plain_value(value)
        ):
            continue
        close = difflib.get_close_matches(_singular(name.lower()), POLICY_NAMES, n=1, cutoff=0.8)
        if not close or name.startswith(f"{close[0]}_") or not _could_be(close[0], value):
            continue
        raise NodeDefinitionError(
            f"{owner}: attribute `{name}` looks like a misspelled policy and would be "
            f"ignored; did you mean `{close[0]}`? Node policies are "
            f"{', '.join(POLICY_NAMES)}. If `{name}` is your own setting, give it a "
            f"name that is not so close to `{close[0]}` (e.g. `{close[0]}_setting`)."
        )


def check_renamed_policy(owner: str, old: str, *, both: bool, at_definition: bool) -> str:
    """Warn that policy ``old`` is spelled the deprecated way; return its current name.

    ``owner`` is ``class Fetch`` (a class attribute, checked when the class is
    defined) or ``Fetch`` (a constructor keyword). The warning points at the first
    frame outside this package: the class statement or the constructor call.

    Raises:
        NodeDefinitionError: (``at_definition``) the class also declares the new name.
        TypeError: (constructor) both keywords were given.
    """
    new = RENAMED_POLICIES[old]
    if both:
        if at_definition:
            raise NodeDefinitionError(
                f"{owner}: declares both `{old}` and `{new}`; `{old}` is the deprecated "
                f"spelling of the `{new}` policy. Keep `{new}` only."
            )
        raise TypeError(
            f"{owner}({old}=..., {new}=...) must give the policy once, as {new}=... "
            f"(`{old}` is its deprecated spelling), got both."
        )
    where = f"{owner}: attribute `{old}`" if at_definition else f"{owner}({old}=...)"
    warnings.warn(
        f"{where} is the deprecated spelling of the `{new}` policy and stops working in "
        f"the next release; rename `{old}` to `{new}`.",
        DeprecationWarning,
        stacklevel=_stacklevel_outside_package(),
    )
    return new


_PACKAGE = os.path.dirname(__file__) + os.sep
_CLASS_MACHINERY = abc.ABCMeta.__new__.__code__


def _stacklevel_outside_package() -> int:
    """``stacklevel`` for the caller's ``warnings.warn``: the first frame of user code.

    Skipped: this package's frames and ``ABCMeta.__new__``'s (it runs
    ``__init_subclass__`` for a class statement).
    """
    level = 1
    frame = inspect.currentframe()
    caller = None if frame is None else frame.f_back
    while caller is not None and (
        caller.f_code.co_filename.startswith(_PACKAGE) or caller.f_code is _CLASS_MACHINERY
    ):
        caller = caller.f_back
        level += 1
    return level


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name.removesuffix("s")


def _plain_value(value: object) -> bool:
    return not (
        inspect.isroutine(value) or isinstance(value, type | property | classmethod | staticmethod)
    )


def _could_be(policy: str, value: object) -> bool:
    """Whether ``value`` is of a kind the policy named ``policy`` takes."""
    if policy == "timeout":
        return isinstance(value, int | float | timedelta | TimeoutPolicy) and not isinstance(
            value, bool
        )
    if policy == "retry":
        return isinstance(value, RetryPolicy) or (
            isinstance(value, list | tuple)
            and bool(value)
            and all(isinstance(item, RetryPolicy) for item in value)
        )
    if policy == "rate_limiter":
        return isinstance(value, SupportsAcquire)
    return is_int(value) or isinstance(value, SupportsRelease)


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
        timeout=resolve_timeout(owner, values.get("timeout")),
        retry=resolve_retry(owner, values.get("retry")),
        rate_limiter=resolve_rate_limiter(owner, "rate_limiter", values.get("rate_limiter")),
        max_concurrency=resolve_concurrency_limiter(
            owner, "max_concurrency", values.get("max_concurrency")
        ),
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


def resolve_timeout(owner: str, value: object) -> float | None:
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
    if not (is_number(value) or isinstance(value, timedelta)):
        raise TypeError(
            f"{owner} timeout must be seconds (int, float or timedelta) or a LangGraph "
            f"TimeoutPolicy, got {type(value).__name__}."
            + (
                " If this attribute is your own setting (e.g. an HTTP client timeout), "
                "rename it: `timeout` is a node policy."
                if owner.startswith(("node ", "class "))
                else ""
            )
        )
    return _seconds(owner, "timeout", value)


def resolve_retry(owner: str, value: object) -> tuple[RetryPolicy, ...]:
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
        non_negative_number(owner, f"retry.{field}", getattr(policy, field))
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


def resolve_rate_limiter(owner: str, name: str, value: object) -> SupportsAcquire | None:
    """``value`` if it is None or a rate limiter (anything with ``async acquire()``)."""
    if value is None or isinstance(value, SupportsAcquire):
        return value
    raise TypeError(
        f"{owner} {name} must be a limiter from act_operator_lib.limits (e.g. "
        "RateLimiter(10), or a Redis-backed one) or any object with an async acquire() "
        f"such as aiolimiter.AsyncLimiter, got {type(value).__name__}."
    )


def resolve_concurrency_limiter(owner: str, name: str, value: object) -> SupportsRelease | None:
    """``value`` if it is None or a concurrency limiter, a new one for an int."""
    if value is None or (isinstance(value, SupportsRelease) and not isinstance(value, int)):
        return value
    if not is_int(value):
        raise TypeError(
            f"{owner} {name} must be an int (at least 1) or a limiter such as "
            "ConcurrencyLimiter (anything with acquire() and release()), got "
            f"{type(value).__name__}."
        )
    from act_operator_lib.limits import ConcurrencyLimiter

    return ConcurrencyLimiter(positive_integer(owner, name, value))
