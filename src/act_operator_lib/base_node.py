"""Base classes for LangGraph nodes: `BaseNode` (sync) and `AsyncBaseNode` (async).

A drop-in for Act Operator's scaffolded ``casts/base_node.py``: same names, same
``execute`` signatures, same helpers (``log``, ``get_thread_id``, ``get_tags``).
Add an instance to a graph and LangGraph passes ``config`` and ``runtime``; call it
directly in a test with only the state::

    class Greet(AsyncBaseNode):
        async def execute(self, state):
            return {"greeting": f"hello {state['name']}"}

    builder.add_node("greet", Greet())
    await Greet()({"name": "Ada"})        # -> {"greeting": "hello Ada"}

``execute`` is checked when the class is defined (``async def`` on AsyncBaseNode,
``def`` on BaseNode, parameters ``state`` then optionally ``config`` and/or
``runtime``) and its result on every call (a dict, a ``Command``, a list of
``Command``, or ``None``). A forgotten ``await`` is reported as `MissingAwaitError`
instead of reaching the graph state as a coroutine object.

Nodes take policies, as class attributes or constructor keywords (keywords win):
``timeout``, ``retry``, ``rate_limit`` and ``max_concurrency`` (see `AsyncBaseNode`
and docs/policies.md). Every call is counted (`statistics`), logged at DEBUG on the
``act_operator_lib.node`` logger and traced with OpenTelemetry when it is set up
(see `act_operator_lib.observability`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphBubbleUp
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, TimeoutPolicy

from act_operator_lib import streaming
from act_operator_lib._errors import MissingAwaitError, NodeResultError, NodeTimeoutError
from act_operator_lib._policies import (
    POLICY_NAMES,
    AttemptDeadlines,
    NodePolicies,
    resolve_policies,
    retry_delay,
)
from act_operator_lib._signature import ACCEPTS_CONFIG, ACCEPTS_RUNTIME, check_execute
from act_operator_lib.limits._base import Limiter
from act_operator_lib.observability import (
    FAST_PATH_TIMING_EVERY,
    NodeRecorder,
    NodeStatistics,
    current_tracer,
    otel_globals,
    tracing,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["AsyncBaseNode", "BaseNode"]

LOGGER = logging.getLogger("act_operator_lib.node")

_NODE_OPTIONS = ("name", "verbose", *POLICY_NAMES)
_AWAITABLES = (types.CoroutineType, asyncio.Future)
_DEBUG = logging.DEBUG
_NO_POLICIES = NodePolicies()
_perf_counter = time.perf_counter
_debug_enabled = LOGGER.isEnabledFor
# isEnabledFor() is a Python call; the logger caches its answers in a dict whose C
# `get` costs a fraction of that. The logging module clears (never replaces) the dict
# when levels change; a missing answer (None) falls back to isEnabledFor().
_debug_cached = getattr(LOGGER, "_cache", {}).get
_TIMING_MASK = FAST_PATH_TIMING_EVERY - 1
_get_running_loop = asyncio.get_running_loop
_current_task = asyncio.current_task
_CancelledError = asyncio.CancelledError


class _Node(ABC):
    """What `BaseNode` and `AsyncBaseNode` share; not meant to be subclassed directly."""

    name: str
    """The node's name: the class name unless ``name=`` is given."""
    verbose: bool = False
    """Whether `log` writes anything."""
    timeout: float | timedelta | TimeoutPolicy | None = None
    """Seconds each attempt may run before it is cancelled (AsyncBaseNode only)."""
    retry: RetryPolicy | tuple[RetryPolicy, ...] | list[RetryPolicy] | None = None
    """LangGraph `RetryPolicy` (or several, first match wins) for failed attempts."""
    rate_limit: Limiter | None = None
    """A rate limiter every attempt takes a token from (AsyncBaseNode only)."""
    max_concurrency: int | Limiter | None = None
    """At most this many attempts at once, in every run (AsyncBaseNode only)."""

    _accepts: ClassVar[int] = 0
    if TYPE_CHECKING:
        execute: Callable[..., Any]
    _asynchronous: ClassVar[bool]
    # Set by __init__; None on an instance whose subclass skipped super().__init__(),
    # which then sets itself up from the class attributes on its first call.
    _policies: NodePolicies | None = None
    _recorder: NodeRecorder | None = None
    # The recorder when a call may take the fast path (no policies), else None.
    _fast_recorder: NodeRecorder | None = None
    # The timer behind the ``timeout`` policy, for the loop it was last used on.
    _deadlines: AttemptDeadlines | None = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):
            cls.name = cls.__name__
        if cls.__module__ == __name__:
            return
        if any(option in vars(cls) for option in POLICY_NAMES):
            # Checked here so a bad policy fails at import, not at the first call.
            resolve_policies(
                f"class {cls.__qualname__}",
                {option: getattr(cls, option) for option in POLICY_NAMES},
                asynchronous=cls._asynchronous,
                at_definition=True,
            )
        if abstract or _declares_other_abstract_methods(cls):
            return
        base = "AsyncBaseNode" if cls._asynchronous else "BaseNode"
        cls._accepts = check_execute(cls, asynchronous=cls._asynchronous, base_name=base)

    def __init__(self, **kwargs: Any) -> None:
        """Configure the node.

        Args:
            name: The node's name in logs, errors and statistics (default: the class name).
            verbose: Whether `log` writes debug records (default False).
            timeout: Seconds (or a LangGraph ``TimeoutPolicy`` with ``run_timeout``) each
                attempt may run; AsyncBaseNode only.
            retry: A LangGraph ``RetryPolicy``, or a list of them (first match wins).
            rate_limit: A limiter each attempt takes a token from; AsyncBaseNode only.
            max_concurrency: An int (a `ConcurrencyLimiter` of this node instance) or
                any limiter; AsyncBaseNode only.

        A keyword overrides the class attribute of the same name. Subclasses take their
        own options and pass the rest on, as the guide does::

            def __init__(self, pool_size=10, **kwargs):
                super().__init__(**kwargs)
        """
        name = kwargs.pop("name", None)
        verbose = kwargs.pop("verbose", False)
        overrides = {option: kwargs.pop(option) for option in POLICY_NAMES if option in kwargs}
        if kwargs:
            unexpected = ", ".join(sorted(kwargs))
            raise TypeError(
                f"{type(self).__qualname__}() got unexpected keyword argument(s): "
                f"{unexpected}. Node options are {', '.join(_NODE_OPTIONS)}; a subclass "
                "option must be taken by the subclass's __init__ before it calls "
                "super().__init__(**kwargs)."
            )
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"{type(self).__qualname__}(name=...) must be a non-empty string, got {name!r}."
                )
            self.name = name
        else:
            self.name = type(self).name
        if not isinstance(verbose, bool):
            raise TypeError(
                f"{type(self).__qualname__}(verbose=...) must be True or False, got {verbose!r}."
            )
        self.verbose = verbose
        self._set_up(overrides)
        for option, value in overrides.items():
            setattr(self, option, value)

    def _set_up(self, overrides: Mapping[str, Any]) -> NodeRecorder:
        """Resolve the policies (keywords over class attributes) and start the counters."""
        cls = type(self)
        values = {option: getattr(cls, option) for option in POLICY_NAMES}
        values.update(overrides)
        self._policies = resolve_policies(
            f"node {self.name!r}",
            values,
            asynchronous=cls._asynchronous,
            at_definition=False,
        )
        recorder = self._recorder = NodeRecorder(self.name)
        self._fast_recorder = recorder if self._policies is None else None
        self._deadlines = None
        return recorder

    def statistics(self) -> NodeStatistics:
        """A snapshot of this node's calls, outcomes, waits and latencies.

        Example::

            stats = node.statistics()
            print(stats.calls, stats.retries, stats.latency_p95)
        """
        return (self._recorder or self._set_up({})).statistics()

    def log(self, message: str, **context: Any) -> None:
        """Log ``message`` at DEBUG level, with ``context``, when the node is verbose.

        Example::

            self.log("fetched", url=url, status=200)
        """
        if not self.verbose:
            return
        LOGGER.debug(
            "[%s] %s%s",
            self.name,
            message,
            "".join(f" {key}={value!r}" for key, value in context.items()),
            extra={"node": self.name, "context": context},
        )

    @staticmethod
    def get_thread_id(config: Mapping[str, Any] | None = None) -> str | None:
        """The ``thread_id`` of the run, from ``config["configurable"]``, or None."""
        if not config:
            return None
        configurable = config.get("configurable")
        if not configurable:
            return None
        thread_id = configurable.get("thread_id")
        return None if thread_id is None else str(thread_id)

    @staticmethod
    def get_tags(config: Mapping[str, Any] | None = None) -> list[str]:
        """The run's tags from ``config``, or an empty list."""
        if not config:
            return []
        return list(config.get("tags") or [])

    @staticmethod
    def emit(data: Any) -> None:
        """Write ``data`` to LangGraph's ``custom`` stream (see `streaming.emit`)."""
        streaming.emit(data)

    @staticmethod
    def heartbeat() -> None:
        """Record progress for the node's idle timeout (see `streaming.heartbeat`)."""
        streaming.heartbeat()

    async def aclose(self) -> None:
        """Close the pooled resources this node opened, on every event loop.

        Idempotent; the next use of a resource opens a fresh one. `BaseGraph` calls
        it for the nodes it built on ``async with graph:`` exit::

            await node.aclose()
        """
        from act_operator_lib.resources._core import aclose_resources

        await aclose_resources(self)

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(name={self.name!r})"

    def _execute(
        self, state: Any, config: RunnableConfig | None, runtime: Runtime[Any] | None
    ) -> Any:
        """Call ``execute`` with the arguments it declares (awaitable for async nodes)."""
        accepts = self._accepts
        if accepts == 0:
            return self.execute(state)
        if accepts == ACCEPTS_CONFIG:
            return self.execute(state, config=config)
        if accepts == ACCEPTS_RUNTIME:
            return self.execute(state, runtime=streaming.to_node_runtime(runtime))
        return self.execute(state, config=config, runtime=streaming.to_node_runtime(runtime))

    def _checked(self, result: Any) -> Any:
        """Return ``result`` if LangGraph can merge it, else raise naming the node."""
        if type(result) is dict:
            for value in result.values():
                if isinstance(value, _AWAITABLES):
                    raise _missing_await(self.name, result)
            return result
        if result is None or isinstance(result, Command):
            return result
        return self._checked_other(result)

    def _checked_other(self, result: Any) -> Any:
        if isinstance(result, dict):
            for value in result.values():
                if isinstance(value, _AWAITABLES):
                    raise _missing_await(self.name, result)
            return result
        if isinstance(result, _AWAITABLES):
            raise _missing_await(self.name, result)
        if (
            isinstance(result, list | tuple)
            and result
            and all(isinstance(item, Command) for item in result)
        ):
            return result
        raise NodeResultError(
            f"node {self.name!r}: execute() must return a dict of state updates, a "
            f"Command, a list of Commands or None; got {type(result).__name__}. "
            "Return a dict of the fields you changed, e.g. {'result': value}."
        )


