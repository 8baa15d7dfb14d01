"""Fault injection: thousands of operations mixing success, exceptions, timeouts and
cancellation, then proof that nothing leaked (docs/reliability.md).

Every run is seeded (the seed is in the test id and in every failure message), so a
failure replays exactly. In-process runs use the virtual clock (looptime): 10,000
operations take a few virtual minutes and a second or two of real time. After each
run: every permit and token is back (``statistics()``), no task started by the run
is pending, no resource is open, and, because the suite runs with ``-W error``, no
exception went unretrieved.
"""

from __future__ import annotations

import asyncio
import contextlib
import operator
import random
import threading
import uuid
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Annotated, Any, TypedDict

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres.aio import AsyncPostgresStore
from langgraph.types import Command, RetryPolicy, Send, interrupt
from redis.asyncio import Redis
from tests._reliability import SEEDS, Boom, Inside, assert_no_new_tasks, drive, most_in_any_window

from act_operator_lib import (
    AsyncBaseNode,
    ConcurrencyLimiter,
    ItemTimeoutError,
    NodeTimeoutError,
    RateLimiter,
    RecordedItemError,
    RedisConcurrencyLimiter,
    ResourceClosedError,
    ResultNotSerializableError,
    as_completed,
    forget_durable,
    map_concurrent,
    map_durable,
)
from act_operator_lib.cache import cached
from act_operator_lib.durable import NAMESPACE_ROOT
from act_operator_lib.resources import Resource, aclose_resources

OPERATIONS = 10_000


def seeds() -> Any:
    return pytest.mark.parametrize("seed", SEEDS, ids=[f"seed={seed}" for seed in SEEDS])


def fates(rng: random.Random, kinds: dict[str, int]) -> str:
    return rng.choices(list(kinds), weights=list(kinds.values()))[0]


# RateLimiter


@seeds()
@pytest.mark.looptime
async def test_rate_limiter_under_faults_keeps_its_window_and_leaks_nothing(seed: int) -> None:
    rng = random.Random(seed)
    limiter = RateLimiter(200, per=1.0, burst=4)
    loop = asyncio.get_running_loop()
    grants: list[tuple[float, int]] = []
    kinds = {"ok": 40, "error": 15, "timeout": 25, "weighted": 20}
    plan = [
        (fates(rng, kinds), rng.randint(0, 20) / 1000, rng.randint(1, 3)) for _ in range(OPERATIONS)
    ]
    before = asyncio.all_tasks()

    async def operation(number: int) -> str:
        kind, work, weight = plan[number]
        if kind == "timeout":
            try:
                async with asyncio.timeout(work):
                    await limiter.acquire()
                    grants.append((loop.time(), 1))
                    await asyncio.sleep(work)
            except TimeoutError:
                return "timed out"
            return "ok"
        if kind == "weighted":
            await limiter.acquire(weight=weight)
            grants.append((loop.time(), weight))
            return "ok"
        async with limiter:
            grants.append((loop.time(), 1))
            await asyncio.sleep(work)
            if kind == "error":
                raise Boom(number)
        return "ok"

    driven = await drive(
        rng, OPERATIONS, operation, at_once=300, cancel_share=0.2, cancel_within=0.05
    )
    for outcome in driven.outcomes(seed):
        assert outcome in ("ok", "timed out") or isinstance(outcome, Boom), (
            f"seed={seed}: {outcome!r}"
        )

    assert most_in_any_window(grants, 1.0) <= 200 + 4 - 1, f"seed={seed}: window exceeded"
    statistics = limiter.statistics()
    assert statistics.waiting == 0, f"seed={seed}: {statistics}"
    assert statistics.granted == sum(weight for _, weight in grants), f"seed={seed}: {statistics}"
    await asyncio.sleep(1.0)  # one window later every grant has left it
    assert limiter.statistics().in_use == 0, f"seed={seed}: {limiter.statistics()}"
    before_acquire = loop.time()
    await limiter.acquire(weight=4)  # a fresh burst goes at once: no stale queue or timer
    assert loop.time() == before_acquire, f"seed={seed}"
    assert_no_new_tasks(before, seed)


# ConcurrencyLimiter (in-process)


