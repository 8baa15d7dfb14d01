"""Node statistics, structured log records and OpenTelemetry spans."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from act_operator_lib import (
    AsyncBaseNode,
    BaseNode,
    NodeStatistics,
    NodeTimeoutError,
    observability,
)

NO_WAIT = RetryPolicy(max_attempts=3, initial_interval=0, jitter=False, retry_on=Exception)


class State(TypedDict, total=False):
    value: int


def one_node_graph(node: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile()


class Echo(AsyncBaseNode):
    async def execute(self, state):
        return {"value": state.get("value", 0) + 1}


class Fails(AsyncBaseNode):
    async def execute(self, state):
        raise ConnectionError("connection reset")


class FailsOnce(AsyncBaseNode):
    retry = NO_WAIT

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attempts = 0

    async def execute(self, state):
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("connection reset")
        return {"value": self.attempts}


class Hangs(AsyncBaseNode):
    timeout = 1

    async def execute(self, state):
        await asyncio.Event().wait()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    observability.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        observability.set_tracer_provider(None)
        provider.shutdown()


# Statistics.


async def test_statistics_count_successes_and_failures_in_graph_runs():
    echo, fails = Echo(name="echo-stats"), Fails(name="fails-stats")
    for _ in range(3):
        await one_node_graph(echo).ainvoke({"value": 1})
    with pytest.raises(ConnectionError):
        await one_node_graph(fails).ainvoke({"value": 1})
    stats = echo.statistics()
    assert (stats.node, stats.calls, stats.successes, stats.failures) == ("echo-stats", 3, 3, 0)
    assert stats.latency_p50 is not None
    assert stats.latency_max is not None
    assert stats.latency_p50 <= stats.latency_p95 <= stats.latency_max  # type: ignore[operator]
    failed = fails.statistics()
    assert (failed.calls, failed.successes, failed.failures) == (1, 0, 1)


def test_statistics_of_a_sync_node():
    class Upper(BaseNode):
        def execute(self, state):
            return {"value": state["value"] * 2}

    node = Upper()
    one_node_graph(node).invoke({"value": 2})
    assert node.statistics().successes == 1


async def test_statistics_before_any_call_have_no_latency():
    stats = Echo().statistics()
    assert stats == NodeStatistics(
        node="Echo",
        calls=0,
        successes=0,
        failures=0,
        interrupts=0,
        cancellations=0,
        timeouts=0,
        retries=0,
        rate_limit_wait=0.0,
        concurrency_wait=0.0,
        latency_p50=None,
        latency_p95=None,
        latency_max=None,
    )


def test_statistics_are_frozen():
    stats = Echo().statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.calls = 5  # type: ignore[misc]


async def test_retries_are_counted():
    node = FailsOnce()
    await node({})
    stats = node.statistics()
    assert (stats.calls, stats.successes, stats.failures, stats.retries) == (1, 1, 0, 1)


@pytest.mark.looptime
async def test_timeouts_are_counted_as_timeouts_and_failures():
    node = Hangs()
    with pytest.raises(NodeTimeoutError):
        await node({})
    stats = node.statistics()
    assert (stats.timeouts, stats.failures) == (1, 1)


async def test_a_node_that_skips_super_init_still_has_statistics():
    class NoSuperInit(AsyncBaseNode):
        def __init__(self) -> None:
            self.extra = 1

        async def execute(self, state):
            return {}

    node = NoSuperInit()
    await node({})
    assert node.statistics().successes == 1


async def test_snapshot_reports_every_live_node_by_name_and_pools_same_names():
    first, second = Echo(name="pooled"), Echo(name="pooled")
    await first({})
    await second({})
    await second({})
    snapshot = observability.snapshot()
    assert snapshot["pooled"].successes == 3
    assert all(isinstance(stats, NodeStatistics) for stats in snapshot.values())


async def test_latency_samples_are_bounded():
    node = Echo()
    for _ in range(observability.LATENCY_SAMPLES * observability.FAST_PATH_TIMING_EVERY + 50):
        await node({})
    recorder = node._recorder
    assert recorder is not None
    assert len(recorder.latencies) == observability.LATENCY_SAMPLES


# Log records.


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if getattr(record, "event", None) == event]


async def test_start_and_end_records_carry_structured_fields(caplog):
    caplog.set_level(logging.DEBUG, logger="act_operator_lib.node")
    await Echo(name="logged")({"value": 1})
    (start,) = records(caplog, "start")
    (end,) = records(caplog, "end")
    assert (start.levelno, start.node, start.attempt) == (logging.DEBUG, "logged", 1)  # type: ignore[attr-defined]
    assert (end.levelno, end.node, end.outcome, end.error) == (  # type: ignore[attr-defined]
        logging.DEBUG,
        "logged",
        "success",
        None,
    )
    assert end.duration >= 0  # type: ignore[attr-defined]


async def test_retry_records_are_warnings_with_attempt_and_error(caplog):
    caplog.set_level(logging.WARNING, logger="act_operator_lib.node")
    await FailsOnce(name="flaky")({})
    (retry,) = records(caplog, "retry")
    assert retry.levelno == logging.WARNING
    assert (retry.node, retry.attempt, retry.error) == (  # type: ignore[attr-defined]
        "flaky",
        1,
        "ConnectionError: connection reset",
    )
    assert retry.delay == 0  # type: ignore[attr-defined]
    assert not records(caplog, "start")


@pytest.mark.looptime
async def test_timeout_records_are_warnings_naming_the_limit(caplog):
    caplog.set_level(logging.DEBUG, logger="act_operator_lib.node")
    with pytest.raises(NodeTimeoutError):
        await Hangs(name="stuck")({})
    (timeout,) = records(caplog, "timeout")
    assert (timeout.levelno, timeout.node, timeout.duration) == (logging.WARNING, "stuck", 1)  # type: ignore[attr-defined]
    (end,) = records(caplog, "end")
    assert end.outcome == "timeout"  # type: ignore[attr-defined]
    assert end.error.startswith("NodeTimeoutError")  # type: ignore[attr-defined]


async def test_no_records_when_the_logger_is_quiet(caplog):
    caplog.set_level(logging.INFO, logger="act_operator_lib.node")
    await Echo()({})
    assert not caplog.records


# Spans.


async def test_each_node_call_is_one_span_with_attributes(spans):
    await one_node_graph(Echo(name="traced")).ainvoke({"value": 1})
    (span,) = spans.get_finished_spans()
    assert span.name == "traced"
    assert span.attributes is not None
    assert span.attributes["act_operator_lib.node.name"] == "traced"
    assert span.attributes["act_operator_lib.node.attempts"] == 1
    assert span.attributes["act_operator_lib.node.outcome"] == "success"
    assert span.status.status_code is StatusCode.UNSET


async def test_a_retried_call_is_still_one_span_counting_attempts(spans):
    await FailsOnce(name="retried")({})
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["act_operator_lib.node.attempts"] == 2


async def test_a_failed_call_span_has_error_status_and_the_exception(spans):
    with pytest.raises(ConnectionError):
        await Fails(name="broken")({})
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes["act_operator_lib.node.outcome"] == "failure"
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


def test_a_sync_node_call_is_a_span(spans):
    class Upper(BaseNode):
        def execute(self, state):
            return {}

    Upper(name="sync-traced")({})
    (span,) = spans.get_finished_spans()
    assert span.name == "sync-traced"


async def test_no_span_once_the_provider_is_removed(spans):
    observability.set_tracer_provider(None)
    await Echo()({})
    assert not spans.get_finished_spans()


def test_library_warnings_stay_off_stderr_when_the_app_configures_no_logging():
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio
        from langgraph.types import RetryPolicy
        from act_operator_lib import AsyncBaseNode

        class Flaky(AsyncBaseNode):
            retry = RetryPolicy(max_attempts=2, initial_interval=0.001, jitter=False)
            calls = 0

            async def execute(self, state):
                Flaky.calls += 1
                if Flaky.calls == 1:
                    raise ConnectionError("first attempt fails")
                return {"ok": True}

        print(asyncio.run(Flaky()({})))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "{'ok': True}"
    assert completed.stderr == ""


# Your own observers.


class RecordingObserver:
    """A `NodeObserver` that keeps every event of every call it follows."""

    def __init__(self, follow: bool = True) -> None:
        self.follow = follow
        self.events: list[tuple[Any, ...]] = []

    def call_started(self, node: str) -> RecordingObserver | None:
        self.events.append(("started", node))
        return self if self.follow else None

    def waited(self, kind: str, seconds: float) -> None:
        self.events.append(("waited", kind))

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        self.events.append(("retrying", attempt, type(error).__name__))

    def timed_out(self, attempt: int, timeout: float) -> None:
        self.events.append(("timed_out", attempt, timeout))

    def call_ended(
        self, outcome: str, error: BaseException | None, duration: float, attempts: int
    ) -> None:
        self.events.append(("ended", outcome, attempts))


@pytest.fixture
def observer() -> Iterator[RecordingObserver]:
    added = RecordingObserver()
    observability.add_observer(added)
    try:
        yield added
    finally:
        observability.remove_observer(added)


async def test_an_added_observer_follows_every_call_of_a_graph_run(observer):
    await one_node_graph(Echo(name="watched")).ainvoke({"value": 1})

    assert observer.events == [("started", "watched"), ("ended", "success", 1)]


async def test_an_observer_is_told_about_retries_and_the_attempts_made(observer):
    await FailsOnce(name="watched-retry")({})

    assert observer.events == [
        ("started", "watched-retry"),
        ("retrying", 1, "ConnectionError"),
        ("ended", "success", 2),
    ]


@pytest.mark.looptime
async def test_an_observer_is_told_about_a_timeout(observer):
    with pytest.raises(NodeTimeoutError):
        await Hangs(name="watched-timeout")({})

    assert observer.events == [
        ("started", "watched-timeout"),
        ("timed_out", 1, 1),
        ("ended", "timeout", 1),
    ]


async def test_an_observer_returning_none_is_not_told_the_rest_of_the_call():
    skipping = RecordingObserver(follow=False)
    observability.add_observer(skipping)
    try:
        await Echo(name="skipped")({})
    finally:
        observability.remove_observer(skipping)

    assert skipping.events == [("started", "skipped")]


async def test_a_removed_observer_hears_nothing_more():
    removed = RecordingObserver()
    observability.add_observer(removed)
    observability.remove_observer(removed)

    await Echo()({})

    assert removed.events == []


def test_a_sync_node_call_is_observed_too(observer):
    class Upper(BaseNode):
        def execute(self, state):
            return {}

    Upper(name="sync-watched")({})

    assert observer.events == [("started", "sync-watched"), ("ended", "success", 1)]


def test_add_observer_refuses_an_object_without_call_started():
    with pytest.raises(TypeError, match=r"add_observer\(observer=...\) must have a call_started"):
        observability.add_observer(object())  # type: ignore[arg-type]


async def test_every_call_is_timed_without_sampling():
    node = Echo()
    for _ in range(20):
        await node({})

    assert node._recorder is not None
    assert len(node._recorder.latencies) == 20


def test_a_global_tracer_provider_set_by_the_application_gets_the_spans():
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from act_operator_lib import AsyncBaseNode

        class Echo(AsyncBaseNode):
            async def execute(self, state):
                return {}

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        asyncio.run(Echo(name="global")({}))
        print([span.name for span in exporter.get_finished_spans()])
        """
    )
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert completed.stdout.strip() == "['global']"