def _declares_other_abstract_methods(cls: type) -> bool:
    for klass in cls.__mro__:
        for attribute, value in vars(klass).items():
            if attribute != "execute" and getattr(value, "__isabstractmethod__", False):
                overridden = getattr(cls, attribute, None)
                if getattr(overridden, "__isabstractmethod__", False):
                    return True
    return False


def _missing_await(node: str, result: Any) -> MissingAwaitError:
    """Close the stray coroutine(s) in ``result`` and build the error naming them."""
    if isinstance(result, dict):
        keys = [key for key, value in result.items() if isinstance(value, _AWAITABLES)]
        for key in keys:
            _discard(result[key])
        where = f"the value of {', '.join(repr(key) for key in keys)} is"
    else:
        _discard(result)
        where = "it returned"
    return MissingAwaitError(
        f"node {node!r}: {where} an un-awaited coroutine; did you forget await? "
        "Write `result = await operation()` and return the result."
    )


def _discard(awaitable: Any) -> None:
    if isinstance(awaitable, types.CoroutineType):
        awaitable.close()
    else:
        awaitable.cancel()


class _Call:
    """Accounting for one call that takes the full path: counters, log records, span.

    The fast path (no policies, no DEBUG logging, no tracer) does its own counting.
    """

    __slots__ = ("attempt", "debug", "name", "recorder", "span", "started")

    def __init__(self, name: str, recorder: NodeRecorder, span: Span | None) -> None:
        self.name = name
        self.recorder = recorder
        self.span = span
        self.attempt = 1
        debug = _debug_cached(_DEBUG)
        self.debug = LOGGER.isEnabledFor(_DEBUG) if debug is None else debug
        if self.debug:
            LOGGER.debug(
                "[%s] Executing",
                name,
                extra=_fields(name, "start", 1, None, None, None),
            )
        self.started = _perf_counter()

    def next_delay(self, policies: NodePolicies, error: Exception) -> float | None:
        """Seconds to wait before retrying after ``error``, or None to give up."""
        delay = retry_delay(policies.retry, error, self.attempt)
        if delay is None:
            return None
        self.recorder.retries += 1
        if LOGGER.isEnabledFor(logging.WARNING):
            LOGGER.warning(
                "[%s] attempt %d failed (%s); retrying in %.3fs",
                self.name,
                self.attempt,
                _describe(error),
                delay,
                extra={
                    **_fields(self.name, "retry", self.attempt, None, _describe(error), None),
                    "delay": delay,
                },
            )
        self.attempt += 1
        return delay

    def timed_out(self, timeout: float, error: NodeTimeoutError) -> None:
        """Count and log an attempt stopped by the node's timeout."""
        self.recorder.timeouts += 1
        if LOGGER.isEnabledFor(logging.WARNING):
            LOGGER.warning(
                "[%s] attempt %d timed out after %gs",
                self.name,
                self.attempt,
                timeout,
                extra=_fields(self.name, "timeout", self.attempt, timeout, _describe(error), None),
            )

    def ended(self, error: BaseException | None) -> None:
        """Record how the call ended (``error`` None: it returned)."""
        duration = _perf_counter() - self.started
        if error is None and not self.debug and self.span is None:
            self.recorder.successes += 1
            self.recorder.finished(duration)
            return
        outcome = _record_end(self.recorder, error, duration)
        if self.debug:
            LOGGER.debug(
                "[%s] %s in %.3fs after %d attempt(s)",
                self.name,
                _END_MESSAGES[outcome],
                duration,
                self.attempt,
                extra=_fields(
                    self.name,
                    "end",
                    self.attempt,
                    duration,
                    None if error is None else _describe(error),
                    outcome,
                ),
            )
        span = self.span
        if span is not None:
            span.set_attribute("act_operator_lib.node.attempts", self.attempt)
            span.set_attribute("act_operator_lib.node.outcome", outcome)
            if outcome in ("failure", "timeout") and error is not None:
                from opentelemetry.trace import Status, StatusCode

                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, _describe(error)))


