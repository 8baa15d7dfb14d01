"""Per-item ``retry=`` of map_concurrent, as_completed and map_durable.

A real aiohttp server on 127.0.0.1 answers 429 (with Retry-After) or 503 as each
test needs, and counts what it saw; the items are real aiohttp requests made from
nodes of real graphs. Assertions are on counts of requests, never on times.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from langgraph.store.memory import InMemoryStore
from langgraph.types import RetryPolicy, interrupt
from tests._fan_out_graphs import State, config, graph_of

from act_operator_lib import (
    AsyncBaseNode,
    ItemTimeoutError,
    RateLimiter,
    as_completed,
    map_concurrent,
    map_durable,
)
from act_operator_lib.durable import NAMESPACE_ROOT

QUICK = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=False)
"""Retries 10 ms apart: far sooner than any Retry-After the server sends."""


@dataclass
class Plan:
    """What the server answers for one path before it answers 200."""

    refusals: int = 0
    status: int = 503
    retry_after: str | None = None
    hang_first: bool = False


@dataclass
class Server:
    """A real HTTP server: answers by plan, counts requests per path and in cooldowns."""

    url: str = ""
    plans: dict[str, Plan] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)
    cooldown_until: float = 0.0
    during_cooldown: int = 0
    release_hung: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def requests(self) -> int:
        return sum(self.seen.values())

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["item"]
        self.seen[path] += 1
        now = asyncio.get_running_loop().time()
        if now < self.cooldown_until:
            self.during_cooldown += 1
            return web.Response(status=429, headers={"Retry-After": "1"})
        plan = self.plans.get(path, Plan())
        if plan.hang_first and self.seen[path] == 1:
            await self.release_hung.wait()
        if self.seen[path] <= plan.refusals:
            headers = {}
            if plan.retry_after is not None:
                headers["Retry-After"] = plan.retry_after
                self.cooldown_until = now + float(plan.retry_after)
            return web.Response(status=plan.status, headers=headers)
        return web.json_response({"item": path})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    app = web.Application()
    app.router.add_get("/items/{item}", state.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        state.release_hung.set()
        await runner.cleanup()


class Fetch(AsyncBaseNode):
    """Fetches ``/items/<n>`` for every item with map_concurrent (or another fan-out)."""

    def __init__(self, server: Server, how: str = "map", **fan_out: Any) -> None:
        super().__init__()
        self.server = server
        self.how = how
        self.fan_out = fan_out

    async def fetch(self, item: int) -> str:
        async with self.session.get(f"{self.server.url}/items/{item}") as response:
            response.raise_for_status()
            body = await response.json()
            return str(body["item"])

    async def execute(self, state: State) -> State:
        async with aiohttp.ClientSession() as self.session:
            if self.how == "map":
                results = await map_concurrent(self.fetch, state["items"], **self.fan_out)
            elif self.how == "stream":
                found: dict[int, Any] = {}
                async with as_completed(self.fetch, state["items"], **self.fan_out) as done:
                    async for index, value in done:
                        found[index] = value
                results = [found[index] for index in sorted(found)]
            else:
                results = await map_durable(self.fetch, state["items"], key=str, **self.fan_out)
        return {"results": results}


# Retrying


@pytest.mark.parametrize("how", ["map", "stream", "durable"])
async def test_an_item_the_server_refused_is_retried_until_it_succeeds(
    server: Server, how: str
) -> None:
    server.plans["3"] = Plan(refusals=2)
    graph = graph_of(Fetch(server, how, limit=4, retry=QUICK), store=InMemoryStore())
    state = await graph.ainvoke({"items": list(range(6))}, config())
    assert state["results"] == ["0", "1", "2", "3", "4", "5"]
    assert server.seen["3"] == 3
    assert server.requests == 8


async def test_an_item_past_its_attempts_fails_with_the_last_error(server: Server) -> None:
    server.plans["1"] = Plan(refusals=5)
    node = Fetch(server, limit=2, retry=QUICK, return_exceptions=True)
    state = await graph_of(node).ainvoke({"items": [0, 1, 2]}, config())
    assert state["results"][0] == "0"
    assert isinstance(state["results"][1], aiohttp.ClientResponseError)
    assert state["results"][1].status == 503
    assert server.seen["1"] == QUICK.max_attempts


async def test_an_error_the_policy_does_not_name_is_not_retried(server: Server) -> None:
    server.plans["1"] = Plan(refusals=1)
    only_timeouts = RetryPolicy(max_attempts=3, initial_interval=0.01, retry_on=TimeoutError)
    node = Fetch(server, limit=2, retry=only_timeouts, return_exceptions=True)
    state = await graph_of(node).ainvoke({"items": [0, 1]}, config())
    assert isinstance(state["results"][1], aiohttp.ClientResponseError)
    assert server.seen["1"] == 1


async def test_a_list_of_policies_applies_the_first_that_matches(server: Server) -> None:
    server.plans["0"] = Plan(refusals=3)
    policies = [
        RetryPolicy(max_attempts=2, retry_on=TimeoutError),
        RetryPolicy(max_attempts=4, initial_interval=0.01, jitter=False),
    ]
    state = await graph_of(Fetch(server, limit=1, retry=policies)).ainvoke({"items": [0]}, config())
    assert state["results"] == ["0"]
    assert server.seen["0"] == 4


async def test_each_attempt_takes_its_own_rate_token(server: Server) -> None:
    server.plans["0"] = Plan(refusals=2)
    server.plans["2"] = Plan(refusals=1)
    limiter = RateLimiter(1000)
    node = Fetch(server, limit=3, retry=QUICK, rate_limiter=limiter)
    await graph_of(node).ainvoke({"items": [0, 1, 2, 3]}, config())
    assert server.requests == 7
    assert limiter.statistics().granted == server.requests


async def test_each_attempt_has_its_own_timeout(server: Server) -> None:
    server.plans["1"] = Plan(hang_first=True)
    node = Fetch(server, limit=2, retry=QUICK, timeout=0.5)
    state = await graph_of(node).ainvoke({"items": [0, 1]}, config())
    assert state["results"] == ["0", "1"]
    assert server.seen["1"] == 2


async def test_an_attempt_past_its_timeout_fails_with_item_timeout_error(
    server: Server,
) -> None:
    server.plans["0"] = Plan(hang_first=True)
    once = RetryPolicy(max_attempts=1)
    node = Fetch(server, limit=1, retry=once, timeout=0.2, return_exceptions=True)
    state = await graph_of(node).ainvoke({"items": [0]}, config())
    assert isinstance(state["results"][0], ItemTimeoutError)
    assert state["results"][0].index == 0


# Retry-After and the shared cooldown


async def test_an_item_waits_the_retry_after_the_server_asked_for(server: Server) -> None:
    server.plans["0"] = Plan(refusals=1, status=429, retry_after="1")
    state = await graph_of(Fetch(server, limit=1, retry=QUICK)).ainvoke({"items": [0]}, config())
    assert state["results"] == ["0"]
    assert server.during_cooldown == 0
    assert server.seen["0"] == 2


async def test_a_retry_after_pauses_every_item_sharing_the_rate_limiter(server: Server) -> None:
    # One request every 0.5 s: item 0's 429 arrives long before item 1 may go,
    # and its Retry-After pauses the limiter for every item waiting on it.
    server.plans["0"] = Plan(refusals=1, status=429, retry_after="1")
    limiter = RateLimiter(1, per=0.5)
    node = Fetch(server, limit=4, retry=QUICK, rate_limiter=limiter)
    state = await graph_of(node).ainvoke({"items": [0, 1, 2, 3]}, config())
    assert state["results"] == ["0", "1", "2", "3"]
    assert server.during_cooldown == 0
    assert server.requests == 5
    assert limiter.statistics().pauses == 1


# Retries are counted, streamed and logged


async def test_retries_are_streamed_and_counted_in_the_progress_reports(server: Server) -> None:
    server.plans["1"] = Plan(refusals=2)
    graph = graph_of(Fetch(server, limit=2, retry=QUICK, progress=True))
    chunks = [
        chunk async for chunk in graph.astream({"items": [0, 1, 2]}, config(), stream_mode="custom")
    ]
    retries = [chunk["retry"] for chunk in chunks if "retry" in chunk]
    assert [(retry["index"], retry["attempt"]) for retry in retries] == [(1, 1), (1, 2)]
    assert all("503" in retry["error"] for retry in retries)
    reports = [chunk for chunk in chunks if "done" in chunk]
    assert reports[0] == {"done": 0, "total": 3, "retries": 0}
    assert reports[-1] == {"done": 3, "total": 3, "retries": 2}


async def test_retries_are_logged_at_warning(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.plans["2"] = Plan(refusals=1)
    with caplog.at_level(logging.WARNING, logger="act_operator_lib.concurrency"):
        await graph_of(Fetch(server, limit=2, retry=QUICK)).ainvoke({"items": [0, 2]}, config())
    [record] = [r for r in caplog.records if r.name == "act_operator_lib.concurrency"]
    assert record.levelno == logging.WARNING
    assert "[map_concurrent] item 1 attempt 1 failed" in record.getMessage()
    assert record.__dict__["item"] == 1
    assert record.__dict__["event"] == "retry"


async def test_an_attempt_past_its_timeout_is_logged_at_warning(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.plans["0"] = Plan(hang_first=True)
    node = Fetch(server, limit=1, retry=QUICK, timeout=0.2)
    with caplog.at_level(logging.WARNING, logger="act_operator_lib.concurrency"):
        state = await graph_of(node).ainvoke({"items": [0]}, config())
    assert state["results"] == ["0"]
    events = [
        (r.__dict__["event"], r.__dict__["attempt"])
        for r in caplog.records
        if r.name == "act_operator_lib.concurrency"
    ]
    assert events == [("timeout", 1), ("retry", 1)]


# What is never retried


async def test_an_interrupt_in_an_item_is_never_retried() -> None:
    asked: list[int] = []

    async def ask(item: int) -> str:
        asked.append(item)
        return str(interrupt(f"approve {item}?"))

    class Ask(AsyncBaseNode):
        async def execute(self, state: State) -> State:
            return {"results": await map_concurrent(ask, state["items"], limit=1, retry=QUICK)}

    result = await graph_of(Ask()).ainvoke({"items": [0]}, config())
    assert "__interrupt__" in result
    assert asked == [0]


async def test_map_durable_records_only_the_final_result_of_a_retried_item(
    server: Server,
) -> None:
    server.plans["1"] = Plan(refusals=1)
    store = InMemoryStore()
    graph = graph_of(Fetch(server, "durable", limit=2, retry=QUICK), store=store)
    await graph.ainvoke({"items": [0, 1]}, config())
    records = {item.key: item.value for item in await store.asearch(NAMESPACE_ROOT)}
    assert records == {"0": {"result": "0"}, "1": {"result": "1"}}
    assert server.seen == Counter({"0": 1, "1": 2})


async def test_map_concurrent_refuses_a_retry_that_is_not_a_retry_policy() -> None:
    async def item(value: int) -> int:
        return value

    with pytest.raises(TypeError, match=r"map_concurrent retry must be a LangGraph RetryPolicy"):
        await map_concurrent(item, [1], limit=1, retry=3)  # type: ignore[arg-type]