@seeds()
@pytest.mark.looptime
async def test_concurrency_limiter_under_faults_returns_every_permit(seed: int) -> None:
    rng = random.Random(seed)
    limiter = ConcurrencyLimiter(5)
    inside = Inside()
    kinds = {"ok": 30, "error": 15, "timeout": 20, "decorated": 15, "manual": 20}
    plan = [(fates(rng, kinds), rng.randint(0, 10) / 1000) for _ in range(OPERATIONS)]
    before = asyncio.all_tasks()

    async def work(number: int, seconds: float, fail: bool) -> str:
        inside.enter()
        try:
            assert inside.now <= limiter.limit, f"seed={seed}: {inside.now} holders"
            await asyncio.sleep(seconds)
            if fail:
                raise Boom(number)
        finally:
            inside.leave()
        return "ok"

    decorated = limiter(work)

    async def operation(number: int) -> str:
        kind, seconds = plan[number]
        if kind == "timeout":
            try:
                async with asyncio.timeout(seconds * 2), limiter:
                    return await work(number, seconds * 3, False)
            except TimeoutError:
                return "timed out"
        if kind == "decorated":
            return await decorated(number, seconds, False)
        if kind == "manual":
            await limiter.acquire()
            try:
                return await work(number, seconds, False)
            finally:
                await limiter.release()
        async with limiter:
            return await work(number, seconds, kind == "error")

    driven = await drive(
        rng, OPERATIONS, operation, at_once=100, cancel_share=0.2, cancel_within=0.03
    )
    for outcome in driven.outcomes(seed):
        assert outcome in ("ok", "timed out") or isinstance(outcome, Boom), (
            f"seed={seed}: {outcome!r}"
        )

    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting) == (0, 0), f"seed={seed}: {statistics}"
    assert statistics.granted == inside.entered, f"seed={seed}: a permit was granted unused"
    assert inside.peak == limiter.limit, f"seed={seed}: the limit was never reached"
    assert_no_new_tasks(before, seed)


# RedisConcurrencyLimiter (real Redis on 127.0.0.1:6379, real time: fewer operations)


@pytest.fixture
async def redis_key(redis_url: str) -> AsyncIterator[str]:
    key = f"test:reliability:{uuid.uuid4().hex}"
    yield key
    client = Redis.from_url(redis_url)
    names = [name async for name in client.scan_iter(match=f"{key}*")]
    if names:
        await client.delete(*names)
    await client.aclose()


@seeds()
async def test_redis_concurrency_limiter_under_faults_returns_every_permit(
    seed: int, redis_url: str, redis_key: str
) -> None:
    rng = random.Random(seed)
    operations = 2_000
    limiter = RedisConcurrencyLimiter(redis_url, redis_key, 4, lease=30)
    inside = Inside()
    kinds = {"ok": 50, "error": 20, "timeout": 30}
    plan = [(fates(rng, kinds), rng.randint(0, 3) / 1000) for _ in range(operations)]
    before = asyncio.all_tasks()

    async def operation(number: int) -> str:
        kind, seconds = plan[number]
        try:
            async with asyncio.timeout(0.004 if kind == "timeout" else None), limiter:
                inside.enter()
                try:
                    assert inside.now <= limiter.limit, f"seed={seed}: {inside.now} holders"
                    await asyncio.sleep(seconds)
                    if kind == "error":
                        raise Boom(number)
                finally:
                    inside.leave()
        except TimeoutError:
            return "timed out"
        return "ok"

    try:
        driven = await drive(
            rng, operations, operation, at_once=12, cancel_share=0.2, cancel_within=0.004
        )
        for outcome in driven.outcomes(seed):
            assert outcome in ("ok", "timed out") or isinstance(outcome, Boom), (
                f"seed={seed}: {outcome!r}"
            )
        statistics = limiter.statistics()
        assert (statistics.in_use, statistics.waiting) == (0, 0), f"seed={seed}: {statistics}"
        assert inside.peak <= limiter.limit
    finally:
        await limiter.aclose()  # waits for the shielded releases of cancelled holders
    client = Redis.from_url(redis_url)
    try:
        holders = await client.zcard(f"{redis_key}:holders")
    finally:
        await client.aclose()
    assert holders == 0, f"seed={seed}: {holders} permits left on the server"
    assert_no_new_tasks(before, seed)


# map_concurrent


