"""What every node did: statistics, structured log records, OpenTelemetry spans, your own hooks.

Every `BaseNode` / `AsyncBaseNode` counts its calls, outcomes, retries, timeouts and
time spent waiting for its limiters, and keeps its recent latencies::

    stats = node.statistics()               # this node instance
    print(stats.calls, stats.failures, stats.latency_p95)

    for name, stats in observability.snapshot().items():   # every live node
        print(name, stats.successes, stats.rate_limit_wait)

Instrumentation is a set of observers of node calls (`NodeObserver`): the library's
own write log records to the ``act_operator_lib.node`` logger (start and end at
DEBUG, retry and timeout at WARNING) and, with OpenTelemetry installed and a tracer
provider set, one span per call. Add your own (metrics, audit) with `add_observer`::

    class CountCalls:
        def call_started(self, node):
            return Counted(node)            # told about this call, or None to skip it

    observability.add_observer(CountCalls())

Inside a graph a node is named after its graph node (``add_node("fetch", Fetch())``
reports ``"fetch"``) unless it was given ``name=``; called directly, after its class.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langgraph.errors import GraphBubbleUp

from act_operator_lib._errors import NodeTimeoutError

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.trace import Span, Tracer, TracerProvider

try:
    from opentelemetry import context as _otel_context
    from opentelemetry import trace as _otel_trace
except ImportError:  # the `otel` extra is not installed: no spans
    _otel_trace = None  # type: ignore[assignment]
    _otel_context = None  # type: ignore[assignment]

__all__ = [
    "NodeCallObserver",
    "NodeObserver",
    "NodeStatistics",
    "Outcome",
    "add_observer",
    "remove_observer",
    "set_tracer_provider",
    "snapshot",
]

LOGGER = logging.getLogger("act_operator_lib.node")

LATENCY_SAMPLES = 1024
"""How many recent call latencies each node keeps for its percentiles."""

FAST_PATH_TIMING_EVERY = 1
"""Every call is timed (one in this many); percentiles come from every call."""

TRACER_NAME = "act_operator_lib"
"""The instrumentation scope of the spans (``tracer_provider.get_tracer(TRACER_NAME)``)."""

GLOBAL_PROVIDER_CHECK_EVERY = 1.0
"""Seconds between looks for a global tracer provider set after nodes started running."""

Outcome = Literal["success", "failure", "timeout", "interrupt", "cancelled"]
"""How a node call ended: returned, raised, timed out (last attempt), LangGraph control
flow (``interrupt()``, ``Command(graph=PARENT)``), or cancelled from outside."""


class NodeCallObserver(Protocol):
    """Told what happens during one node call; returned by `NodeObserver.call_started`.

    Example::

        class Counted:
            def __init__(self, node): self.node = node
            def waited(self, kind, seconds): ...
            def retrying(self, attempt, error, delay): ...
            def timed_out(self, attempt, timeout): ...
            def call_ended(self, outcome, error, duration, attempts):
                CALLS.labels(self.node, outcome).inc()
    """

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        """An attempt waited ``seconds`` for a ``max_concurrency`` slot or a rate token."""

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        """Attempt ``attempt`` failed with ``error``; the next one starts in ``delay`` seconds."""

    def timed_out(self, attempt: int, timeout: float) -> None:
        """Attempt ``attempt`` ran past the node's ``timeout`` (seconds) and was cancelled."""

    def call_ended(
        self, outcome: Outcome, error: BaseException | None, duration: float, attempts: int
    ) -> None:
        """The call ended: ``error`` is what it raised (None if it returned)."""