async def test_the_node_span_is_current_while_execute_runs(spans):
    from opentelemetry import trace

    current: list[int] = []

    class Nested(AsyncBaseNode):
        async def execute(self, state):
            current.append(trace.get_current_span().get_span_context().span_id)
            return {}

    await Nested(name="outer")({})

    (outer,) = spans.get_finished_spans()
    assert outer.context is not None
    assert current == [outer.context.span_id]
    assert not trace.get_current_span().get_span_context().is_valid


# Names: the graph node's inside a graph, unless name= is given.


class CheckAPI(AsyncBaseNode):
    async def execute(self, state):
        return {}


def graph_with(name: str, node: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node(name, node)
    builder.add_edge(START, name)
    builder.add_edge(name, END)
    return builder.compile()


async def test_inside_a_graph_statistics_are_named_after_the_graph_node():
    node = CheckAPI()
    await graph_with("check_api", node).ainvoke({})

    assert node.statistics().node == "check_api"
    assert "check_api" in observability.snapshot()


async def test_inside_a_graph_log_records_and_spans_are_named_after_the_graph_node(caplog, spans):
    caplog.set_level(logging.DEBUG, logger="act_operator_lib.node")
    await graph_with("check_api", CheckAPI()).ainvoke({})

    assert {record.node for record in records(caplog, "end")} == {"check_api"}  # type: ignore[attr-defined]
    assert [span.name for span in spans.get_finished_spans()] == ["check_api"]


async def test_a_given_name_wins_over_the_graph_node_name():
    node = CheckAPI(name="api-check")
    await graph_with("check_api", node).ainvoke({})

    assert node.statistics().node == "api-check"


async def test_outside_a_graph_a_node_is_named_after_its_class():
    node = CheckAPI()
    await node({})

    assert node.statistics().node == "CheckAPI"