@seeds()
@pytest.mark.looptime
async def test_map_concurrent_under_faults_leaves_no_call_running(seed: int) -> None:
    rng = random.Random(seed)
    rate = RateLimiter(2_000)
    items_done = 0
    before = asyncio.all_tasks()

    async def one_map(items: list[tuple[int, str]], return_exceptions: bool) -> None:
        running = Inside()

        async def call(item: tuple[int, str]) -> int:
            index, fate = item
            running.enter()
            try:
                await asyncio.sleep(rng.randint(0, 2) / 1000)
                if fate == "error":
                    raise Boom(index)
                if fate == "slow":
                    await asyncio.sleep(1.0)  # past the per-item timeout
                return index
            finally:
                running.leave()

        try:
            results = await map_concurrent(
                call,
                items,
                limit=rng.randint(1, 8),
                timeout=0.5,
                rate_limiter=rate,
                return_exceptions=return_exceptions,
            )
        except (Boom, ItemTimeoutError):
            assert not return_exceptions, f"seed={seed}"
            assert any(fate != "ok" for _, fate in items), f"seed={seed}"
            return
        finally:
            # The trio promise: when map_concurrent is done (returned, raised or was
            # cancelled), so is every call it made.
            assert running.now == 0, f"seed={seed}: {running.now} calls outlived it"
        for (index, fate), result in zip(items, results, strict=True):
            if fate == "ok":
                assert result == index, f"seed={seed}"
            elif fate == "error":
                assert isinstance(result, Boom), f"seed={seed}: {result!r}"
            else:
                assert isinstance(result, ItemTimeoutError), f"seed={seed}: {result!r}"
                assert result.index == index, f"seed={seed}"

    while items_done < OPERATIONS:
        callers = []
        for _ in range(4):
            count = rng.randint(10, 80)
            items = [
                (index, rng.choices(["ok", "error", "slow"], weights=[85, 10, 5])[0])
                for index in range(count)
            ]
            items_done += count
            caller = asyncio.create_task(one_map(items, rng.random() < 0.7))
            if rng.random() < 0.25:
                asyncio.get_running_loop().call_later(rng.randint(0, 30) / 1000, caller.cancel)
            callers.append(caller)
        await asyncio.wait(callers)
        for caller in callers:
            if not caller.cancelled():
                caller.result()
    assert rate.statistics().waiting == 0, f"seed={seed}"
    assert_no_new_tasks(before, seed)


# Node policies: timeout, retry, rate_limiter, max_concurrency, in graph runs and direct calls


class RunState(TypedDict, total=False):
    run: int
    result: int


def build_flaky(seed: int, plans: dict[int, list[str]], inside: Inside) -> AsyncBaseNode:
    class Flaky(AsyncBaseNode):
        timeout = 0.05
        retry = RetryPolicy(
            max_attempts=3,
            initial_interval=0.01,
            backoff_factor=2.0,
            jitter=False,
            retry_on=(Boom, NodeTimeoutError),
        )
        rate_limiter = RateLimiter(500, burst=5)
        max_concurrency = 4

        async def execute(self, state: RunState) -> RunState:
            fate = plans[state["run"]].pop(0)
            inside.enter()
            try:
                assert inside.now <= 4, f"seed={seed}: {inside.now} attempts at once"
                await asyncio.sleep(0.001 if fate != "slow" else 1.0)
                if fate == "error":
                    raise Boom(state["run"])
                if fate == "bug":
                    raise KeyError(state["run"])
            finally:
                inside.leave()
            return {"result": state["run"]}

    return Flaky()


def expected(plan: list[str]) -> type[BaseException] | None:
    """The exception a call with these attempt fates ends in (None: success)."""
    for attempt, fate in enumerate(plan, start=1):
        if fate == "ok":
            return None
        if fate == "bug":
            return KeyError
        if attempt == 3:
            return Boom if fate == "error" else NodeTimeoutError
    raise AssertionError("a plan has three fates")


@seeds()
@pytest.mark.looptime
async def test_node_policies_under_faults_release_every_slot(seed: int) -> None:
    rng = random.Random(seed)
    calls = 4_500
    inside = Inside()
    plans = {
        run: rng.choices(["ok", "error", "slow", "bug"], weights=[55, 25, 15, 5], k=3)
        for run in range(calls)
    }
    outcomes_expected = {run: expected(plan) for run, plan in plans.items()}
    node = build_flaky(seed, plans, inside)
    builder = StateGraph(RunState)
    builder.add_node("flaky", node)
    builder.add_edge(START, "flaky")
    builder.add_edge("flaky", END)
    graph = builder.compile()
    before = asyncio.all_tasks()

    async def operation(run: int) -> tuple[int, Any]:
        if run % 3 == 0:  # a whole graph run; the driver may cancel it
            return run, await graph.ainvoke({"run": run})
        return run, await node({"run": run})

    driven = await drive(rng, calls, operation, at_once=60, cancel_share=0.15, cancel_within=0.1)
    attempts = sum(3 - len(plan) for plan in plans.values())
    assert calls + attempts >= 10_000, f"seed={seed}: only {attempts} attempts"
    finished = 0
    for task in driven.finished:
        if task.cancelled():
            continue
        assert task not in driven.reached, f"seed={seed}: a cancelled run was not cancelled"
        finished += 1
        error = task.exception()
        if error is None:
            run, result = task.result()
            assert outcomes_expected[run] is None, f"seed={seed}: run {run} {plans[run]}"
            assert result["result"] == run
        else:
            run = error.args[0] if isinstance(error, Boom | KeyError) else None
            if run is not None:
                assert outcomes_expected[run] is type(error), f"seed={seed}: {error!r}"
            else:
                assert isinstance(error, NodeTimeoutError), f"seed={seed}: {error!r}"

    slots = node._policies.max_concurrency  # type: ignore[union-attr]
    assert slots is not None
    statistics = slots.statistics()
    assert (statistics.in_use, statistics.waiting) == (0, 0), f"seed={seed}: {statistics}"
    assert inside.peak == 4, f"seed={seed}: peak {inside.peak}"
    node_statistics = node.statistics()
    # A call cancelled before it started is not a call; every started one ended.
    assert finished <= node_statistics.calls <= calls, f"seed={seed}: {node_statistics}"
    assert node_statistics.calls == (
        node_statistics.successes + node_statistics.failures + node_statistics.cancellations
    ), f"seed={seed}: {node_statistics}"
    assert_no_new_tasks(before, seed)


