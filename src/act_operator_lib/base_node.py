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
``timeout``, ``retry``, ``rate_limiter`` and ``max_concurrency`` (see `AsyncBaseNode`
and docs/policies.md), run by the one attempt loop in `act_operator_lib._retry`.
Every call is counted (`statistics`) and told to the observers of
`act_operator_lib.observability` (log records, OpenTelemetry spans, your own).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import types
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Command, RetryPolicy, TimeoutPolicy

from act_operator_lib import streaming
from act_operator_lib._blocking import default_detection, recognise_nodes, watch_running_loop
from act_operator_lib._errors import MissingAwaitError, NodeResultError, NodeTimeoutError
from act_operator_lib._interrupts import reuse_interrupt_answers
from act_operator_lib._policies import (
    POLICY_NAMES,
    RENAMED_POLICIES,
    NodePolicies,
    check_misspelled_policies,
    check_renamed_policy,
    resolve_policies,
)
from act_operator_lib._retry import CallPolicy, run_attempts, run_attempts_sync
from act_operator_lib._signature import ACCEPTS_CONFIG, ACCEPTS_RUNTIME, check_execute
from act_operator_lib._validation import boolean
from act_operator_lib.limits import SupportsAcquire, SupportsRelease
from act_operator_lib.observability import (
    LOGGER,
    NodeCallObserver,
    NodeRecorder,
    NodeStatistics,
    observers,
    outcome_of,
)

__all__ = ["AsyncBaseNode", "BaseNode"]

_NODE_OPTIONS = ("name", "verbose", *POLICY_NAMES)
_AWAITABLES = (types.CoroutineType, asyncio.Future)
_CONTAINERS = frozenset((list, tuple, dict))
_DEBUG = logging.DEBUG
_perf_counter = time.perf_counter
_get_ident = threading.get_ident
_watch_of_thread = default_detection.by_thread.get
_debug_enabled = LOGGER.isEnabledFor


