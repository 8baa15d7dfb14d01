"""What every node did: statistics, structured log records and OpenTelemetry spans.

Every `BaseNode` / `AsyncBaseNode` counts its calls, outcomes, retries, timeouts and
time spent waiting for its limiters, and keeps its recent latencies::

    stats = node.statistics()               # this node instance
    print(stats.calls, stats.failures, stats.latency_p95)

    for name, stats in observability.snapshot().items():   # every live node
        print(name, stats.successes, stats.rate_limit_wait)

Log records go to the ``act_operator_lib.node`` logger with ``extra`` fields
``node``, ``event`` (``start``, ``end``, ``retry``, ``timeout``), ``attempt``,
``duration``, ``error`` and ``outcome``: start and end at DEBUG, retry and timeout
at WARNING. When nothing listens at DEBUG a call costs one ``isEnabledFor`` check.

With OpenTelemetry (the ``otel`` extra) each node call is one span, named after the
node, once a tracer provider is set, globally (``trace.set_tracer_provider``) or for
this library only (`set_tracer_provider`). Without OpenTelemetry installed nothing
of it is imported and no span is made.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

try:
    from opentelemetry import trace as _otel_trace
except ImportError:  # the `otel` extra is not installed: no spans
    _otel_trace = None  # type: ignore[assignment]

__all__ = ["NodeStatistics", "set_tracer_provider", "snapshot"]

LATENCY_SAMPLES = 1024
"""How many recent call latencies each node keeps for its percentiles."""

FAST_PATH_TIMING_EVERY = 8
"""A node without policies, logging or tracing times one call in this many (a power of 2).

Its counts stay exact; its latency percentiles come from that sample, which keeps
the clock reads off most calls. Every call on the full path is timed.
"""

TRACER_NAME = "act_operator_lib"
"""The instrumentation scope of the spans (``tracer_provider.get_tracer(TRACER_NAME)``)."""


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
    """Seconds spent waiting for the ``rate_limit``, summed (event-loop clock)."""
    concurrency_wait: float
    """Seconds spent waiting for a ``max_concurrency`` slot, summed (event-loop clock)."""
    latency_p50: float | None
    """Median latency of recent finished calls."""
    latency_p95: float | None
    """95th-percentile latency of recent finished calls."""
    latency_max: float | None
    """Longest latency of recent finished calls."""


class NodeRecorder:
    """The counters behind `NodeStatistics`; one per node instance, written by its calls.

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


class _Tracing:
    """Which tracer node spans go to."""

    __slots__ = ("tracer",)

    def __init__(self) -> None:
        self.tracer: Tracer | None = None
        """The tracer in use: from `set_tracer_provider`, or the global provider's."""


class _PublicGlobals:
    """Stands in for OpenTelemetry's module globals when they are not readable."""

    @property
    def _TRACER_PROVIDER(self) -> object:
        if _otel_trace is None:
            return None
        provider = _otel_trace.get_tracer_provider()
        return None if isinstance(provider, _otel_trace.ProxyTracerProvider) else provider


tracing = _Tracing()
"""Internal: the node call path reads ``tracing.tracer`` on every call."""

# A node call checks `otel_globals._TRACER_PROVIDER is not None`: the global that
# `get_tracer_provider()` returns, read directly because that call costs over a
# microsecond when no provider is set (it looks up os.environ).
otel_globals: Any = (
    _otel_trace
    if _otel_trace is not None and hasattr(_otel_trace, "_TRACER_PROVIDER")
    else _PublicGlobals()
)


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
        tracing.tracer = None
        return
    if not callable(getattr(provider, "get_tracer", None)):
        raise TypeError(
            "set_tracer_provider(provider=...) must be an OpenTelemetry TracerProvider "
            f"(or None for the global one), got {type(provider).__name__}"
        )
    from act_operator_lib import __version__

    tracing.tracer = provider.get_tracer(TRACER_NAME, __version__)


def current_tracer() -> Tracer | None:
    """The tracer for node spans, or None when no tracer provider is set (or no OTel)."""
    tracer = tracing.tracer
    if tracer is not None or _otel_trace is None or otel_globals._TRACER_PROVIDER is None:
        return tracer
    # The global provider can be set only once, so once found it is kept.
    from act_operator_lib import __version__

    found: Tracer = _otel_trace.get_tracer(TRACER_NAME, __version__)
    tracing.tracer = found
    return found
