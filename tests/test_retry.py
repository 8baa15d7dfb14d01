"""The retry engine (`_retry.run_attempts`): slot -> token -> timeout -> attempt, then retry.

Timed behaviour runs under looptime's virtual clock (``@pytest.mark.looptime``), so
delays are asserted exactly and nothing depends on the wall clock.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Literal

import pytest
from aiolimiter import AsyncLimiter
from langgraph.errors import GraphInterrupt
from langgraph.types import RetryPolicy

import act_operator_lib
from act_operator_lib import (
    CallTimeoutError,
    ConcurrencyLimiter,
    FunctionNotAsyncError,
    NodeResultError,
    NodeTimeoutError,
    RateLimiter,
    call_with_policies,
)
from act_operator_lib._retry import CallPolicy, retry_delay, run_attempts, run_attempts_sync

NO_WAIT = RetryPolicy(max_attempts=3, initial_interval=0, jitter=False, retry_on=Exception)


def node_timeout(seconds: float) -> NodeTimeoutError:
    return NodeTimeoutError("engine", seconds)


class Events:
    """An `AttemptObserver` that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        self.seen.append(("waited", kind, seconds))

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        self.seen.append(("retrying", attempt, type(error).__name__, delay))

    def timed_out(self, attempt: int, timeout: float) -> None:
        self.seen.append(("timed_out", attempt, timeout))


class FailingFirst:
    """An attempt that raises ``errors`` in turn, then returns "done"; keeps start times."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.started: list[float] = []

    async def __call__(self) -> str:
        self.started.append(asyncio.get_running_loop().time())
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class ServerError(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("503")
        self.retry_after = retry_after


class PausableRateLimiter(RateLimiter):
    """A RateLimiter that also pauses (a Retry-After shared by its callers)."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.paused: list[float] = []

    async def pause(self, seconds: float) -> None:
        self.paused.append(seconds)


async def test_an_empty_policy_runs_the_attempt_once_and_returns_its_result() -> None:
    attempt = FailingFirst()

    assert await run_attempts(CallPolicy(), attempt, timeout_error=node_timeout) == "done"
    assert len(attempt.started) == 1


@pytest.mark.looptime
async def test_a_failed_attempt_is_retried_after_langgraphs_backoff() -> None:
    attempt = FailingFirst(ConnectionError("reset"), ConnectionError("reset"))
    policy = CallPolicy(retry=(RetryPolicy(initial_interval=1, backoff_factor=3, jitter=False),))

    assert await run_attempts(policy, attempt, timeout_error=node_timeout) == "done"
    first, second, third = attempt.started
    assert (second - first, third - second) == (1, 3)


async def test_the_last_error_propagates_after_max_attempts() -> None:
    attempt = FailingFirst(ConnectionError("1"), ConnectionError("2"), ConnectionError("3"))
    events = Events()

    with pytest.raises(ConnectionError, match="3"):
        await run_attempts(
            CallPolicy(retry=(NO_WAIT,)), attempt, timeout_error=node_timeout, observer=events
        )
    assert events.seen == [
        ("retrying", 1, "ConnectionError", 0),
        ("retrying", 2, "ConnectionError", 0),
    ]


@pytest.mark.parametrize(
    "error",
    [GraphInterrupt(()), NodeResultError("bad result")],
    ids=["interrupt", "node result error"],
)
async def test_control_flow_and_definition_errors_are_never_retried(error: Exception) -> None:
    attempt = FailingFirst(error)

    with pytest.raises(type(error)):
        await run_attempts(CallPolicy(retry=(NO_WAIT,)), attempt, timeout_error=node_timeout)
    assert len(attempt.started) == 1


async def test_an_error_no_policy_matches_is_not_retried() -> None:
    attempt = FailingFirst(KeyError("missing"))
    policy = CallPolicy(retry=(RetryPolicy(retry_on=ConnectionError),))

    with pytest.raises(KeyError):
        await run_attempts(policy, attempt, timeout_error=node_timeout)
    assert len(attempt.started) == 1


@pytest.mark.looptime
async def test_an_attempt_past_its_timeout_raises_the_callers_timeout_error() -> None:
    events = Events()

    async def slow() -> str:
        await asyncio.sleep(10)
        return "late"

    with pytest.raises(NodeTimeoutError) as raised:
        await run_attempts(CallPolicy(timeout=2), slow, timeout_error=node_timeout, observer=events)
    assert raised.value.timeout == 2
    assert isinstance(raised.value.__cause__, TimeoutError)
    assert events.seen == [("timed_out", 1, 2)]


@pytest.mark.looptime
async def test_a_timed_out_attempt_is_retried_by_the_default_retry_policy() -> None:
    calls = 0

    async def slow_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)
        return "done"

    policy = CallPolicy(timeout=1, retry=(RetryPolicy(jitter=False),))
    assert await run_attempts(policy, slow_once, timeout_error=node_timeout) == "done"
    assert calls == 2