_END_MESSAGES = {
    "success": "Completed",
    "failure": "Failed",
    "timeout": "Timed out",
    "interrupt": "Interrupted",
    "cancelled": "Cancelled",
}


def _fields(
    node: str,
    event: str,
    attempt: int,
    duration: float | None,
    error: str | None,
    outcome: str | None,
) -> dict[str, Any]:
    return {
        "node": node,
        "event": event,
        "attempt": attempt,
        "duration": duration,
        "error": error,
        "outcome": outcome,
    }


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _outcome(error: BaseException | None) -> str:
    if error is None:
        return "success"
    if isinstance(error, GraphBubbleUp):
        return "interrupt"
    if isinstance(error, NodeTimeoutError):
        return "timeout"
    if isinstance(error, Exception):
        return "failure"
    return "cancelled"


def _record_end(recorder: NodeRecorder, error: BaseException | None, duration: float | None) -> str:
    """Count a finished call in ``recorder`` (with its latency, if timed); return its outcome."""
    outcome = _outcome(error)
    if outcome == "success":
        recorder.successes += 1
        if duration is not None:
            recorder.finished(duration)
    elif outcome in ("failure", "timeout"):
        recorder.failures += 1
        if duration is not None:
            recorder.finished(duration)
    elif outcome == "interrupt":
        recorder.interrupts += 1
    else:
        recorder.cancellations += 1
    return outcome