# Pooled resources


class Connection:
    def __init__(self, pool: CountingPool) -> None:
        self.pool = pool
        self.closed = False


class CountingPool(Resource[Connection]):
    """A resource whose open and close take time and whose open sometimes fails."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.live = 0

    async def open(self) -> Connection:
        await asyncio.sleep(self.rng.randint(0, 5) / 1000)
        if self.rng.random() < 0.1:
            raise Boom("open failed")
        self.live += 1
        return Connection(self)

    async def close(self, value: Connection) -> None:
        await asyncio.sleep(self.rng.randint(0, 3) / 1000)
        value.closed = True
        self.live -= 1


@seeds()
@pytest.mark.looptime
async def test_pooled_resource_under_faults_closes_everything_it_opened(seed: int) -> None:
    rng = random.Random(seed)
    pool = CountingPool(rng)

    class User(AsyncBaseNode):
        connection = pool

        async def execute(self, state: RunState) -> RunState:
            return {}

    user = User()
    before = asyncio.all_tasks()

    async def operation(number: int) -> str:
        if number % 499 == 0:  # now and then, close the pool while others use it
            await user.connection.aclose()
            return "closed"
        try:
            connection = await user.connection()
        except ResourceClosedError:
            return "refused"
        await asyncio.sleep(rng.randint(0, 4) / 1000)
        if rng.random() < 0.1:
            raise Boom(number)
        return "closed" if connection.closed else "ok"

    driven = await drive(
        rng, OPERATIONS, operation, at_once=50, cancel_share=0.2, cancel_within=0.01
    )
    for outcome in driven.outcomes(seed):
        assert outcome in ("ok", "closed", "refused") or isinstance(outcome, Boom), (
            f"seed={seed}: {outcome!r}"
        )
    await aclose_resources(user)
    statistics = user.connection.statistics()
    assert statistics.opened == statistics.closed, f"seed={seed}: {statistics}"
    assert statistics.loops == 0, f"seed={seed}: {statistics}"
    assert pool.live == 0, f"seed={seed}: {pool.live} values never closed"
    assert statistics.opened >= 1, f"seed={seed}: {statistics}"
    assert_no_new_tasks(before, seed)


# Fan-outs in graph runs: interrupts, BaseExceptions and context variables from items


class Halt(BaseException):
    """An item's error that is not an `Exception` (as ``pytest.fail()``, KeyboardInterrupt)."""


class FanState(TypedDict, total=False):
    run: int
    results: list[Any]


request_id: ContextVar[str] = ContextVar("request_id", default="unset")


class FanPlan:
    """One graph run's fan-out: which function, which items, what each item does.

    ``kind`` is "plain" (items succeed or raise `Boom`), "interrupt" (one or two items
    call ``interrupt()``, the rest as plain; ``return_exceptions=True``) or "halt"
    (one item raises `Halt`; ``return_exceptions=True``).
    """

    def __init__(self, rng: random.Random, run: int) -> None:
        self.run = run
        self.fan = rng.choice(["map_concurrent", "as_completed", "map_durable"])
        self.kind = rng.choices(["plain", "interrupt", "halt"], weights=[60, 25, 15])[0]
        self.limit = rng.randint(1, 6)
        count = rng.randint(5, 40)
        self.fates = rng.choices(["ok", "error"], weights=[85, 15], k=count)
        if self.kind == "interrupt":
            for index in rng.sample(range(count), rng.randint(1, 2)):
                self.fates[index] = "interrupt"
        elif self.kind == "halt":
            self.fates[rng.randrange(count)] = "halt"
        self.return_exceptions = self.kind != "plain" or rng.random() < 0.6
        self.delays = [rng.randint(0, 3) / 1000 for _ in range(count)]


