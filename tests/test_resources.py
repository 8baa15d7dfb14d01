"""Pooled resources: one value per event loop, reused, closed on every path."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, TypedDict

import aiohttp
import pytest
from langgraph.graph import START, StateGraph

from _http_server import LocalServer, local_server
from act_operator_lib import (
    ActOperatorError,
    AsyncBaseNode,
    BaseGraph,
    BaseNode,
    ResourceClosedError,
    ResourceUnavailableError,
)
from act_operator_lib.bridge import run_async
from act_operator_lib.resources import HTTPResource, Resource, ResourceStatistics


class State(TypedDict, total=False):
    path: str
    result: Any


class Fetch(AsyncBaseNode):
    http = HTTPResource(limit=2)

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url

    async def get(self, path: str) -> Any:
        session = await self.http()
        async with session.get(self.url + path) as response:
            return await response.json()

    async def execute(self, state: State) -> State:
        return {"result": await self.get(state.get("path", "/"))}


class SyncFetch(BaseNode):
    http = HTTPResource(limit=2)

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url

    async def get(self, path: str) -> Any:
        async with self.http as session, session.get(self.url + path) as response:
            return await response.json()

    def execute(self, state: State) -> State:
        return {"result": run_async(self.get(state.get("path", "/")))}


class OneNodeGraph(BaseGraph):
    def __init__(self, node: Any) -> None:
        super().__init__()
        self.node = node

    def build(self, checkpointer: Any = None, **_: Any) -> Any:
        builder = StateGraph(State)
        builder.add_node("fetch", self.node)
        builder.add_edge(START, "fetch")
        return builder.compile(checkpointer=checkpointer)


class Gate:
    """An object whose close waits until the test lets it finish."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.release = asyncio.Event()


class GatedResource(Resource[Gate]):
    async def open(self) -> Gate:
        return Gate()

    async def close(self, value: Gate) -> None:
        value.closing.set()
        await value.release.wait()


class Gated(AsyncBaseNode):
    gate = GatedResource()

    async def execute(self, state: State) -> State:
        return {}


@pytest.fixture
def server() -> Any:
    with local_server() as running:
        yield running


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_requests_share_at_most_limit_connections(server: LocalServer) -> None:
    node = Fetch(server.url)
    try:
        await asyncio.gather(*(node.get(f"/{index}") for index in range(50)))
    finally:
        await node.aclose()
    assert server.requests == 50
    assert 1 <= len(server.ports) <= 2


async def test_sequential_calls_reuse_one_connection(server: LocalServer) -> None:
    node = Fetch(server.url)
    try:
        for index in range(10):
            await node.get(f"/{index}")
    finally:
        await node.aclose()
    assert server.requests == 10
    assert len(server.ports) == 1


async def test_concurrent_first_use_opens_exactly_one_session() -> None:
    node = Fetch("http://127.0.0.1")
    sessions = await asyncio.gather(*(node.http() for _ in range(20)))
    try:
        assert all(session is sessions[0] for session in sessions)
        assert node.http.statistics().opened == 1
    finally:
        await node.aclose()


async def test_async_with_gives_the_pooled_session() -> None:
    node = Fetch("http://127.0.0.1")
    try:
        async with node.http as first, node.http as second:
            assert first is second
            assert not first.closed
    finally:
        await node.aclose()


async def test_aclose_closes_the_session() -> None:
    node = Fetch("http://127.0.0.1")
    session = await node.http()
    await node.aclose()
    assert session.closed
    assert node.http.statistics().closed == 1


async def test_aclose_is_idempotent() -> None:
    node = Fetch("http://127.0.0.1")
    await node.http()
    await node.aclose()
    await node.aclose()
    assert node.http.statistics().closed == 1


async def test_use_after_aclose_opens_a_fresh_session() -> None:
    node = Fetch("http://127.0.0.1")
    first = await node.http()
    await node.aclose()
    second = await node.http()
    try:
        assert second is not first
        assert not second.closed
    finally:
        await node.aclose()


async def test_aclose_without_use_does_nothing() -> None:
    node = Fetch("http://127.0.0.1")
    await node.aclose()
    assert node.http.statistics().opened == 0


async def test_use_while_aclose_runs_raises_resource_closed_error() -> None:
    node = Gated()
    gate = await node.gate()
    closing = asyncio.create_task(node.aclose())
    await gate.closing.wait()
    with pytest.raises(ResourceClosedError, match="'gate' of 'Gated'"):
        await node.gate()
    gate.release.set()
    await closing


async def test_use_after_a_raced_close_finishes_gets_a_fresh_value() -> None:
    node = Gated()
    gate = await node.gate()
    closing = asyncio.create_task(node.aclose())
    await gate.closing.wait()
    gate.release.set()
    await closing
    fresh = await node.gate()
    assert fresh is not gate
    fresh.release.set()
    await node.aclose()


class Stuck:
    """A value whose opening waits until the test lets it finish."""


