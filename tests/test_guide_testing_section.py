"""The guide's "Testing Async Nodes" section, rewritten with act_operator_lib.testing.

Each test mirrors one of the guide's: the unit test runs the node in a real graph,
"with mocking" becomes dependency injection, the timeout test runs on the virtual
clock, and concurrency is shown by virtual time and by counting overlapping calls,
never by wall-clock time. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from act_operator_lib import AsyncBaseNode
from act_operator_lib.testing import VirtualClock, run_node

Fetch = Callable[[str], Awaitable[str]]


@dataclass(kw_only=True)
class State:
    query: str
    result: str | None = None


async def fetch_data(query: str) -> str:
    """The guide's slow dependency: one second of simulated I/O."""
    await asyncio.sleep(1)
    return f"Data for {query}"


class MyAsyncNode(AsyncBaseNode):
    """The guide's node, taking its dependency as an argument instead of hard-coding it."""

    def __init__(self, fetch: Fetch = fetch_data, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.fetch = fetch

    async def execute(self, state):
        return {"result": await self.fetch(state.query)}


class TimeoutNode(AsyncBaseNode):
    """The guide's node: gives up on a 10-second operation after 5 seconds."""

    async def execute(self, state):
        try:
            result = await asyncio.wait_for(self.slow_operation(state["input"]), timeout=5.0)
        except TimeoutError:
            self.log("Operation timed out")
            return {"result": None, "timed_out": True}
        return {"result": result, "timed_out": False}

    async def slow_operation(self, input_data: str) -> str:
        await asyncio.sleep(10)
        return "result"


class ConcurrentNode(AsyncBaseNode):
    """The guide's node: three one-second fetches run at once with gather."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.running = 0
        self.most_running = 0

    async def execute(self, state):
        results = await asyncio.gather(*(self.fetch(item) for item in state["items"]))
        return {"results": list(results)}

    async def fetch(self, item: int) -> int:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(1)
        finally:
            self.running -= 1
        return item * 10


async def test_async_node(virtual_clock: VirtualClock):
    """Unit testing: the node's update and the merged state, from a real graph run."""
    run = await run_node(MyAsyncNode(), State(query="test"))

    assert run.update == {"result": "Data for test"}
    assert run.state == {"query": "test", "result": "Data for test"}


async def test_with_injected_fetch():
    """With mocking: hand the node a fake dependency instead of patching a method."""
    queries: list[str] = []

    async def fake_fetch(query: str) -> str:
        queries.append(query)
        return "mocked data"

    run = await run_node(MyAsyncNode(fetch=fake_fetch), State(query="test"))

    assert run.update == {"result": "mocked data"}
    assert queries == ["test"]


async def test_timeout(virtual_clock: VirtualClock):
    """Testing timeouts: the 5-second timeout fires at 5 virtual seconds, instantly."""
    with virtual_clock.measure() as stopwatch:
        run = await run_node(TimeoutNode(), {"input": "slow"})

    assert run.update == {"result": None, "timed_out": True}
    assert stopwatch.seconds == 5


async def test_concurrent_by_virtual_time(virtual_clock: VirtualClock):
    """Testing concurrency: three one-second calls take one second, not three."""
    with virtual_clock.measure() as stopwatch:
        run = await run_node(ConcurrentNode(), {"items": [1, 2, 3]})

    assert run.update == {"results": [10, 20, 30]}
    assert stopwatch.seconds == 1


async def test_concurrent_by_counting_overlap(virtual_clock: VirtualClock):
    """Testing concurrency without any clock: all three calls were in flight at once."""
    node = ConcurrentNode()

    await run_node(node, {"items": [1, 2, 3]})

    assert node.most_running == 3