async def test_a_timeout_error_the_attempt_raises_itself_is_not_the_deadline() -> None:
    async def raises_timeout() -> str:
        raise TimeoutError("the server's own timeout")

    with pytest.raises(TimeoutError, match="the server's own timeout") as raised:
        await run_attempts(CallPolicy(timeout=60), raises_timeout, timeout_error=node_timeout)
    assert not isinstance(raised.value, NodeTimeoutError)


@pytest.mark.looptime
async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def waits() -> str:
        started.set()
        await asyncio.sleep(100)
        return "never"

    task = asyncio.create_task(
        run_attempts(CallPolicy(timeout=50), waits, timeout_error=node_timeout)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.looptime
async def test_waiting_for_a_slot_does_not_count_against_the_timeout() -> None:
    slots = ConcurrencyLimiter(1)
    await slots.acquire()
    events = Events()

    async def quick() -> str:
        await asyncio.sleep(1)
        return "done"

    asyncio.get_running_loop().call_later(10, lambda: asyncio.ensure_future(slots.release()))
    policy = CallPolicy(timeout=2, concurrency_limiter=slots)
    result = await run_attempts(policy, quick, timeout_error=node_timeout, observer=events)

    assert result == "done"
    assert events.seen == [("waited", "concurrency", 10)]


@pytest.mark.looptime
async def test_waiting_for_a_token_does_not_count_against_the_timeout() -> None:
    tokens = RateLimiter(1, per=10)
    await tokens.acquire()
    events = Events()

    async def quick() -> str:
        await asyncio.sleep(1)
        return "done"

    policy = CallPolicy(timeout=2, rate_limiter=tokens)
    result = await run_attempts(policy, quick, timeout_error=node_timeout, observer=events)

    assert result == "done"
    assert events.seen == [("waited", "rate", 10)]


async def test_each_attempt_takes_its_own_token() -> None:
    tokens = RateLimiter(1e9)
    attempt = FailingFirst(ConnectionError("1"), ConnectionError("2"))

    await run_attempts(
        CallPolicy(retry=(NO_WAIT,), rate_limiter=tokens), attempt, timeout_error=node_timeout
    )
    assert tokens.statistics().granted == 3


@pytest.mark.looptime
async def test_the_slot_is_given_back_before_the_backoff() -> None:
    slots = ConcurrencyLimiter(1)
    in_use_during_backoff: list[int] = []

    class Watching(Events):
        def retrying(self, attempt: int, error: Exception, delay: float) -> None:
            in_use_during_backoff.append(slots.statistics().in_use)

    policy = CallPolicy(
        retry=(RetryPolicy(initial_interval=5, jitter=False),), concurrency_limiter=slots
    )
    attempt = FailingFirst(ConnectionError("reset"))
    await run_attempts(policy, attempt, timeout_error=node_timeout, observer=Watching())

    assert in_use_during_backoff == [0]
    assert slots.statistics().in_use == 0


async def test_before_retry_runs_before_every_attempt_after_the_first() -> None:
    order: list[str] = []
    errors = [ConnectionError("1"), ConnectionError("2")]

    async def attempt() -> str:
        order.append("attempt")
        if errors:
            raise errors.pop(0)
        return "done"

    await run_attempts(
        CallPolicy(retry=(NO_WAIT,)),
        attempt,
        timeout_error=node_timeout,
        before_retry=lambda: order.append("before_retry"),
    )
    assert order == ["attempt", "before_retry", "attempt", "before_retry", "attempt"]


@pytest.mark.looptime
async def test_a_retry_after_replaces_the_backoff() -> None:
    attempt = FailingFirst(ServerError(retry_after=7))

    await run_attempts(CallPolicy(retry=(NO_WAIT,)), attempt, timeout_error=node_timeout)
    assert attempt.started[1] - attempt.started[0] == 7


@pytest.mark.looptime
async def test_a_retry_after_pauses_a_pausable_rate_limiter_instead_of_sleeping() -> None:
    tokens = PausableRateLimiter(1e9)
    attempt = FailingFirst(ServerError(retry_after=30))

    await run_attempts(
        CallPolicy(retry=(NO_WAIT,), rate_limiter=tokens), attempt, timeout_error=node_timeout
    )
    assert tokens.paused == [30]
    # The limiter holds the next token back; the engine does not sleep on its own.
    assert attempt.started[1] - attempt.started[0] < 1


@pytest.mark.looptime
async def test_an_error_without_retry_after_sleeps_and_does_not_pause_the_limiter() -> None:
    tokens = PausableRateLimiter(1e9)
    attempt = FailingFirst(ServerError())
    policy = CallPolicy(
        retry=(RetryPolicy(initial_interval=2, jitter=False, retry_on=ServerError),),
        rate_limiter=tokens,
    )

    await run_attempts(policy, attempt, timeout_error=node_timeout)
    assert tokens.paused == []
    assert attempt.started[1] - attempt.started[0] == 2


def test_the_sync_loop_retries_with_the_same_rules() -> None:
    failures = [ConnectionError("1"), ConnectionError("2")]
    retried: list[int] = []

    def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    result = run_attempts_sync(
        CallPolicy(retry=(NO_WAIT,)), attempt, before_retry=lambda: retried.append(1)
    )
    assert result == "done"
    assert retried == [1, 1]


def test_the_sync_loop_refuses_a_timeout() -> None:
    with pytest.raises(ValueError, match="must have only `retry`"):
        run_attempts_sync(CallPolicy(timeout=1), lambda: "never")


def test_retry_delay_is_none_once_the_attempts_are_used_up() -> None:
    policy = (RetryPolicy(max_attempts=2, jitter=False),)

    assert retry_delay(policy, ConnectionError(), 1) == 0.5
    assert retry_delay(policy, ConnectionError(), 2) is None


# The public helper for a single call.


@pytest.mark.looptime
async def test_call_with_policies_retries_a_single_call_and_returns_its_result() -> None:
    attempt = FailingFirst(ConnectionError("reset"))

    result = await call_with_policies(attempt, retry=RetryPolicy(initial_interval=2, jitter=False))

    assert result == "done"
    assert attempt.started[1] - attempt.started[0] == 2


async def test_call_with_policies_names_a_sync_function_and_never_retries_it() -> None:
    calls = 0

    def not_async() -> int:
        nonlocal calls
        calls += 1
        return 1

    with pytest.raises(FunctionNotAsyncError, match=r"call_with_policies\(fn=\.\.\.\)"):
        await call_with_policies(not_async, retry=RetryPolicy(retry_on=Exception))  # type: ignore[arg-type]
    assert calls == 1


@pytest.mark.looptime
async def test_call_with_policies_raises_call_timeout_error_past_the_timeout() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    with pytest.raises(CallTimeoutError) as raised:
        await call_with_policies(hangs, timeout=3)
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.timeout == 3


async def test_call_with_policies_takes_a_token_per_attempt_from_an_aiolimiter() -> None:
    # A bucket that drains one token an hour: what it holds at the end is what the
    # attempts took, however long the test ran.
    limiter = AsyncLimiter(1000, 3600)
    attempt = FailingFirst(ConnectionError("reset"))

    await call_with_policies(attempt, retry=NO_WAIT, rate_limiter=limiter)

    assert len(attempt.started) == 2
    assert not limiter.has_capacity(999)


async def test_call_with_policies_holds_a_shared_slot_per_attempt() -> None:
    slots = ConcurrencyLimiter(1)
    seen: list[int] = []

    async def attempt() -> str:
        seen.append(slots.statistics().in_use)
        return "done"

    await call_with_policies(attempt, max_concurrency=slots)
    assert seen == [1]
    assert slots.statistics().in_use == 0


@pytest.mark.looptime
async def test_call_with_policies_tells_its_observer_of_each_retry_and_timeout() -> None:
    calls = 0

    async def slow_then_refused_then_done() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        if calls == 2:
            raise ConnectionError("reset")
        return "done"

    observer = Events()
    result = await call_with_policies(
        slow_then_refused_then_done,
        timeout=3,
        retry=RetryPolicy(initial_interval=1, jitter=False),
        rate_limiter=RateLimiter(100),
        observer=observer,
    )

    assert result == "done"
    assert [event for event in observer.seen if event[0] != "waited"] == [
        ("timed_out", 1, 3),
        ("retrying", 1, "CallTimeoutError", 1),
        ("retrying", 2, "ConnectionError", 2),
    ]
    assert [event[:2] for event in observer.seen if event[0] == "waited"] == [
        ("waited", "rate")
    ] * 3


async def test_call_with_policies_logs_each_retry_as_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="act_operator_lib.policies"):
        await call_with_policies(FailingFirst(ConnectionError("reset")), retry=NO_WAIT)

    assert [(record.event, record.attempt) for record in caplog.records] == [("retry", 1)]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: call_with_policies(5), TypeError, "call_with_policies(fn=...)"),  # type: ignore[arg-type]
        (
            lambda: call_with_policies(FailingFirst(), observer=print),  # type: ignore[arg-type]
            TypeError,
            "call_with_policies(observer=...) must have waited",
        ),
        (
            lambda: call_with_policies(FailingFirst(), max_concurrency=3),  # type: ignore[arg-type]
            TypeError,
            "ConcurrencyLimiter(3)",
        ),
        (lambda: call_with_policies(FailingFirst(), timeout=0), ValueError, "timeout"),
        (
            lambda: call_with_policies(FailingFirst(), rate_limiter=5),  # type: ignore[arg-type]
            TypeError,
            "rate_limiter",
        ),
    ],
    ids=[
        "fn not callable",
        "observer without methods",
        "int max_concurrency",
        "zero timeout",
        "rate limiter not a limiter",
    ],
)
async def test_call_with_policies_refuses_bad_arguments_naming_them(
    call: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=re.escape(words)):
        await call()


def test_retry_after_is_public_at_the_top() -> None:
    assert act_operator_lib.retry_after(ServerError(retry_after=4)) == 4