class NodeObserver(Protocol):
    """Told about every node call in the process; register one with `add_observer`.

    ``call_started`` runs when a call begins, in the caller's context (a span made
    current there is current while the node runs); it returns the object told about
    the rest of this call, or None to ignore it. Observers must not raise.

    Example::

        class PrintCalls:
            def call_started(self, node: str) -> NodeCallObserver | None:
                print("calling", node)
                return None

        observability.add_observer(PrintCalls())
    """

    def call_started(self, node: str) -> NodeCallObserver | None:
        """A call of the node named ``node`` begins."""


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    """A snapshot of one node's activity, returned by ``node.statistics()``.

    Example::

        stats = node.statistics()
        assert stats.calls == (
            stats.successes + stats.failures + stats.interrupts + stats.cancellations
        )

    Durations are seconds. Latencies are those of finished calls (successes and
    failures), from entry to return, so they include limiter waits, every attempt
    and the backoff between attempts; percentiles are over the last
    `LATENCY_SAMPLES` of them and are ``None`` before the first finished call.
    """

    node: str
    """The node's name."""
    calls: int
    """Calls finished, whatever the outcome (a call still running is not counted yet)."""
    successes: int
    """Calls that returned a result."""
    failures: int
    """Calls that raised an exception (after their last attempt), timeouts included."""
    interrupts: int
    """Calls that ended in LangGraph control flow: ``interrupt()``, ``Command(graph=PARENT)``."""
    cancellations: int
    """Calls cancelled from outside (the run was cancelled, or LangGraph's own timeout)."""
    timeouts: int
    """Attempts stopped by the node's ``timeout`` (a retried attempt counts too)."""
    retries: int
    """Attempts after the first, summed over all calls."""
    rate_limit_wait: float
    """Seconds spent waiting for the ``rate_limiter``, summed (event-loop clock)."""
    concurrency_wait: float
    """Seconds spent waiting for a ``max_concurrency`` slot, summed (event-loop clock)."""
    latency_p50: float | None
    """Median latency of recent finished calls."""
    latency_p95: float | None
    """95th-percentile latency of recent finished calls."""
    latency_max: float | None
    """Longest latency of recent finished calls."""