class _Node(ABC):
    """What `BaseNode` and `AsyncBaseNode` share; not meant to be subclassed directly."""

    name: str
    """The node's name: the class name unless ``name=`` is given.

    Statistics, log records and spans use it when it was given; otherwise, inside a
    graph, the graph node's name (``add_node("fetch", Fetch())`` -> ``"fetch"``).
    """
    verbose: bool = False
    """Whether `log` writes anything."""
    timeout: float | timedelta | TimeoutPolicy | None = None
    """Seconds each attempt may run before it is cancelled (AsyncBaseNode only)."""
    retry: RetryPolicy | tuple[RetryPolicy, ...] | list[RetryPolicy] | None = None
    """LangGraph `RetryPolicy` (or several, first match wins) for failed attempts."""
    rate_limiter: SupportsAcquire | None = None
    """A rate limiter every attempt takes a token from (AsyncBaseNode only)."""
    max_concurrency: int | SupportsRelease | None = None
    """At most this many attempts at once, in every run (AsyncBaseNode only)."""

    _accepts: ClassVar[int] = 0
    if TYPE_CHECKING:
        execute: Callable[..., Any]
    _asynchronous: ClassVar[bool]
    # Set by __init__; None on an instance whose subclass skipped super().__init__(),
    # which then sets itself up from the class attributes on its first call.
    _policies: NodePolicies | None = None
    # The same policies as the retry engine runs them; None when there are none.
    _call_policy: CallPolicy | None = None
    _recorder: NodeRecorder | None = None
    _quiet: _QuietCall | None = None
    # Whether `name` was chosen (``name=`` or a class attribute) rather than defaulted:
    # a defaulted name follows the graph node's name.
    _name_given: bool = False

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._name_given = "name" in vars(cls)
        if not cls._name_given:
            cls.name = cls.__name__
        if cls.__module__ == __name__:
            return
        for old, option in RENAMED_POLICIES.items():
            if old in vars(cls):
                owner = f"class {cls.__qualname__}"
                check_renamed_policy(owner, old, both=option in vars(cls), at_definition=True)
                setattr(cls, option, vars(cls)[old])
        check_misspelled_policies(f"class {cls.__qualname__}", vars(cls))
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
            name: The node's name in logs, spans, errors and statistics (default: the
                graph node's name inside a graph, else the class name).
            verbose: Whether `log` writes debug records (default False).
            timeout: Seconds (or a LangGraph ``TimeoutPolicy`` with ``run_timeout``) each
                attempt may run; AsyncBaseNode only.
            retry: A LangGraph ``RetryPolicy``, or a list of them (first match wins).
            rate_limiter: A limiter each attempt takes a token from; AsyncBaseNode only.
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
        for old, option in RENAMED_POLICIES.items():
            if old in kwargs:
                owner = type(self).__qualname__
                check_renamed_policy(owner, old, both=option in overrides, at_definition=False)
                overrides[option] = kwargs.pop(old)
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
            self._name_given = True
        else:
            self.name = type(self).name
        self.verbose = boolean(type(self).__qualname__, "verbose", verbose, show_value=False)
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
        self._call_policy = None if self._policies is None else self._policies.call_policy()
        recorder = self._recorder = NodeRecorder(self.name)
        return recorder

    def _begin(self, config: RunnableConfig | None, now: float) -> _Call | _QuietCall | None:
        """Start observing a call that starts ``now``; None when it may take the plain path.

        The plain path (both node kinds' one fast path) is for a node without
        policies while nobody watches: no observer added, no tracer, no DEBUG logging.
        A node with policies then reports to its counters and to the log observer's
        WARNING records only (`_QuietCall`, one per node); otherwise every observer
        follows the call (`_Call`).
        """
        recorder = self._recorder or self._set_up({})
        if config and not self._name_given:
            metadata = config.get("metadata")
            if metadata:
                graph_name = metadata.get("langgraph_node")
                if graph_name and graph_name != recorder.name:
                    recorder.name = graph_name
        if now >= observers.global_checked_until:
            observers.look_for_global_provider(now)
        if not observers.watching and not _debug_enabled(_DEBUG):
            if self._call_policy is None:
                return None
            quiet = self._quiet
            if quiet is None or quiet.name != recorder.name:
                quiet = self._quiet = _QuietCall(recorder, observers.start(recorder.name))
            return quiet
        return _Call(recorder, observers.start(recorder.name))

    def _failed(
        self, call: _Call | _QuietCall | None, started: float, error: BaseException
    ) -> None:
        """Record that the call which began at ``started`` raised ``error``.

        ``call`` is what `_begin` returned: None on the plain path, which tells the
        node's recorder only. (A success is recorded inline by each ``__call__``: a
        method call there would cost the plain path about 4%.)
        """
        if call is None:
            recorder: NodeRecorder = self._recorder  # type: ignore[assignment]
            recorder.call_ended(outcome_of(error), error, _perf_counter() - started, 1)
        else:
            call.ended(error, started)

    def _timeout_error(self, seconds: float) -> NodeTimeoutError:
        return NodeTimeoutError(self.name, seconds)

    @property
    def observed_name(self) -> str:
        """The name statistics, log records, spans and block warnings use for this node.

        `name` when it was given; otherwise the graph node's name once the node has
        run in a graph, else the class name.

        Example::

            builder.add_node("check_api", CheckAPI())   # observed_name: "check_api"
        """
        recorder = self._recorder
        return self.name if recorder is None else recorder.name

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
        name = (self._recorder or self._set_up({})).name
        LOGGER.debug(
            "[%s] %s%s",
            name,
            message,
            "".join(f" {key}={value!r}" for key, value in context.items()),
            extra={"node": name, "context": context},
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
        from act_operator_lib.resources import aclose_resources

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
                if isinstance(value, _AWAITABLES) or (
                    type(value) in _CONTAINERS and _holds_awaitable(value)
                ):
                    raise _missing_await(self.name, result)
            return result
        if result is None or isinstance(result, Command):
            return result
        return self._checked_other(result)

    def _checked_other(self, result: Any) -> Any:
        if isinstance(result, dict):
            self._checked(dict(result))
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


def _holds_awaitable(container: Any) -> bool:
    """Whether a list, tuple or dict value of an update starts or ends with an awaitable.

    The ends only, so the check costs the same for any size: a forgotten ``await``
    in a comprehension (``[fetch(url) for url in urls]``) leaves every item one.
    """
    if not container:
        return False
    if type(container) is dict:
        values = container.values()
        first, last = next(iter(values)), next(reversed(values))
    else:
        first, last = container[0], container[-1]
    return isinstance(first, _AWAITABLES) or isinstance(last, _AWAITABLES)


def _missing_await(node: str, result: Any) -> MissingAwaitError:
    """Close or cancel the stray awaitables in ``result`` and build the error naming them."""
    if isinstance(result, dict):
        keys = []
        kinds = set()
        for key, value in result.items():
            found = _discard_all(value)
            if found:
                keys.append(key)
                kinds.update(found)
        inside = ", ".join(repr(key) for key in keys)
        where = f"the value of {inside} {'holds' if len(keys) == 1 else 'hold'}"
    else:
        kinds = set(_discard_all(result))
        where = "it returned"
    what = " and ".join(sorted(kinds))
    return MissingAwaitError(
        f"node {node!r}: {where} {what}; did you forget await? Write "
        "`result = await operation()` (for several, `await asyncio.gather(...)`) and "
        "return the results."
    )


def _discard_all(value: Any) -> list[str]:
    """Close or cancel ``value`` if awaitable, or the awaitables in it; say what they were."""
    if isinstance(value, _AWAITABLES):
        return [_discard(value)]
    if type(value) in _CONTAINERS:
        items = value.values() if type(value) is dict else value
        return [_discard(item) for item in items if isinstance(item, _AWAITABLES)]
    return []


def _discard(awaitable: Any) -> str:
    """Close an un-awaited coroutine or cancel a future so nothing warns; name its kind."""
    if isinstance(awaitable, types.CoroutineType):
        awaitable.close()
        return "an un-awaited coroutine"
    awaitable.cancel()
    # A cancelled gather() keeps its children's CancelledError as its exception;
    # retrieving it keeps asyncio from logging "exception was never retrieved".
    awaitable.add_done_callback(_retrieve)
    if isinstance(awaitable, asyncio.Task):
        return "an un-awaited task"
    return "an un-awaited future (e.g. asyncio.gather(...))"


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _QuietCall:
    """Tells a node's counters and the call's followers what happens to its attempts.

    As it is, it observes the calls of one node while nobody watches and DEBUG is
    off, shared by them all: the only followers are then the log observer's quiet
    ones, which write WARNING records for retries and timeouts and nothing else, so
    waits and ends go to the counters alone and no call needs an object of its own.
    """

    __slots__ = ("following", "name", "recorder")

    def __init__(self, recorder: NodeRecorder, following: tuple[NodeCallObserver, ...]) -> None:
        self.recorder = recorder
        self.following = following
        self.name = recorder.name

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        if seconds:  # a grant at once adds nothing to the node's wait totals
            self.recorder.waited(kind, seconds)

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        self.recorder.retrying(attempt, error, delay)
        for observer in self.following:
            observer.retrying(attempt, error, delay)

    def timed_out(self, attempt: int, timeout: float) -> None:
        self.recorder.timed_out(attempt, timeout)
        for observer in self.following:
            observer.timed_out(attempt, timeout)

    def ended(self, error: BaseException | None, started: float) -> None:
        """Record how the call that began at ``started`` ended (``error`` None: it returned)."""
        outcome = "success" if error is None else outcome_of(error)
        # The counters do not use the attempt count, which a shared object cannot keep.
        self.recorder.call_ended(outcome, error, _perf_counter() - started, 1)


class _Call(_QuietCall):
    """One observed node call: every follower hears every event, and the attempts are counted."""

    __slots__ = ("attempts",)

    def __init__(self, recorder: NodeRecorder, following: tuple[NodeCallObserver, ...]) -> None:
        super().__init__(recorder, following)
        self.attempts = 1

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        super().waited(kind, seconds)
        for observer in self.following:
            observer.waited(kind, seconds)

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        self.attempts = attempt + 1
        super().retrying(attempt, error, delay)

    def ended(self, error: BaseException | None, started: float) -> None:
        duration = _perf_counter() - started
        outcome = "success" if error is None else outcome_of(error)
        self.recorder.call_ended(outcome, error, duration, self.attempts)
        for observer in reversed(self.following):
            observer.call_ended(outcome, error, duration, self.attempts)


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
    so ``timeout`` is refused, and limiters are awaited, so ``rate_limiter`` and
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
        """Run ``execute`` with the arguments it declares, under the policies, and check it."""
        started = _perf_counter()
        call = self._begin(config, started)
        try:
            # Checked once, after the attempts: a bad result is never retried. Without
            # policies (always so on the plain path) there is nothing for the engine to do.
            if call is None or (policy := self._call_policy) is None:
                result = self._checked(self._execute(state, config, runtime))
            else:
                result = self._checked(
                    run_attempts_sync(
                        policy,
                        partial(self._execute, state, config, runtime),
                        observer=call,
                        before_retry=reuse_interrupt_answers,
                    )
                )
        except BaseException as error:
            self._failed(call, started, error)
            raise
        if call is None:
            recorder: NodeRecorder = self._recorder  # type: ignore[assignment]
            recorder.successes += 1
            recorder.finished(_perf_counter() - started)
        else:
            call.ended(None, started)
        return result


class AsyncBaseNode(_Node):
    """Base class for asynchronous nodes: HTTP and database calls, concurrent I/O.

    Example::

        class Fetch(AsyncBaseNode):
            timeout = 10                                # seconds per attempt
            retry = RetryPolicy(max_attempts=3, retry_on=httpx.TransportError)
            rate_limiter = RateLimiter(50)              # shared by every call
            max_concurrency = 8                         # at once, across all runs

            async def execute(self, state):
                data = await fetch_json(state["url"])
                return {"data": data}

        Fetch(timeout=30)                               # a keyword beats the class value

    Each attempt, in this order: take a ``max_concurrency`` slot, then a
    ``rate_limiter`` token, then run ``execute`` under ``timeout``; the slot is given
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
        """Await ``execute`` with the arguments it declares, under the policies, and check it."""
        watch = _watch_of_thread(_get_ident())
        if watch is None or watch.loop_closed():
            watch_running_loop()
        started = _perf_counter()
        call = self._begin(config, started)
        try:
            # Checked once, after the attempts: a bad result is never retried. Without
            # policies (always so on the plain path) there is nothing for the engine to do.
            if call is None or (policy := self._call_policy) is None:
                result = self._checked(await self._execute(state, config, runtime))
            else:
                result = self._checked(
                    await run_attempts(
                        policy,
                        partial(self._execute, state, config, runtime),
                        timeout_error=self._timeout_error,
                        observer=call,
                        before_retry=reuse_interrupt_answers,
                    )
                )
        except BaseException as error:
            self._failed(call, started, error)
            raise
        if call is None:
            recorder: NodeRecorder = self._recorder  # type: ignore[assignment]
            recorder.successes += 1
            recorder.finished(_perf_counter() - started)
        else:
            call.ended(None, started)
        return result


recognise_nodes(AsyncBaseNode, BaseNode)