class BaseNode(_Node):
    """Base class for synchronous nodes: CPU work, simple transforms, sync libraries.

    Example::

        class Uppercase(BaseNode):
            retry = RetryPolicy(max_attempts=3)      # optional

            def execute(self, state):
                return {"text": state["text"].upper()}

    LangGraph runs a sync node in a worker thread under ``ainvoke``, so it never
    blocks the event loop. Of the node policies a sync node takes ``retry`` only
    (backoff waits with ``time.sleep`` in that thread): a thread cannot be cancelled,
    so ``timeout`` is refused, and limiters are awaited, so ``rate_limit`` and
    ``max_concurrency`` are refused too. For those, derive from `AsyncBaseNode` and
    run the blocking part with ``await asyncio.to_thread(...)``.
    """

    _asynchronous = False

    if TYPE_CHECKING:
        # Any of the four documented signatures type-checks in a subclass.
        execute: Callable[..., Any]
    else:

        @abstractmethod
        def execute(self, state):
            """Process ``state`` and return a dict of updates; may also take config, runtime."""

    def __call__(
        self,
        state: Any,
        config: Optional[RunnableConfig] = None,  # noqa: UP045 - LangGraph matches this annotation
        runtime: Runtime[Any] | None = None,
    ) -> Any:
        """Run ``execute`` with the arguments it declares and check its result."""
        recorder = self._fast_recorder
        if (
            recorder is None
            or (_debug_cached(_DEBUG) is not False and _debug_enabled(_DEBUG))
            or tracing.tracer is not None
            or otel_globals._TRACER_PROVIDER is not None
        ):
            return self._call_observed(state, config, runtime)
        # Time one call in FAST_PATH_TIMING_EVERY: two clock reads would cost more
        # than everything else this path adds.
        timed = not recorder.successes & _TIMING_MASK
        started = _perf_counter() if timed else 0.0
        try:
            accepts = self._accepts
            if accepts == 0:
                result = self.execute(state)
            elif accepts == ACCEPTS_CONFIG:
                result = self.execute(state, config=config)
            elif accepts == ACCEPTS_RUNTIME:
                result = self.execute(state, runtime=streaming.to_node_runtime(runtime))
            else:
                result = self.execute(
                    state, config=config, runtime=streaming.to_node_runtime(runtime)
                )
            result = self._checked(result)
        except BaseException as error:
            _record_end(recorder, error, _perf_counter() - started if timed else None)
            raise
        recorder.successes += 1
        if timed:
            recorder.finished(_perf_counter() - started)
        return result

    def _call_observed(
        self, state: Any, config: RunnableConfig | None, runtime: Runtime[Any] | None
    ) -> Any:
        """The full path: retries, log records and a span around the whole call."""
        recorder = self._recorder or self._set_up({})
        policies = self._policies or _NO_POLICIES
        tracer = current_tracer()
        if tracer is None:
            return self._run(_Call(self.name, recorder, None), policies, state, config, runtime)
        with tracer.start_as_current_span(
            self.name,
            attributes={"act_operator_lib.node.name": self.name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            return self._run(_Call(self.name, recorder, span), policies, state, config, runtime)

    def _run(
        self,
        call: _Call,
        policies: NodePolicies,
        state: Any,
        config: RunnableConfig | None,
        runtime: Runtime[Any] | None,
    ) -> Any:
        try:
            while True:
                try:
                    result = self._checked(self._execute(state, config, runtime))
                except Exception as error:
                    delay = call.next_delay(policies, error)
                    if delay is None:
                        raise
                    time.sleep(delay)
                else:
                    break
        except BaseException as error:
            call.ended(error)
            raise
        call.ended(None)
        return result


class AsyncBaseNode(_Node):
    """Base class for asynchronous nodes: HTTP and database calls, concurrent I/O.

    Example::

        class Fetch(AsyncBaseNode):
            timeout = 10                                # seconds per attempt
            retry = RetryPolicy(max_attempts=3, retry_on=httpx.TransportError)
            rate_limit = RateLimiter(50)                # shared by every call
            max_concurrency = 8                         # at once, across all runs

            async def execute(self, state):
                data = await fetch_json(state["url"])
                return {"data": data}

        Fetch(timeout=30)                               # a keyword beats the class value

    Each attempt, in this order: take a ``max_concurrency`` slot, then a
    ``rate_limit`` token, then run ``execute`` under ``timeout``; the slot is given
    back before a retry's backoff. On timeout the attempt is cancelled (the node's
    ``except CancelledError: ...; raise`` cleanup runs and is awaited) and
    `NodeTimeoutError` (a ``TimeoutError``) is raised; with the default ``retry_on``
    it is retried. Never retried: LangGraph control flow (``interrupt()``,
    ``Command(graph=PARENT)``), cancellation, `NodeDefinitionError` and
    `NodeResultError`. An exception with ``retry_after`` (seconds) sets the next delay.

    These policies run inside the attempt LangGraph makes, so they stack with
    ``add_node(..., retry_policy=..., timeout=...)``: set each policy in one place;
    a retry here and a ``retry_policy`` there multiply the attempts.
    """

    _asynchronous = True

    if TYPE_CHECKING:
        execute: Callable[..., Awaitable[Any]]
    else:

        @abstractmethod
        async def execute(self, state):
            """Process ``state`` and return a dict of updates; may also take config, runtime."""

    async def __call__(
        self,
        state: Any,
        config: Optional[RunnableConfig] = None,  # noqa: UP045 - LangGraph matches this annotation
        runtime: Runtime[Any] | None = None,
    ) -> Any:
        """Await ``execute`` with the arguments it declares and check its result."""
        recorder = self._fast_recorder
        if (
            recorder is None
            or (_debug_cached(_DEBUG) is not False and _debug_enabled(_DEBUG))
            or tracing.tracer is not None
            or otel_globals._TRACER_PROVIDER is not None
        ):
            return await self._call_observed(state, config, runtime)
        # Time one call in FAST_PATH_TIMING_EVERY: two clock reads would cost more
        # than everything else this path adds.
        timed = not recorder.successes & _TIMING_MASK
        started = _perf_counter() if timed else 0.0
        try:
            accepts = self._accepts
            if accepts == 0:
                result = await self.execute(state)
            elif accepts == ACCEPTS_CONFIG:
                result = await self.execute(state, config=config)
            elif accepts == ACCEPTS_RUNTIME:
                result = await self.execute(state, runtime=streaming.to_node_runtime(runtime))
            else:
                result = await self.execute(
                    state, config=config, runtime=streaming.to_node_runtime(runtime)
                )
            result = self._checked(result)
        except BaseException as error:
            _record_end(recorder, error, _perf_counter() - started if timed else None)
            raise
        recorder.successes += 1
        if timed:
            recorder.finished(_perf_counter() - started)
        return result

    async def _call_observed(
        self, state: Any, config: RunnableConfig | None, runtime: Runtime[Any] | None
    ) -> Any:
        """The full path: policies, log records and a span around the whole call."""
        recorder = self._recorder or self._set_up({})
        policies = self._policies or _NO_POLICIES
        tracer = current_tracer()
        if tracer is None:
            call = _Call(self.name, recorder, None)
            return await self._run(call, policies, state, config, runtime)
        with tracer.start_as_current_span(
            self.name,
            attributes={"act_operator_lib.node.name": self.name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            call = _Call(self.name, recorder, span)
            return await self._run(call, policies, state, config, runtime)

    async def _run(
        self,
        call: _Call,
        policies: NodePolicies,
        state: Any,
        config: RunnableConfig | None,
        runtime: Runtime[Any] | None,
    ) -> Any:
        # Every attempt runs in this one coroutine frame (a frame per policy layer,
        # and an `asyncio.timeout` with its own timer per attempt, cost several us).
        # Each attempt, in order: concurrency slot -> rate token -> timeout -> execute;
        # the slot is given back before the backoff.
        recorder = call.recorder
        slots = policies.max_concurrency
        rate_limit = policies.rate_limit
        timeout = policies.timeout
        try:
            while True:
                try:
                    if slots is None and rate_limit is None and timeout is None:
                        result = self._checked(await self._execute(state, config, runtime))
                        break
                    loop = _get_running_loop()
                    if slots is not None:
                        asked = loop.time()
                        await slots.acquire()
                        recorder.concurrency_wait += loop.time() - asked
                    try:
                        if rate_limit is not None:
                            asked = loop.time()
                            await rate_limit.acquire()
                            recorder.rate_limit_wait += loop.time() - asked
                        if timeout is None:
                            result = await self._execute(state, config, runtime)
                        else:
                            # What `async with asyncio.timeout(timeout)` would do, on
                            # the node's one timer (see AttemptDeadlines).
                            task = _current_task()
                            if task is None:
                                raise RuntimeError("Timeout should be used inside a task")
                            deadlines = self._deadlines
                            if deadlines is None or deadlines.loop is not loop:
                                deadlines = self._deadlines = AttemptDeadlines(loop, timeout)
                            cancelling = task.cancelling()
                            attempt = deadlines.start(task)
                            try:
                                result = await self._execute(state, config, runtime)
                            except BaseException as error:
                                if not deadlines.finish(attempt):
                                    raise
                                outside = task.uncancel() > cancelling
                                timed_out = self._timed_out(call, timeout, error, outside)
                                if timed_out is None:
                                    raise
                                raise timed_out  # noqa: B904 - its __cause__ is set
                            if deadlines.finish(attempt):
                                task.uncancel()
                        result = self._checked(result)
                    finally:
                        if slots is not None:
                            await slots.release()
                    break
                except Exception as error:
                    delay = call.next_delay(policies, error)
                    if delay is None:
                        raise
                    await asyncio.sleep(delay)
        except BaseException as error:
            call.ended(error)
            raise
        call.ended(None)
        return result

    def _timed_out(
        self, call: _Call, timeout: float, error: BaseException, cancelled_from_outside: bool
    ) -> NodeTimeoutError | None:
        """The error for an attempt the deadline cancelled, or None to let ``error`` through.

        As ``asyncio.timeout``: the deadline's cancellation becomes a ``TimeoutError``
        unless the attempt was also cancelled from outside; a ``TimeoutError`` the
        attempt raised after its deadline counts as the timeout too.
        """
        if not cancelled_from_outside and type(error) is _CancelledError:
            try:
                raise TimeoutError from error
            except TimeoutError as timeout_error:
                error = timeout_error
        if not isinstance(error, TimeoutError):
            return None
        timed_out = NodeTimeoutError(self.name, timeout)
        call.timed_out(timeout, timed_out)
        timed_out.__cause__ = error
        return timed_out