class FanWatch:
    """What the items of every run did: calls, context leaks, items alive after a Halt."""

    def __init__(self) -> None:
        self.calls: dict[int, list[int]] = {}
        self.leaks: list[str] = []
        self.running: dict[int, int] = {}
        self.finished_after_halt: dict[int, int] = {}
        self.halted: set[int] = set()
        self.finished: dict[int, set[int]] = {}


def fan_node(plans: dict[int, FanPlan], watch: FanWatch) -> Any:
    async def fan(state: FanState) -> FanState:
        plan = plans[state["run"]]
        run = plan.run
        request_id.set(f"run-{run}")  # the caller's context each item must start from

        async def item(index: int) -> str:
            watch.calls.setdefault(run, []).append(index)
            watch.running[run] = watch.running.get(run, 0) + 1
            try:
                seen = request_id.get()
                if seen != f"run-{run}":
                    watch.leaks.append(f"run {run} item {index} saw {seen!r}")
                request_id.set(f"item-{index}")  # as structlog's bind_contextvars does
                await asyncio.sleep(plan.delays[index])
                fate = plan.fates[index]
                if fate == "error":
                    watch.finished.setdefault(run, set()).add(index)
                    raise Boom(index)
                if fate == "halt":
                    watch.halted.add(run)
                    raise Halt(index)
                if fate == "interrupt":
                    return f"{index}:{interrupt(f'approve {index}?')}"
                if run in watch.halted:
                    watch.finished_after_halt[run] = watch.finished_after_halt.get(run, 0) + 1
                watch.finished.setdefault(run, set()).add(index)
                return f"{index}:ok"
            finally:
                watch.running[run] -= 1

        indexes = range(len(plan.fates))
        if plan.fan == "map_concurrent":
            results = await map_concurrent(
                item, indexes, limit=plan.limit, return_exceptions=plan.return_exceptions
            )
        elif plan.fan == "map_durable":
            results = await map_durable(
                item, indexes, key=str, limit=plan.limit, return_exceptions=plan.return_exceptions
            )
        else:
            found: dict[int, Any] = {}
            async with as_completed(
                item, indexes, limit=plan.limit, return_exceptions=plan.return_exceptions
            ) as done:
                async for index, value in done:
                    found[index] = value
            results = [found[index] for index in indexes]
        assert request_id.get() == f"run-{run}", "an item's binding reached its caller"
        return {"results": results}

    return fan


def check_fan_results(seed: int, plan: FanPlan, results: list[Any], resumed: bool) -> None:
    for index, (fate, result) in enumerate(zip(plan.fates, results, strict=True)):
        where = f"seed={seed} run={plan.run} {plan.fan} item {index} ({fate})"
        if fate == "ok":
            assert result == f"{index}:ok", where
        elif fate == "interrupt":
            assert result == f"{index}:yes", where
        elif plan.fan == "map_durable" and resumed:
            # Recorded by the interrupted pass, or run again if it was cut short there.
            assert isinstance(result, Boom | RecordedItemError), f"{where}: {result!r}"
        else:
            assert isinstance(result, Boom), f"{where}: {result!r}"


