"""Node policies: timeout, retry, rate_limiter, max_concurrency, in real graphs and direct calls.

Timed behaviour runs under looptime's virtual clock (``@pytest.mark.looptime``): sleeps
finish at once while ``loop.time()`` advances, so delays are asserted exactly and no
test depends on the wall clock.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphInterrupt
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, TimeoutPolicy, interrupt

from act_operator_lib import (
    AsyncBaseNode,
    BaseNode,
    ConcurrencyLimiter,
    NodeDefinitionError,
    NodeResultError,
    NodeTimeoutError,
    RateLimiter,
)

NO_WAIT = RetryPolicy(max_attempts=3, initial_interval=0, jitter=False, retry_on=Exception)


class State(TypedDict, total=False):
    value: int
    answer: str


def one_node_graph(node: Any, **compile_kwargs: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("node", node)
    builder.add_edge(START, "node")
    builder.add_edge("node", END)
    return builder.compile(**compile_kwargs)


class Flaky(AsyncBaseNode):
    """Fails with ``error`` until ``failures`` attempts have failed, then answers."""

    def __init__(self, failures: int, error: Exception | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures = failures
        self.error = error or ConnectionError("connection reset")
        self.attempts = 0
        self.started_at: list[float] = []
        self.failed = asyncio.Event()

    async def execute(self, state):
        self.attempts += 1
        self.started_at.append(asyncio.get_running_loop().time())
        if self.attempts <= self.failures:
            self.failed.set()
            raise self.error
        return {"value": self.attempts}


class Slow(AsyncBaseNode):
    """Sleeps ``seconds`` (virtual under looptime); records the cleanup it ran."""

    def __init__(self, seconds: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seconds = seconds
        self.attempts = 0
        self.cleaned_up = 0

    async def execute(self, state):
        self.attempts += 1
        try:
            await asyncio.sleep(self.seconds)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # cleanup that itself awaits
            self.cleaned_up += 1
            raise
        return {"value": 1}


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429, retry after {retry_after}s")
        self.retry_after = retry_after


# Timeout.


@pytest.mark.looptime
async def test_timeout_cancels_the_attempt_and_its_cleanup_runs():
    node = Slow(60, timeout=2, name="slow")
    with pytest.raises(NodeTimeoutError) as caught:
        await node({})
    assert node.cleaned_up == 1
    assert isinstance(caught.value, TimeoutError)
    assert (caught.value.node, caught.value.timeout) == ("slow", 2)
    assert "'slow'" in str(caught.value)
    assert "2s" in str(caught.value)


@pytest.mark.looptime
async def test_timeout_fires_at_the_limit_on_the_loop_clock():
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NodeTimeoutError):
        await Slow(60, timeout=1.5)({})
    assert loop.time() - started == pytest.approx(1.5)


@pytest.mark.looptime
async def test_timeout_in_a_graph_raises_node_timeout_error():
    node = Slow(60, timeout=1)
    with pytest.raises(NodeTimeoutError, match="Slow"):
        await one_node_graph(node).ainvoke({"value": 0})
    assert node.cleaned_up == 1


@pytest.mark.looptime
async def test_a_node_within_its_timeout_returns_normally():
    assert await Slow(1, timeout=5)({}) == {"value": 1}


@pytest.mark.looptime
async def test_timeout_accepts_langgraph_timeout_policy_and_timedelta():
    with pytest.raises(NodeTimeoutError) as caught:
        await Slow(60, timeout=TimeoutPolicy(run_timeout=3))({})
    assert caught.value.timeout == 3
    with pytest.raises(NodeTimeoutError) as caught:
        await Slow(60, timeout=timedelta(milliseconds=500))({})
    assert caught.value.timeout == 0.5


def test_idle_timeout_is_left_to_langgraph():
    with pytest.raises(ValueError, match="idle_timeout"):
        Slow(1, timeout=TimeoutPolicy(idle_timeout=5))


@pytest.mark.looptime
async def test_a_timeout_error_raised_by_the_node_itself_is_not_relabelled():
    class OwnTimeout(AsyncBaseNode):
        timeout = 10

        async def execute(self, state):
            raise TimeoutError("upstream timed out")

    with pytest.raises(TimeoutError, match="upstream") as caught:
        await OwnTimeout()({})
    assert not isinstance(caught.value, NodeTimeoutError)


def test_timeout_on_a_sync_node_class_is_refused_at_definition():
    with pytest.raises(NodeDefinitionError, match=r"`timeout` is an AsyncBaseNode policy"):

        class SyncWithTimeout(BaseNode):
            timeout = 5

            def execute(self, state):
                return {}


def test_timeout_on_a_sync_node_instance_is_refused_by_the_constructor():
    class Sync(BaseNode):
        def execute(self, state):
            return {}

    with pytest.raises(TypeError, match=r"node 'Sync': `timeout` is an AsyncBaseNode policy"):
        Sync(timeout=5)


@pytest.mark.parametrize("option", ["rate_limiter", "max_concurrency"])
def test_limits_on_a_sync_node_are_refused(option):
    class Sync(BaseNode):
        def execute(self, state):
            return {}

    value = 2 if option == "max_concurrency" else RateLimiter(5)
    with pytest.raises(TypeError, match=rf"`{option}` is an AsyncBaseNode policy"):
        Sync(**{option: value})
    with pytest.raises(NodeDefinitionError, match=rf"`{option}`"):
        type("SyncLimited", (BaseNode,), {option: value, "execute": lambda self, state: {}})


# Retry.


async def test_retry_makes_up_to_max_attempts_and_returns_the_success():
    node = Flaky(2, retry=RetryPolicy(max_attempts=3, initial_interval=0, jitter=False))
    assert await one_node_graph(node).ainvoke({"value": 0}) == {"value": 3}
    assert node.attempts == 3
    assert node.statistics().retries == 2


async def test_retry_gives_up_after_max_attempts_with_the_last_error():
    node = Flaky(5, retry=RetryPolicy(max_attempts=3, initial_interval=0, jitter=False))
    with pytest.raises(ConnectionError):
        await one_node_graph(node).ainvoke({"value": 0})
    assert node.attempts == 3


async def test_an_error_retry_on_does_not_match_is_raised_at_once():
    node = Flaky(1, ValueError("bad input"), retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ValueError, match="bad input"):
        await node({})
    assert node.attempts == 1


async def test_the_first_matching_retry_policy_applies():
    policies = [
        RetryPolicy(max_attempts=2, initial_interval=0, retry_on=KeyError),
        RetryPolicy(max_attempts=4, initial_interval=0, jitter=False, retry_on=ValueError),
    ]
    node = Flaky(3, ValueError("flaky"), retry=policies)
    assert await node({}) == {"value": 4}


@pytest.mark.looptime
async def test_retry_backs_off_exponentially_on_the_loop_clock():
    node = Flaky(
        3, retry=RetryPolicy(max_attempts=4, initial_interval=1, backoff_factor=2, jitter=False)
    )
    await node({})
    first = node.started_at[0]
    assert [at - first for at in node.started_at] == pytest.approx([0, 1, 3, 7])


@pytest.mark.looptime
async def test_backoff_is_capped_by_max_interval():
    node = Flaky(
        3,
        retry=RetryPolicy(
            max_attempts=4, initial_interval=1, backoff_factor=10, max_interval=5, jitter=False
        ),
    )
    await node({})
    first = node.started_at[0]
    assert [at - first for at in node.started_at] == pytest.approx([0, 1, 6, 11])


@pytest.mark.looptime
async def test_retry_after_on_the_exception_sets_the_next_delay():
    node = Flaky(
        1,
        RateLimited(retry_after=7),
        retry=RetryPolicy(max_attempts=2, initial_interval=0.1, retry_on=RateLimited),
    )
    await one_node_graph(node).ainvoke({"value": 0})
    assert node.started_at[1] - node.started_at[0] == pytest.approx(7)


@pytest.mark.looptime
async def test_each_attempt_gets_the_full_timeout_and_timeouts_are_retried():
    loop = asyncio.get_running_loop()
    node = Slow(60, timeout=2, retry=RetryPolicy(max_attempts=3, initial_interval=1, jitter=False))
    started = loop.time()
    with pytest.raises(NodeTimeoutError):
        await node({})
    assert node.attempts == 3
    assert node.cleaned_up == 3
    # three 2 s attempts and two backoffs (1 s, then 2 s)
    assert loop.time() - started == pytest.approx(2 + 1 + 2 + 2 + 2)
    assert node.statistics().timeouts == 3


async def test_interrupt_is_not_retried():
    class AskHuman(AsyncBaseNode):
        retry = NO_WAIT

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.attempts = 0

        async def execute(self, state):
            self.attempts += 1
            return {"answer": interrupt("approve?")}

    node = AskHuman()
    graph = one_node_graph(node, checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "t1"}}
    paused = await graph.ainvoke({"value": 0}, config)
    assert "__interrupt__" in paused
    assert node.attempts == 1
    assert node.statistics().interrupts == 1
    resumed = await graph.ainvoke(Command(resume="yes"), config)
    assert resumed["answer"] == "yes"


class AnswerThenFail:
    """An execute body: asks the human, then fails once after the answer (a flaky API)."""

    def __init__(self) -> None:
        self.questions_asked = 0
        self.failed = False

    def run(self) -> dict[str, Any]:
        answer = interrupt("approve?")
        self.questions_asked += 1
        if not self.failed:
            self.failed = True
            raise ConnectionError("the API failed after the human answered")
        return {"answer": answer}


async def test_a_retry_after_an_answered_interrupt_reuses_the_answer():
    body = AnswerThenFail()

    class AskThenCall(AsyncBaseNode):
        retry = NO_WAIT

        async def execute(self, state):
            return body.run()

    graph = one_node_graph(AskThenCall(), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "retry-after-answer"}}
    assert "__interrupt__" in await graph.ainvoke({"value": 0}, config)

    resumed = await graph.ainvoke(Command(resume="yes"), config)

    assert "__interrupt__" not in resumed
    assert resumed["answer"] == "yes"
    assert body.questions_asked == 2  # the answer, seen by both attempts


def test_a_sync_node_retry_after_an_answered_interrupt_reuses_the_answer():
    body = AnswerThenFail()

    class AskThenCall(BaseNode):
        retry = NO_WAIT

        def execute(self, state):
            return body.run()

    graph = one_node_graph(AskThenCall(), checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "sync-retry-after-answer"}}
    assert "__interrupt__" in graph.invoke({"value": 0}, config)

    resumed = graph.invoke(Command(resume="yes"), config)

    assert "__interrupt__" not in resumed
    assert resumed["answer"] == "yes"


async def test_graph_interrupt_raised_directly_is_not_retried():
    node = Flaky(5, GraphInterrupt(), retry=NO_WAIT)
    with pytest.raises(GraphInterrupt):
        await node({})
    assert node.attempts == 1


async def test_a_wrong_result_is_not_retried():
    class WrongResult(AsyncBaseNode):
        retry = NO_WAIT
        attempts = 0

        async def execute(self, state):
            type(self).attempts += 1
            return "not a dict"

    with pytest.raises(NodeResultError):
        await WrongResult()({})
    assert WrongResult.attempts == 1


async def test_cancellation_is_not_retried():
    entered = asyncio.Event()

    class Blocked(AsyncBaseNode):
        retry = RetryPolicy(max_attempts=5, initial_interval=0, retry_on=lambda error: True)
        attempts = 0

        async def execute(self, state):
            type(self).attempts += 1
            entered.set()
            await asyncio.Event().wait()

    node = Blocked()
    task = asyncio.create_task(node({}))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Blocked.attempts == 1
    assert node.statistics().cancellations == 1


def test_a_sync_node_retries_in_a_sync_graph():
    class SyncFlaky(BaseNode):
        retry = RetryPolicy(max_attempts=3, initial_interval=0, jitter=False)
        attempts = 0

        def execute(self, state):
            type(self).attempts += 1
            if type(self).attempts < 3:
                raise ConnectionError("reset")
            return {"value": type(self).attempts}

    node = SyncFlaky()
    assert one_node_graph(node).invoke({"value": 0}) == {"value": 3}
    assert node.statistics().retries == 2


async def test_retry_works_under_astream_and_the_stream_sees_one_update():
    node = Flaky(1, retry=NO_WAIT)
    updates = [chunk async for chunk in one_node_graph(node).astream({"value": 0})]
    assert updates == [{"node": {"value": 2}}]


# Concurrency and rate limits.


class Gate(AsyncBaseNode):
    """Counts executions running at once; each waits until the test opens the gate."""

    def __init__(self, limit_reached_at: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit_reached_at = limit_reached_at
        self.running = 0
        self.peak = 0
        self.calls = 0
        self.full = asyncio.Event()
        self.gate = asyncio.Event()

    async def execute(self, state):
        self.calls += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        if self.running == self.limit_reached_at:
            self.full.set()
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        return {"value": state["value"]}


async def test_max_concurrency_holds_across_twenty_concurrent_graph_runs():
    node = Gate(3, max_concurrency=3)
    graph = one_node_graph(node)
    runs = [asyncio.create_task(graph.ainvoke({"value": i})) for i in range(20)]
    await node.full.wait()
    node.gate.set()
    results = await asyncio.gather(*runs)
    assert [result["value"] for result in results] == list(range(20))
    assert node.calls == 20
    assert node.peak == 3
    assert node.statistics().concurrency_wait > 0


async def test_a_shared_concurrency_limiter_bounds_several_nodes_together():
    shared = ConcurrencyLimiter(2)
    counts = {"running": 0, "peak": 0}
    full, gate = asyncio.Event(), asyncio.Event()

    class Counted(AsyncBaseNode):
        max_concurrency = shared

        async def execute(self, state):
            counts["running"] += 1
            counts["peak"] = max(counts["peak"], counts["running"])
            if counts["running"] == 2:
                full.set()
            await gate.wait()
            counts["running"] -= 1
            return {}

    first, second = Counted(name="first"), Counted(name="second")
    calls = [asyncio.create_task(node({})) for node in (first, second) for _ in range(5)]
    await full.wait()
    gate.set()
    await asyncio.gather(*calls)
    assert counts["peak"] == 2
    assert shared.statistics().granted == 10


@pytest.mark.looptime
async def test_the_rate_limiter_is_shared_by_every_run_of_the_node():
    class Stamp(AsyncBaseNode):
        rate_limiter = RateLimiter(2)  # one every 0.5 s, class-wide

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.started_at: list[float] = []

        async def execute(self, state):
            self.started_at.append(asyncio.get_running_loop().time())
            return {}

    node = Stamp()
    graph = one_node_graph(node)
    await asyncio.gather(*(graph.ainvoke({"value": i}) for i in range(6)))
    started = sorted(node.started_at)
    gaps = [later - earlier for earlier, later in itertools.pairwise(started)]
    assert gaps == pytest.approx([0.5] * 5)
    assert node.statistics().rate_limit_wait > 0


@pytest.mark.looptime
async def test_waiting_for_a_slot_does_not_count_against_the_timeout():
    loop = asyncio.get_running_loop()
    node = Slow(0.8, timeout=1, max_concurrency=1)
    started = loop.time()
    assert await asyncio.gather(node({}), node({}), node({})) == [{"value": 1}] * 3
    assert loop.time() - started == pytest.approx(2.4)


@pytest.mark.looptime
async def test_the_slot_is_given_back_during_the_retry_backoff():
    loop = asyncio.get_running_loop()
    shared = ConcurrencyLimiter(1)
    flaky = Flaky(
        1,
        max_concurrency=shared,
        retry=RetryPolicy(max_attempts=2, initial_interval=5, jitter=False),
    )
    other = Flaky(0, max_concurrency=shared)
    backing_off = asyncio.create_task(flaky({}))
    await flaky.failed.wait()
    assert await other({}) == {"value": 1}
    assert other.started_at == [pytest.approx(flaky.started_at[0])]
    assert await backing_off == {"value": 2}
    assert flaky.started_at[1] - flaky.started_at[0] == pytest.approx(5)
    assert loop.time() == pytest.approx(flaky.started_at[1])


# Configuration.


async def test_a_keyword_beats_the_class_attribute():
    class Strict(AsyncBaseNode):
        timeout = 1

        async def execute(self, state):
            return {}

    lenient = Strict(timeout=30)
    assert lenient.timeout == 30
    assert Strict().timeout == 1
    assert Strict(timeout=None).timeout is None


@pytest.mark.looptime
async def test_a_keyword_timeout_replaces_the_class_timeout_at_run_time():
    class Strict(Slow):
        timeout = 1

    assert await Strict(3, timeout=5)({}) == {"value": 1}
    with pytest.raises(NodeTimeoutError):
        await Strict(3)({})


def test_policies_are_inherited_by_subclasses():
    class Base(AsyncBaseNode, abstract=True):
        retry = NO_WAIT
        max_concurrency = 4

    class Child(Base):
        async def execute(self, state):
            return {}

    assert Child().retry is NO_WAIT


def test_each_instance_gets_its_own_concurrency_limiter_from_an_int():
    first, second = Gate(1, max_concurrency=2), Gate(1, max_concurrency=2)
    assert first._policies is not None
    assert second._policies is not None
    assert first._policies.max_concurrency is not second._policies.max_concurrency


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"timeout": 0}, ValueError, r"node 'Gate' timeout must be a finite number above 0"),
        ({"timeout": -1}, ValueError, r"node 'Gate' timeout"),
        ({"timeout": float("inf")}, ValueError, r"node 'Gate' timeout"),
        ({"timeout": "5"}, TypeError, r"node 'Gate' timeout must be seconds"),
        ({"timeout": True}, TypeError, r"node 'Gate' timeout must be seconds"),
        ({"retry": RetryPolicy(max_attempts=0)}, ValueError, r"retry.max_attempts"),
        ({"retry": RetryPolicy(initial_interval=-1)}, ValueError, r"retry.initial_interval"),
        ({"retry": RetryPolicy(retry_on=42)}, TypeError, r"retry.retry_on"),  # type: ignore[arg-type]
        ({"retry": 3}, TypeError, r"node 'Gate' retry must be a LangGraph RetryPolicy"),
        ({"retry": []}, TypeError, r"node 'Gate' retry must be"),
        ({"rate_limiter": 10}, TypeError, r"node 'Gate' rate_limiter must be a limiter"),
        ({"max_concurrency": 0}, ValueError, r"node 'Gate' max_concurrency must be at least 1"),
        ({"max_concurrency": 2.5}, TypeError, r"node 'Gate' max_concurrency must be an int"),
        ({"max_concurrency": "4"}, TypeError, r"node 'Gate' max_concurrency"),
    ],
)
def test_bad_policy_values_are_refused_naming_node_and_argument(options, error, pattern):
    with pytest.raises(error, match=pattern):
        Gate(1, **options)


def test_bad_class_attribute_is_refused_when_the_class_is_defined():
    with pytest.raises(
        ValueError, match=r"class \S*BadTimeout timeout must be a finite number above 0"
    ):

        class BadTimeout(AsyncBaseNode):
            timeout = -5

            async def execute(self, state):
                return {}


def test_unknown_keywords_still_fail_and_list_the_policies():
    with pytest.raises(TypeError, match=r"retries.*timeout, retry, rate_limiter, max_concurrency"):
        Gate(1, retries=3)


# The old spelling `rate_limit`: a deprecated alias of `rate_limiter` for one release.


async def test_a_rate_limit_class_attribute_warns_at_definition_and_is_the_rate_limiter():
    limiter = RateLimiter(100)
    with pytest.warns(
        DeprecationWarning,
        match=r"class \S*OldSpelling: attribute `rate_limit`.*rename `rate_limit` to "
        r"`rate_limiter`",
    ) as warned:

        class OldSpelling(AsyncBaseNode):
            rate_limit = limiter

            async def execute(self, state):
                return {"value": 1}

    assert warned[0].filename == __file__
    assert OldSpelling.rate_limiter is limiter
    assert await one_node_graph(OldSpelling()).ainvoke({"value": 0}) == {"value": 1}
    assert limiter.statistics().granted == 1


async def test_a_rate_limit_keyword_warns_at_construction_and_is_the_rate_limiter():
    limiter = RateLimiter(100)
    with pytest.warns(
        DeprecationWarning,
        match=r"Flaky\(rate_limit=\.\.\.\).*rename `rate_limit` to `rate_limiter`",
    ) as warned:
        node = Flaky(0, rate_limit=limiter)

    assert warned[0].filename == __file__
    assert node.rate_limiter is limiter
    assert await one_node_graph(node).ainvoke({"value": 0}) == {"value": 1}
    assert limiter.statistics().granted == 1


def test_a_rate_limit_class_attribute_on_a_sync_node_warns_then_is_refused():
    with (
        pytest.warns(DeprecationWarning, match=r"rename `rate_limit` to `rate_limiter`"),
        pytest.raises(NodeDefinitionError, match=r"`rate_limiter` is an AsyncBaseNode policy"),
    ):
        type(
            "SyncOldSpelling",
            (BaseNode,),
            {"rate_limit": RateLimiter(5), "execute": lambda self, state: {}},
        )


def test_declaring_both_rate_limit_and_rate_limiter_on_a_class_is_refused():
    with pytest.raises(
        NodeDefinitionError,
        match=r"declares both `rate_limit` and `rate_limiter`.*Keep `rate_limiter` only",
    ):

        class Both(AsyncBaseNode):
            rate_limit = RateLimiter(5)
            rate_limiter = RateLimiter(5)

            async def execute(self, state):
                return {}


def test_passing_both_rate_limit_and_rate_limiter_keywords_is_refused():
    with pytest.raises(
        TypeError,
        match=r"Flaky\(rate_limit=\.\.\., rate_limiter=\.\.\.\) must give the policy once",
    ):
        Flaky(0, rate_limit=RateLimiter(5), rate_limiter=RateLimiter(5))


def test_a_subclass_of_a_node_declaring_rate_limit_does_not_warn_again():
    with pytest.warns(DeprecationWarning, match=r"class \S*OldSpelling: attribute `rate_limit`"):

        class OldSpelling(AsyncBaseNode):
            rate_limit = RateLimiter(5)

            async def execute(self, state):
                return {}

    class Child(OldSpelling):
        timeout = 5

    assert Child.rate_limiter is OldSpelling.rate_limiter


# One timeout story with LangGraph's NodeTimeoutError.


class SlowFirstAttempt(AsyncBaseNode):
    """Hangs on its first attempt, answers on the next."""

    timeout = 1

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.attempts = 0

    async def execute(self, state):
        self.attempts += 1
        if self.attempts == 1:
            await asyncio.Event().wait()
        return {"value": self.attempts}


@pytest.mark.looptime
async def test_code_catching_langgraphs_node_timeout_error_catches_ours():
    from langgraph.errors import NodeTimeoutError as LangGraphNodeTimeoutError

    with pytest.raises(LangGraphNodeTimeoutError) as raised:
        await SlowFirstAttempt(name="slow")({})
    assert (raised.value.node, raised.value.kind, raised.value.run_timeout) == ("slow", "run", 1)
    assert raised.value.idle_timeout is None


@pytest.mark.looptime
async def test_except_timeout_error_still_catches_a_node_timeout():
    with pytest.raises(TimeoutError):
        await SlowFirstAttempt()({})


@pytest.mark.looptime
async def test_langgraphs_default_retry_policy_retries_our_timeout_as_it_does_its_own():
    node = SlowFirstAttempt()
    builder = StateGraph(State)
    builder.add_node("node", node, retry_policy=RetryPolicy(initial_interval=0, jitter=False))
    builder.add_edge(START, "node")
    builder.add_edge("node", END)

    result = await builder.compile().ainvoke({"value": 0})

    assert result == {"value": 2}
    assert node.attempts == 2


@pytest.mark.looptime
async def test_the_nodes_own_default_retry_policy_retries_a_timeout():
    node = SlowFirstAttempt(retry=RetryPolicy(initial_interval=0, jitter=False))

    assert await node({}) == {"value": 2}
