"""Per-call cost of the node base classes, against a plain function, in one run.

The wrapper's own cost is ``node call - plain call``: both run the same body, so the
difference is everything the base class adds (argument dispatch, runtime wrapping,
result checks, statistics, the block-detection check). Goal: at most 1.5 us for
every ``execute`` signature. Nodes with policies (none of which has to wait here)
show what the policy path costs: each attempt of a node with a ``timeout`` runs
under a deadline on its loop's shared timer for that timeout (``_deadline.deadline``,
asyncio.timeout's algorithm).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from act_operator_lib import AsyncBaseNode, BaseNode, RateLimiter, observability

CALLS = 200_000
BATCH = 1_000
REPEATS = 5
STATE = {"query": "q"}
CONFIG: dict[str, Any] = {"configurable": {"thread_id": "t"}, "tags": []}
RUNTIME: Runtime[Any] = Runtime(context=None)
RESULT = {"result": 1}


async def plain(state: Any, config: Any = None, runtime: Any = None) -> dict[str, int]:
    return RESULT


def plain_sync(state: Any, config: Any = None, runtime: Any = None) -> dict[str, int]:
    return RESULT


class StateOnly(AsyncBaseNode):
    async def execute(self, state):
        return RESULT


class WithConfig(AsyncBaseNode):
    async def execute(self, state, config):
        return RESULT


class WithRuntime(AsyncBaseNode):
    async def execute(self, state, runtime):
        return RESULT


class WithBoth(AsyncBaseNode):
    async def execute(self, state, config, runtime):
        return RESULT


class WithTimeout(AsyncBaseNode):
    timeout = 10

    async def execute(self, state):
        return RESULT


class WithRetry(AsyncBaseNode):
    retry = RetryPolicy(max_attempts=3)

    async def execute(self, state):
        return RESULT


class WithAllPolicies(AsyncBaseNode):
    timeout = 10
    retry = RetryPolicy(max_attempts=3)
    rate_limiter = RateLimiter(1e9)
    max_concurrency = 100

    async def execute(self, state):
        return RESULT


class SyncStateOnly(BaseNode):
    def execute(self, state):
        return RESULT


class SyncWithBoth(BaseNode):
    def execute(self, state, config, runtime):
        return RESULT


class NoOpCall:
    """Told about one call; does nothing (the cost of the observer path itself)."""

    def waited(self, kind: Any, seconds: float) -> None:
        pass

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        pass

    def timed_out(self, attempt: int, timeout: float) -> None:
        pass

    def call_ended(self, outcome: Any, error: Any, duration: float, attempts: int) -> None:
        pass


class NoOpObserver:
    """A `NodeObserver` that follows every call and does nothing."""

    call = NoOpCall()

    def call_started(self, node: str) -> NoOpCall:
        return self.call


class InspectEveryCall:
    """The pattern the original scaffold uses: inspect.signature on every call."""

    async def execute(self, state: Any) -> dict[str, int]:
        return RESULT

    async def __call__(self, state: Any, config: Any = None, runtime: Any = None) -> Any:
        parameters = inspect.signature(self.execute).parameters
        kwargs: dict[str, Any] = {}
        if "config" in parameters:
            kwargs["config"] = config
        if "runtime" in parameters:
            kwargs["runtime"] = runtime
        return await self.execute(state, **kwargs)


async def time_async(call: Callable[[Any, Any, Any], Awaitable[Any]], calls: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls // BATCH):
            for _ in range(BATCH):
                await call(STATE, CONFIG, RUNTIME)
            # Yield as a graph run does, so the event loop (and its block detection)
            # is not held for the whole measurement.
            await asyncio.sleep(0)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


def time_sync(call: Callable[[Any, Any, Any], Any], calls: int) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(calls):
            call(STATE, CONFIG, RUNTIME)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e6


async def measure() -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    baseline = await time_async(plain, CALLS)
    for label, node in [
        ("async execute(self, state)", StateOnly()),
        ("async execute(self, state, config)", WithConfig()),
        ("async execute(self, state, runtime)", WithRuntime()),
        ("async execute(self, state, config, runtime)", WithBoth()),
        ("async, timeout=10", WithTimeout()),
        ("async, retry=RetryPolicy(max_attempts=3)", WithRetry()),
        ("async, timeout + retry + rate_limiter + max_concurrency", WithAllPolicies()),
    ]:
        rows.append((label, baseline, await time_async(node, CALLS)))
    observer = NoOpObserver()
    observability.add_observer(observer)
    try:
        rows.append(
            (
                "async execute(self, state), one observer added",
                baseline,
                await time_async(StateOnly(), CALLS),
            )
        )
    finally:
        observability.remove_observer(observer)
    rows.append(
        (
            "scaffold-style inspect.signature per call",
            baseline,
            await time_async(InspectEveryCall(), CALLS // 10),
        )
    )
    sync_baseline = time_sync(plain_sync, CALLS)
    for label, sync_node in [
        ("sync execute(self, state)", SyncStateOnly()),
        ("sync execute(self, state, config, runtime)", SyncWithBoth()),
    ]:
        rows.append((label, sync_baseline, time_sync(sync_node, CALLS)))
    return rows


def main() -> str:
    rows = asyncio.run(measure())
    lines = [
        "## Node call overhead",
        "",
        "`python -m benchmarks node_overhead` (`make bench`): best of "
        f"{REPEATS} x {CALLS:,} calls; the wrapper's cost is the node call minus a plain "
        "function with the same body, measured in the same run. Goal: <= 1.5 us.",
        "",
        "| call | plain function (us) | node call (us) | wrapper cost (us) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, baseline, node_cost in rows:
        lines.append(f"| {label} | {baseline:.2f} | {node_cost:.2f} | {node_cost - baseline:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main())