@seeds()
@pytest.mark.looptime
async def test_fan_outs_under_faults_propagate_control_flow_and_start_each_item_clean(
    seed: int,
) -> None:
    rng = random.Random(seed)
    runs = 240
    plans = {run: FanPlan(rng, run) for run in range(runs)}
    watch = FanWatch()
    builder = StateGraph(FanState)
    builder.add_node("fan", fan_node(plans, watch))
    builder.add_edge(START, "fan")
    builder.add_edge("fan", END)
    graph = builder.compile(checkpointer=InMemorySaver(), store=InMemoryStore())
    before = asyncio.all_tasks()

    async def one_run(run: int) -> None:
        plan = plans[run]
        config: Any = {"configurable": {"thread_id": f"fan-{seed}-{run}"}}
        where = f"seed={seed} run={run} {plan.fan} {plan.kind}"
        if plan.kind == "halt":
            with pytest.raises(Halt):
                await graph.ainvoke({"run": run}, config)
            assert watch.running[run] == 0, f"{where}: items outlived the Halt"
            # Stopped at once: at most the items already running finish, never the rest.
            assert watch.finished_after_halt.get(run, 0) <= plan.limit, where
            return
        if plan.kind == "plain" and not plan.return_exceptions and "error" in plan.fates:
            with pytest.raises(Boom):
                await graph.ainvoke({"run": run}, config)
            return
        state = await graph.ainvoke({"run": run}, config)
        if plan.kind == "interrupt":
            assert "__interrupt__" in state, f"{where}: an interrupt became an item's result"
            assert "results" not in state, where
            first_calls = list(watch.calls[run])
            finished_first = set(watch.finished.get(run, ()))
            answers = 0
            while "__interrupt__" in state:  # one answer per interrupt() reached
                answers += 1
                assert answers <= 2, f"{where}: asked again after every item had its answer"
                state = await graph.ainvoke(Command(resume="yes"), config)
            if plan.fan == "map_durable":
                again = set(watch.calls[run][len(first_calls) :])
                # An item that finished before the interrupt is recorded, never run
                # again; an interrupted one runs again and gets the human's answer.
                assert not finished_first & again, f"{where}: a recorded item ran again"
                asked = {index for index, fate in enumerate(plan.fates) if fate == "interrupt"}
                assert asked & set(first_calls) <= again, where
        check_fan_results(seed, plan, state["results"], resumed=plan.kind == "interrupt")

    # Runs go in waves of ten, so items of different runs share the loop and workers.
    for wave in range(0, runs, 10):
        await asyncio.gather(*(one_run(run) for run in range(wave, min(wave + 10, runs))))

    assert watch.leaks == [], f"seed={seed}: {watch.leaks[:5]}"
    kinds = {plan.kind for plan in plans.values()}
    assert kinds == {"plain", "interrupt", "halt"}, f"seed={seed}: {kinds}"
    assert_no_new_tasks(before, seed)


# cached: flights abandoned by their last waiter, then asked for again


@seeds()
@pytest.mark.looptime
async def test_cached_under_faults_never_hands_a_cancellation_to_a_caller_nobody_cancelled(
    seed: int,
) -> None:
    rng = random.Random(seed)
    keys = 40
    computations = [0] * keys

    @cached(ttl=0.01)  # short: entries expire often, so flights start all the time
    async def compute(key: int) -> int:
        computations[key] += 1
        try:
            await asyncio.sleep(rng.randint(1, 15) / 1000)
        except asyncio.CancelledError:
            if rng.random() < 0.5:
                # Still winding down when the next caller for the key comes.
                await asyncio.sleep(rng.randint(0, 5) / 1000)
            raise
        if rng.random() < 0.1:
            raise Boom(key)
        return key * 10

    kinds = {"call": 60, "abandon": 40}
    plan = [
        (fates(rng, kinds), rng.randrange(keys), rng.randint(0, 10) / 1000) for _ in range(4000)
    ]
    before = asyncio.all_tasks()

    async def operation(number: int) -> int:
        kind, key, delay = plan[number]
        if kind == "abandon":
            # The only waiter leaves the flight, then the key is asked for at once.
            first = asyncio.create_task(compute(key))
            try:
                await asyncio.sleep(delay)
            finally:
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError, Boom):
                    await first
        return await compute(key)

    driven = await drive(
        rng, len(plan), operation, at_once=100, cancel_share=0.15, cancel_within=0.02
    )
    unexplained = [t for t in driven.finished if t.cancelled() and t not in driven.reached]
    assert not unexplained, f"seed={seed}: {len(unexplained)} callers got CancelledError"
    for outcome in driven.outcomes(seed):
        assert isinstance(outcome, Boom) or outcome % 10 == 0, f"seed={seed}: {outcome!r}"
    # Afterwards, with nobody cancelling, every key computes (or fails) as asked.
    for key in range(keys):
        with contextlib.suppress(Boom):
            assert await compute(key) == key * 10, f"seed={seed}"
    assert sum(computations) >= keys, f"seed={seed}"
    assert_no_new_tasks(before, seed)


# map_durable: records belong to one task of one step (loops, Send, retries)


class LoopState(TypedDict, total=False):
    visit: int
    results: Annotated[list[tuple[int, int, list[int]]], operator.add]


class Task(TypedDict):
    base: int
    visit: int