class StuckOpening(Resource[Stuck]):
    """Opens only when ``release`` is set; ``started`` says an opening is waiting."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.closed: list[Stuck] = []

    async def open(self) -> Stuck:
        self.started.set()
        await self.release.wait()
        return Stuck()

    async def close(self, value: Stuck) -> None:
        self.closed.append(value)


class Stalled(AsyncBaseNode):
    stuck = StuckOpening()

    async def execute(self, state: State) -> State:
        return {}


@pytest.fixture
def stalled() -> Stalled:
    resource = Stalled.stuck
    resource.started, resource.release, resource.closed = asyncio.Event(), asyncio.Event(), []
    return Stalled()


async def test_waiters_of_an_opening_that_aclose_cancels_get_resource_closed_error(
    stalled: Stalled,
) -> None:
    first = asyncio.create_task(stalled.stuck())
    second = asyncio.create_task(stalled.stuck())
    await Stalled.stuck.started.wait()
    await stalled.aclose()
    for waiter in (first, second):
        with pytest.raises(ResourceClosedError, match="'stuck' of 'Stalled'"):
            await waiter
    assert stalled.stuck.statistics() == ResourceStatistics(opened=0, closed=0, loops=0)


async def test_a_value_opened_just_before_aclose_is_not_handed_to_its_waiters(
    stalled: Stalled,
) -> None:
    waiter = asyncio.create_task(stalled.stuck())
    await Stalled.stuck.started.wait()
    Stalled.stuck.release.set()
    # The opening finishes in this loop iteration; aclose() starts before the waiter
    # resumes, so the value it would have been handed is already being closed.
    while stalled.stuck.statistics().opened == 0:
        await asyncio.sleep(0)
    await stalled.aclose()
    with pytest.raises(ResourceClosedError):
        await waiter
    assert len(Stalled.stuck.closed) == 1
    assert stalled.stuck.statistics() == ResourceStatistics(opened=1, closed=1, loops=0)


async def test_second_aclose_during_close_waits_for_the_same_close() -> None:
    node = Gated()
    gate = await node.gate()
    first = asyncio.create_task(node.aclose())
    await gate.closing.wait()
    second = asyncio.create_task(node.aclose())
    gate.release.set()
    await asyncio.gather(first, second)
    assert node.gate.statistics().closed == 1


def test_each_asyncio_run_gets_its_own_session(server: LocalServer) -> None:
    node = Fetch(server.url)
    first = asyncio.run(node.http())
    second = asyncio.run(node.http())
    assert first is not second


def test_loop_shutdown_closes_the_session_of_that_loop(server: LocalServer) -> None:
    node = Fetch(server.url)
    session = asyncio.run(node.http())
    assert session.closed
    assert node.http.statistics() == type(node.http.statistics())(opened=1, closed=1, loops=0)


def test_node_in_a_graph_works_across_two_asyncio_runs(server: LocalServer) -> None:
    node = Fetch(server.url)
    graph = OneNodeGraph(node)()
    first = asyncio.run(graph.ainvoke({"path": "/one"}))
    second = asyncio.run(graph.ainvoke({"path": "/two"}))
    assert first["result"] == {"path": "/one"}
    assert second["result"] == {"path": "/two"}
    assert node.http.statistics().closed == 2


def test_sync_node_reuses_its_session_across_sync_invokes(server: LocalServer) -> None:
    with OneNodeGraph(SyncFetch(server.url)) as cast:
        graph = cast()
        for index in range(5):
            assert graph.invoke({"path": f"/{index}"})["result"] == {"path": f"/{index}"}
    assert server.requests == 5
    assert len(server.ports) == 1


def test_sync_graph_exit_closes_the_sync_node_session(server: LocalServer) -> None:
    node = SyncFetch(server.url)
    with OneNodeGraph(node) as cast:
        cast().invoke({"path": "/"})
    assert node.http.statistics().closed == 1


async def test_async_graph_exit_closes_node_resources(server: LocalServer) -> None:
    node = Fetch(server.url)
    async with OneNodeGraph(node) as cast:
        await cast().ainvoke({"path": "/"})
        session = await node.http()
    assert session.closed


async def test_graph_exit_closes_resources_of_subgraph_nodes(server: LocalServer) -> None:
    node = Fetch(server.url)

    class Outer(BaseGraph):
        def build(self, checkpointer: Any = None, **_: Any) -> Any:
            builder = StateGraph(State)
            builder.add_node("inner", OneNodeGraph(node)())
            builder.add_edge(START, "inner")
            return builder.compile()

    async with Outer() as cast:
        await cast().ainvoke({"path": "/"})
    assert node.http.statistics().closed == 1


async def test_unreachable_http_host_raises_resource_unavailable_naming_it() -> None:
    port = closed_port()
    node = Fetch(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(ResourceUnavailableError, match=f"127.0.0.1:{port}"):
            await node.get("/")
    finally:
        await node.aclose()


async def test_unreachable_http_host_error_is_also_an_aiohttp_error() -> None:
    node = Fetch(f"http://127.0.0.1:{closed_port()}")
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await node.get("/")
    finally:
        await node.aclose()


def test_resource_errors_are_act_operator_errors() -> None:
    assert issubclass(ResourceUnavailableError, ActOperatorError)
    assert issubclass(ResourceUnavailableError, ConnectionError)
    assert issubclass(ResourceClosedError, RuntimeError)


async def test_base_url_and_headers_apply_to_every_request(server: LocalServer) -> None:
    class Api(AsyncBaseNode):
        http = HTTPResource(base_url=server.url, headers={"X-Test": "1"})

        async def execute(self, state: State) -> State:
            return {}

    node = Api()
    try:
        session = await node.http()
        async with session.get("/items") as response:
            assert await response.json() == {"path": "/items"}
            assert response.request_info.headers["X-Test"] == "1"
    finally:
        await node.aclose()


def test_resource_cannot_be_assigned_on_an_instance() -> None:
    with pytest.raises(AttributeError, match="declared resource"):
        Fetch("http://127.0.0.1").http = None  # type: ignore[assignment]


def test_http_resource_rejects_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        HTTPResource(limit=0)


def test_class_attribute_is_the_declaration() -> None:
    assert isinstance(Fetch.http, HTTPResource)