class NodeRecorder:
    """The counters behind `NodeStatistics`; one per node instance, told about each call.

    No lock: a call costs a few attribute increments, which the GIL keeps whole
    even when LangGraph runs a sync node in several worker threads at once (on a
    free-threaded build such counts may be approximate).
    """

    __slots__ = (
        "__weakref__",
        "cancellations",
        "concurrency_wait",
        "failures",
        "finished",
        "interrupts",
        "latencies",
        "name",
        "rate_limit_wait",
        "retries",
        "successes",
        "timeouts",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.successes = 0
        self.failures = 0
        self.interrupts = 0
        self.cancellations = 0
        self.timeouts = 0
        self.retries = 0
        self.rate_limit_wait = 0.0
        self.concurrency_wait = 0.0
        self.latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.finished: Callable[[float], None] = self.latencies.append
        """Keep the latency of a finished call (the oldest sample drops out)."""
        _recorders.add(self)

    def statistics(self) -> NodeStatistics:
        """A frozen snapshot of the counters."""
        return _merge(self.name, [self])

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        if kind == "rate":
            self.rate_limit_wait += seconds
        else:
            self.concurrency_wait += seconds

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        self.retries += 1

    def timed_out(self, attempt: int, timeout: float) -> None:
        self.timeouts += 1

    def call_ended(
        self, outcome: Outcome, error: BaseException | None, duration: float, attempts: int
    ) -> None:
        if outcome == "success":
            self.successes += 1
            self.finished(duration)
        elif outcome == "interrupt":
            self.interrupts += 1
        elif outcome == "cancelled":
            self.cancellations += 1
        else:
            self.failures += 1
            self.finished(duration)


def outcome_of(error: BaseException | None) -> Outcome:
    """How a call that raised ``error`` (None: returned) ended."""
    if error is None:
        return "success"
    if isinstance(error, GraphBubbleUp):
        return "interrupt"
    if isinstance(error, NodeTimeoutError):
        return "timeout"
    if isinstance(error, Exception):
        return "failure"
    return "cancelled"


_recorders: weakref.WeakSet[NodeRecorder] = weakref.WeakSet()


def snapshot() -> dict[str, NodeStatistics]:
    """Statistics of every live node in the process, by node name.

    Node instances that share a name (two ``Fetch()`` without ``name=``) are reported
    together: counts and waits summed, latencies pooled.

    Example::

        for name, stats in observability.snapshot().items():
            print(f"{name}: {stats.calls} calls, p95 {stats.latency_p95}")
    """
    by_name: dict[str, list[NodeRecorder]] = {}
    for recorder in list(_recorders):
        by_name.setdefault(recorder.name, []).append(recorder)
    return {name: _merge(name, group) for name, group in sorted(by_name.items())}


def _merge(name: str, recorders: list[NodeRecorder]) -> NodeStatistics:
    successes = failures = interrupts = cancellations = timeouts = retries = 0
    rate_limit_wait = concurrency_wait = 0.0
    samples: list[float] = []
    for recorder in recorders:
        successes += recorder.successes
        failures += recorder.failures
        interrupts += recorder.interrupts
        cancellations += recorder.cancellations
        timeouts += recorder.timeouts
        retries += recorder.retries
        rate_limit_wait += recorder.rate_limit_wait
        concurrency_wait += recorder.concurrency_wait
        samples.extend(recorder.latencies)
    samples.sort()
    return NodeStatistics(
        node=name,
        calls=successes + failures + interrupts + cancellations,
        successes=successes,
        failures=failures,
        interrupts=interrupts,
        cancellations=cancellations,
        timeouts=timeouts,
        retries=retries,
        rate_limit_wait=rate_limit_wait,
        concurrency_wait=concurrency_wait,
        latency_p50=_percentile(samples, 0.50),
        latency_p95=_percentile(samples, 0.95),
        latency_max=samples[-1] if samples else None,
    )


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an ordered list."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def add_observer(observer: NodeObserver) -> None:
    """Tell ``observer`` about every node call from now on (see `NodeObserver`).

    Example::

        observability.add_observer(PrometheusObserver())
    """
    if not callable(getattr(observer, "call_started", None)):
        raise TypeError(
            "add_observer(observer=...) must have a call_started(node) method "
            f"(see observability.NodeObserver), got {type(observer).__name__}"
        )
    if observer not in observers.added:
        observers.added = (*observers.added, observer)
    observers.refresh()


def remove_observer(observer: NodeObserver) -> None:
    """Stop telling ``observer`` about node calls; nothing happens if it was not added.

    Example::

        observability.remove_observer(observer)
    """
    observers.added = tuple(added for added in observers.added if added is not observer)
    observers.refresh()


def set_tracer_provider(provider: TracerProvider | None) -> None:
    """Send node spans to ``provider`` rather than OpenTelemetry's global provider.

    ``None`` goes back to the global provider (the default: spans are made once the
    application calls ``opentelemetry.trace.set_tracer_provider``). Useful when the
    global provider cannot be set (it can be set only once per process), e.g. in
    tests::

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        observability.set_tracer_provider(provider)
    """
    if provider is None:
        observers.tracer = None
        observers.global_checked_until = 0.0
        observers.refresh()
        return
    if not callable(getattr(provider, "get_tracer", None)):
        raise TypeError(
            "set_tracer_provider(provider=...) must be an OpenTelemetry TracerProvider "
            f"(or None for the global one), got {type(provider).__name__}"
        )
    observers.tracer = provider.get_tracer(TRACER_NAME, _VERSION)
    observers.refresh()


try:
    _VERSION: str | None = metadata.version("act-operator-lib")
except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
    _VERSION = None


class _Observers:
    """Who is told about node calls; read by every node call.

    ``watching`` is True when a call must be observed even without policies: an
    observer was added or a tracer is known. A node call also looks at DEBUG logging
    (one ``isEnabledFor``) and, once per `GLOBAL_PROVIDER_CHECK_EVERY` seconds until
    one is found, for a global tracer provider (looking costs about a microsecond).
    """

    __slots__ = ("added", "all", "global_checked_until", "tracer", "watching")

    def __init__(self) -> None:
        self.added: tuple[NodeObserver, ...] = ()
        self.tracer: Tracer | None = None
        self.global_checked_until = 0.0
        self.all: tuple[NodeObserver, ...] = ()
        self.watching = False
        self.refresh()

    def refresh(self) -> None:
        builtin: tuple[NodeObserver, ...] = (_LOGS,) if self.tracer is None else (_LOGS, _SPANS)
        self.all = builtin + self.added
        self.watching = bool(self.added) or self.tracer is not None

    def look_for_global_provider(self, now: float) -> None:
        """Start tracing if a global tracer provider was set (the check costs ~1 us)."""
        self.global_checked_until = now + GLOBAL_PROVIDER_CHECK_EVERY
        if _otel_trace is None or self.tracer is not None:
            return
        provider = _otel_trace.get_tracer_provider()
        if isinstance(provider, _otel_trace.ProxyTracerProvider):
            return
        # The global provider can be set only once, so once found it is kept.
        self.tracer = provider.get_tracer(TRACER_NAME, _VERSION)
        self.refresh()

    def start(self, node: str) -> tuple[NodeCallObserver, ...]:
        """Tell every observer that a call of ``node`` begins; return those who follow it."""
        following = []
        for observer in self.all:
            call = observer.call_started(node)
            if call is not None:
                following.append(call)
        return tuple(following)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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


_END_MESSAGES = {
    "success": "Completed",
    "failure": "Failed",
    "timeout": "Timed out",
    "interrupt": "Interrupted",
    "cancelled": "Cancelled",
}


class _LoggedCall:
    """One call's log records: retry and timeout at WARNING, start and end at DEBUG."""

    __slots__ = ("debug", "node")

    def __init__(self, node: str, debug: bool) -> None:
        self.node = node
        self.debug = debug

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        pass

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        if LOGGER.isEnabledFor(logging.WARNING):
            LOGGER.warning(
                "[%s] attempt %d failed (%s); retrying in %.3fs",
                self.node,
                attempt,
                _describe(error),
                delay,
                extra={
                    **_fields(self.node, "retry", attempt, None, _describe(error), None),
                    "delay": delay,
                },
            )

    def timed_out(self, attempt: int, timeout: float) -> None:
        if LOGGER.isEnabledFor(logging.WARNING):
            LOGGER.warning(
                "[%s] attempt %d timed out after %gs",
                self.node,
                attempt,
                timeout,
                extra=_fields(
                    self.node,
                    "timeout",
                    attempt,
                    timeout,
                    f"NodeTimeoutError: timed out after {timeout:g}s",
                    None,
                ),
            )

    def call_ended(
        self, outcome: Outcome, error: BaseException | None, duration: float, attempts: int
    ) -> None:
        if not self.debug:
            return
        LOGGER.debug(
            "[%s] %s in %.3fs after %d attempt(s)",
            self.node,
            _END_MESSAGES[outcome],
            duration,
            attempts,
            extra=_fields(
                self.node,
                "end",
                attempts,
                duration,
                None if error is None else _describe(error),
                outcome,
            ),
        )


class _LogObserver:
    """Writes each call's records to the ``act_operator_lib.node`` logger."""

    def __init__(self) -> None:
        # Without DEBUG a call's records depend on its node only: one object per node.
        self._quiet: dict[str, _LoggedCall] = {}

    def call_started(self, node: str) -> _LoggedCall:
        if not LOGGER.isEnabledFor(logging.DEBUG):
            quiet = self._quiet.get(node)
            if quiet is None:
                quiet = self._quiet[node] = _LoggedCall(node, debug=False)
            return quiet
        LOGGER.debug("[%s] Executing", node, extra=_fields(node, "start", 1, None, None, None))
        return _LoggedCall(node, debug=True)


class _TracedCall:
    """One call's span, current while the node runs."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span, token: Token[Any]) -> None:
        self.span = span
        self.token = token

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        pass

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        pass

    def timed_out(self, attempt: int, timeout: float) -> None:
        pass

    def call_ended(
        self, outcome: Outcome, error: BaseException | None, duration: float, attempts: int
    ) -> None:
        span = self.span
        span.set_attribute("act_operator_lib.node.attempts", attempts)
        span.set_attribute("act_operator_lib.node.outcome", outcome)
        if outcome in ("failure", "timeout") and error is not None:
            span.record_exception(error)
            span.set_status(_otel_trace.Status(_otel_trace.StatusCode.ERROR, _describe(error)))
        _otel_context.detach(self.token)
        span.end()


class _SpanObserver:
    """Makes one OpenTelemetry span per call once a tracer is known."""

    def call_started(self, node: str) -> _TracedCall | None:
        tracer = observers.tracer
        if tracer is None:
            return None
        span = tracer.start_span(node, attributes={"act_operator_lib.node.name": node})
        token = _otel_context.attach(_otel_trace.set_span_in_context(span))
        return _TracedCall(span, token)


_LOGS = _LogObserver()
_SPANS = _SpanObserver()

observers = _Observers()
"""Internal: the registry every node call reads."""