@seeds()
@pytest.mark.looptime
async def test_durable_records_under_loops_sends_and_retries_stay_with_their_task(
    seed: int,
) -> None:
    rng = random.Random(seed)
    store = InMemoryStore()
    graphs = 12
    # Per graph run: Send tasks per step, steps (the loop back), items per task.
    shapes = [(rng.randint(2, 6), rng.randint(1, 3), rng.randint(3, 12)) for _ in range(graphs)]
    first_attempt_fates: dict[tuple[int, int, int], str] = {}
    attempts: dict[tuple[int, int, int], int] = {}
    calls: dict[tuple[int, int, int, int], int] = {}
    before = asyncio.all_tasks()

    def build(run: int) -> Any:
        bases, visits, items = shapes[run]

        async def work(task: Task) -> LoopState:
            base, visit = task["base"], task["visit"]
            attempt_key = (run, visit, base)
            attempts[attempt_key] = attempts.get(attempt_key, 0) + 1
            fate = (
                first_attempt_fates.setdefault(
                    attempt_key, rng.choices(["ok", "item", "after"], weights=[60, 20, 20])[0]
                )
                if attempts[attempt_key] == 1
                else "ok"
            )
            failing_item = rng.randrange(items) if fate == "item" else -1

            async def one(item: int) -> int:
                calls[(run, visit, base, item)] = calls.get((run, visit, base, item), 0) + 1
                await asyncio.sleep(rng.randint(0, 3) / 1000)
                if item == failing_item:
                    raise ConnectionError(f"item {item} of task {base}, step {visit}")
                return base * 1000 + visit * 100 + item

            results = await map_durable(one, range(items), key=str, limit=rng.randint(1, 4))
            if fate == "after":
                raise ConnectionError(f"task {base} failed after map_durable returned")
            return {"results": [(visit, base, results)]}

        def fan_out(state: LoopState) -> Any:
            visit = state.get("visit", 0)
            if visit >= visits:
                return END
            return [Send("work", {"base": base, "visit": visit}) for base in range(1, bases + 1)]

        def gate(state: LoopState) -> LoopState:
            return {"visit": state.get("visit", 0) + 1}

        builder = StateGraph(LoopState)
        builder.add_node(
            "work",
            work,
            retry_policy=RetryPolicy(
                max_attempts=2, initial_interval=0.01, jitter=False, retry_on=ConnectionError
            ),
        )
        builder.add_node("gate", gate)
        builder.add_conditional_edges(START, fan_out, ["work", END])
        builder.add_edge("work", "gate")
        builder.add_conditional_edges("gate", fan_out, ["work", END])
        return builder.compile(checkpointer=InMemorySaver(), store=store)

    async def one_run(run: int) -> None:
        bases, visits, items = shapes[run]
        config: Any = {"configurable": {"thread_id": f"loops-{seed}-{run}"}}
        state = await build(run).ainvoke({}, config)
        found = {(visit, base): results for visit, base, results in state["results"]}
        expected = {
            (visit, base): [base * 1000 + visit * 100 + item for item in range(items)]
            for visit in range(visits)
            for base in range(1, bases + 1)
        }
        # A previous step's record would carry its step; a sibling's, its base.
        assert found == expected, f"seed={seed} run={run}: {shapes[run]}"

    await asyncio.gather(*(one_run(run) for run in range(graphs)))

    retried_after = [key for key, fate in first_attempt_fates.items() if fate == "after"]
    assert retried_after, f"seed={seed}: no task failed after its records were made"
    for run, visit, base in retried_after:
        # Its retry reused its own records: no item of that task ran twice.
        items = shapes[run][2]
        assert all(calls[(run, visit, base, item)] == 1 for item in range(items)), (
            f"seed={seed}: task {base} of step {visit} in run {run} recomputed its items"
        )
    assert all(count <= 2 for count in calls.values()), f"seed={seed}"
    assert_no_new_tasks(before, seed)


# map_durable on PostgreSQL: NUL characters in results


