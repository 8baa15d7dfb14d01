"""Load: 1,000 concurrent graph runs through one limited node (docs/reliability.md).

One node with ``max_concurrency=10`` and a shared `RateLimiter`; equal work per run;
on the virtual clock, so the run is fast and deterministic. Every run completes, the
two limits hold (measured inside the node), and waiting is fair.

What "wait" means: the time from a run reaching the limited node (the loop time at
which its previous node finished) to the moment ``execute`` starts, i.e. its wait
for a slot and a token. If every run arrived at the same instant, any work-conserving
order would give the same set of waits (a ramp 0 .. N x interval, max = 2 x mean), so
a max/mean bound could not tell FIFO from LIFO. Runs therefore arrive staggered:
a backlog of 100 at t=0, then the other 900 at exactly the service rate. With FIFO
service each run waits about as long as the backlog takes to drain; a scheduler that
let newcomers overtake would starve the backlog, whose waits would then grow with N.
"""

from __future__ import annotations

import asyncio
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from tests._reliability import Inside, assert_no_new_tasks, most_in_any_window

from act_operator_lib import AsyncBaseNode, RateLimiter

RUNS = 1_000
SLOTS = 10
RATE = 40.0  # grants per second; WORK x RATE == SLOTS, so both limits are reached
WORK = 0.25
BACKLOG = 100


class LoadState(TypedDict, total=False):
    run: int
    arrived: float
    waited: float


@pytest.mark.looptime
async def test_a_thousand_concurrent_runs_all_complete_within_both_limits_and_fairly() -> None:
    loop = asyncio.get_running_loop()
    inside = Inside()
    grants: list[tuple[float, int]] = []
    arrivals_in_service_order: list[float] = []
    rate = RateLimiter(RATE)

    class Arrive(AsyncBaseNode):
        async def execute(self, state: LoadState) -> LoadState:
            run = state["run"]
            await asyncio.sleep(max(0, run - BACKLOG) / RATE)
            return {"arrived": loop.time()}

    class Limited(AsyncBaseNode):
        max_concurrency = SLOTS
        rate_limiter = rate

        async def execute(self, state: LoadState) -> LoadState:
            now = loop.time()
            grants.append((now, 1))
            arrivals_in_service_order.append(state["arrived"])
            inside.enter()
            try:
                await asyncio.sleep(WORK)
            finally:
                inside.leave()
            return {"waited": now - state["arrived"]}

    limited = Limited()
    builder = StateGraph(LoadState)
    builder.add_node("arrive", Arrive())
    builder.add_node("limited", limited)
    builder.add_edge(START, "arrive")
    builder.add_edge("arrive", "limited")
    builder.add_edge("limited", END)
    graph = builder.compile()
    before = asyncio.all_tasks()
    started = loop.time()

    # A deadlock leaves no timer to jump to, so the virtual clock reaches this
    # guard at once and fails the test instead of hanging it.
    async with asyncio.timeout(3600):
        finals = await asyncio.gather(*(graph.ainvoke({"run": run}) for run in range(RUNS)))

    assert len(finals) == RUNS
    assert sorted(final["run"] for final in finals) == list(range(RUNS))
    assert inside.peak == SLOTS, f"peak concurrency {inside.peak}, limit {SLOTS}"
    assert most_in_any_window(grants, 1.0) <= RATE, "rate window exceeded"
    assert most_in_any_window(grants, 1.0) == RATE, "the rate limit was never reached"
    slots = limited._policies.max_concurrency  # type: ignore[union-attr]
    assert slots is not None
    assert (slots.statistics().in_use, slots.statistics().waiting) == (0, 0)
    assert rate.statistics().waiting == 0

    waits = [final["waited"] for final in finals]
    mean = sum(waits) / len(waits)
    assert max(waits) <= 2 * mean, f"longest wait {max(waits):.3f}s, mean {mean:.3f}s"
    assert arrivals_in_service_order == sorted(arrivals_in_service_order), (
        "a run overtook one that arrived before it"
    )
    # The whole load took the time the rate allows for RUNS grants, plus one WORK.
    assert loop.time() - started == pytest.approx((RUNS - 1) / RATE + WORK, abs=0.01)
    assert_no_new_tasks(before, "load")