@seeds()
async def test_nul_characters_in_results_on_postgresql_name_the_item_and_keep_the_rest(
    seed: int, postgres_dsn: str
) -> None:
    rng = random.Random(seed)
    count = rng.randint(60, 150)
    shapes = [
        lambda item: f"text\x00{item}",
        lambda item: {"rows": [{"text": f"a\x00{item}"}]},
        lambda item: {f"key\x00{item}": item},
    ]
    bad = {item: rng.choice(shapes) for item in rng.sample(range(count), rng.randint(1, 4))}
    namespace = f"reliability-nul-{uuid.uuid4().hex}"
    calls: dict[int, int] = {}
    returned: list[int] = []

    async def work(item: int) -> Any:
        calls[item] = calls.get(item, 0) + 1
        await asyncio.sleep(0)
        returned.append(item)
        return bad[item](item) if item in bad else {"item": item, "text": f"row {item}"}

    async with AsyncPostgresStore.from_conn_string(postgres_dsn) as store:
        await store.setup()
        try:
            named: list[str] = []

            async def run_once() -> list[Any] | ResultNotSerializableError:
                try:
                    return await map_durable(
                        work,
                        range(count),
                        key=str,
                        limit=rng.randint(1, 8),
                        flush_every=rng.randint(1, 30),
                        return_exceptions=rng.random() < 0.5,
                        store=store,
                        namespace=namespace,
                    )
                except ResultNotSerializableError as error:
                    return error

            for _ in range(len(bad) + 1):
                recorded_before = await recorded(store, namespace)
                returned.clear()
                outcome = await run_once()
                # A rerun never calls an item already recorded.
                ran_again = {str(item) for item in returned} & recorded_before
                assert not ran_again, f"seed={seed}: recorded items ran again: {ran_again}"
                if not isinstance(outcome, ResultNotSerializableError):
                    break
                key = outcome.key
                assert key is not None, f"seed={seed}: {outcome}"
                assert int(key) in bad, f"seed={seed}: {outcome}"
                assert key not in named, f"seed={seed}: {key} named twice"
                named.append(key)
                now = await recorded(store, namespace)
                assert not now & {str(item) for item in bad}, f"seed={seed}"
                # Every good result that came back before the bad one is kept.
                kept = {str(item) for item in returned[: returned.index(int(key))]}
                assert kept <= now, f"seed={seed}: lost {kept - now}"
                del bad[int(key)]  # the user fixes that item, and runs again
            else:
                pytest.fail(f"seed={seed}: still failing after every bad item was fixed")
            assert outcome == [{"item": item, "text": f"row {item}"} for item in range(count)]
            assert named, f"seed={seed}: no NUL was reported"
            assert await recorded(store, namespace) == {str(item) for item in range(count)}
        finally:
            await forget_durable(store=store, namespace=namespace)


async def recorded(store: Any, namespace: str) -> set[str]:
    found: set[str] = set()
    offset = 0
    while page := await store.asearch((*NAMESPACE_ROOT, namespace), limit=500, offset=offset):
        found.update(item.key for item in page)
        offset += len(page)
    return found


# ConcurrencyLimiter shared by event loops in threads (real time)


class ThreadInside:
    """`Inside` for callers on several threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.entered = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.entered += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


@seeds()
def test_a_concurrency_limiter_shared_by_loops_in_threads_under_faults_loses_no_wake_up(
    seed: int,
) -> None:
    limiter = ConcurrencyLimiter(3)
    inside = ThreadInside()
    node_inside = ThreadInside()
    operations = 1_200

    class Capped(AsyncBaseNode):
        max_concurrency = 2

        async def execute(self, state: RunState) -> RunState:
            node_inside.enter()
            try:
                await asyncio.sleep(0.001)
            finally:
                node_inside.leave()
            return {"result": state["run"]}

    builder = StateGraph(RunState)
    builder.add_node("capped", Capped())
    builder.add_edge(START, "capped")
    builder.add_edge("capped", END)
    graph = builder.compile()  # one node instance, one slot limiter, shared by every loop

    async def work(number: int, fail: bool) -> str:
        inside.enter()
        try:
            await asyncio.sleep(0.001 * (number % 2))
            if fail:
                raise Boom(number)
        finally:
            inside.leave()
        return "ok"

    async def one_thread(index: int) -> None:
        rng = random.Random(seed * 10 + index)
        kinds = {"ok": 30, "error": 10, "timeout": 15, "manual": 20, "graph": 25}
        plan = [fates(rng, kinds) for _ in range(operations)]

        async def operation(number: int) -> str:
            kind = plan[number]
            if kind == "graph":
                final = await graph.ainvoke({"run": number})
                return "ok" if final["result"] == number else "wrong"
            if kind == "timeout":
                try:
                    async with asyncio.timeout(0.0005), limiter:
                        return await work(number, False)
                except TimeoutError:
                    return "timed out"
            if kind == "manual":
                await limiter.acquire()
                try:
                    return await work(number, False)
                finally:
                    await limiter.release()
            async with limiter:
                return await work(number, kind == "error")

        # A lost wake-up leaves a waiter asleep: the guard fails the run instead.
        async with asyncio.timeout(120):
            driven = await drive(
                rng, operations, operation, at_once=20, cancel_share=0.15, cancel_within=0.003
            )
        for outcome in driven.outcomes(seed):
            assert outcome in ("ok", "timed out") or isinstance(outcome, Boom), (
                f"seed={seed} thread={index}: {outcome!r}"
            )

    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            asyncio.run(one_thread(index))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [], f"seed={seed}: {errors!r}"
    assert inside.peak <= limiter.limit, f"seed={seed}: peak {inside.peak}"
    assert node_inside.peak <= 2, f"seed={seed}: node peak {node_inside.peak}"
    statistics = limiter.statistics()
    assert (statistics.in_use, statistics.waiting) == (0, 0), f"seed={seed}: {statistics}"
    assert statistics.granted == inside.entered, f"seed={seed}: a permit was granted unused"
