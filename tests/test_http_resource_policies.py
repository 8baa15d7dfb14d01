"""HTTPResource(rate_limiter=..., retry=...): every request of the pooled session is limited
and retried, honouring Retry-After and the shared cooldown.

A real aiohttp session against the local OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, TypedDict

import aiohttp
import pytest
from aiolimiter import AsyncLimiter
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from tests._openai_server import OpenAIServer, ServerLimits, openai_server

from act_operator_lib import AsyncBaseNode, RateLimiter
from act_operator_lib.resources import HTTPResource

RETRY = RetryPolicy(
    max_attempts=3, initial_interval=0.01, jitter=False, retry_on=aiohttp.ClientError
)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as running:
        yield running


class State(TypedDict, total=False):
    questions: list[str]
    statuses: list[int]


def api_node(resource: HTTPResource) -> AsyncBaseNode:
    class Ask(AsyncBaseNode):
        http = resource

        async def execute(self, state: State) -> dict[str, Any]:
            session = await self.http()
            return {"statuses": [await post(session, q) for q in state["questions"]]}

    return Ask()


async def post(session: aiohttp.ClientSession, question: str) -> int:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": question}]}
    async with session.post("/v1/chat/completions", json=body) as response:
        await response.read()
        return response.status


class PauseRecorded(RateLimiter):
    """A RateLimiter that tells the test when the shared cooldown started."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate)
        self.paused = asyncio.Event()

    async def pause(self, seconds: float) -> None:
        await super().pause(seconds)
        self.paused.set()


async def test_every_request_of_a_node_session_takes_a_token(server: OpenAIServer) -> None:
    limiter = RateLimiter(1000)
    node = api_node(HTTPResource(base_url=server.url, rate_limiter=limiter))
    builder = StateGraph(State)
    builder.add_node("ask", node)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    try:
        result = await builder.compile().ainvoke({"questions": ["a", "b", "c"]})
    finally:
        await node.aclose()
    assert result["statuses"] == [200, 200, 200]
    assert limiter.statistics().granted == 3 == server.statistics().requests


async def test_aiolimiter_works_as_the_session_rate_limiter(server: OpenAIServer) -> None:
    node = api_node(HTTPResource(base_url=server.url, rate_limiter=AsyncLimiter(1000, 1)))
    try:
        session = await node.http()  # type: ignore[attr-defined]
        assert await post(session, "hello") == 200
    finally:
        await node.aclose()


async def test_a_429_is_retried_no_earlier_than_its_retry_after(server: OpenAIServer) -> None:
    server.answer_next(1, 429, {"retry-after": "1"})
    node = api_node(HTTPResource(base_url=server.url, retry=RETRY))
    try:
        session = await node.http()  # type: ignore[attr-defined]
        assert await post(session, "hello") == 200
    finally:
        await node.aclose()
    seen = server.statistics()
    assert (seen.requests, seen.rejected, seen.early_retries) == (2, 1, 0)


async def test_each_retry_takes_its_own_token(server: OpenAIServer) -> None:
    server.answer_next(2, 503, {"retry-after": "0"})
    limiter = RateLimiter(1000)
    node = api_node(HTTPResource(base_url=server.url, rate_limiter=limiter, retry=RETRY))
    try:
        session = await node.http()  # type: ignore[attr-defined]
        assert await post(session, "hello") == 200
    finally:
        await node.aclose()
    assert limiter.statistics().granted == 3 == server.statistics().requests


async def test_a_429_pauses_the_shared_limiter_for_every_other_request(
    server: OpenAIServer,
) -> None:
    server.answer_next(1, 429, {"retry-after": "1"})
    limiter = PauseRecorded(1000)
    node = api_node(HTTPResource(base_url=server.url, rate_limiter=limiter, retry=RETRY))
    try:
        session = await node.http()  # type: ignore[attr-defined]
        first = asyncio.create_task(post(session, "first"))
        await limiter.paused.wait()
        assert await post(session, "second") == 200
        assert await first == 200
    finally:
        await node.aclose()
    seen = server.statistics()
    assert seen.requests == 3
    cooldown_ends = seen.rejections[0] + 1
    assert all(arrival >= cooldown_ends for arrival in seen.arrivals[1:])


async def test_the_last_answer_is_returned_readable_when_no_retry_is_left(
    server: OpenAIServer,
) -> None:
    server.answer_next(5, 429, {"retry-after": "0"})
    retry = RetryPolicy(max_attempts=2, retry_on=aiohttp.ClientError)
    node = api_node(HTTPResource(base_url=server.url, retry=retry))
    try:
        session = await node.http()  # type: ignore[attr-defined]
        body = {"messages": [{"role": "user", "content": "x"}]}
        async with session.post("/v1/chat/completions", json=body) as response:
            assert response.status == 429
            assert (await response.json())["error"]["type"] == "rate_limit_exceeded"
            with pytest.raises(aiohttp.ClientResponseError):
                response.raise_for_status()
    finally:
        await node.aclose()
    assert server.statistics().requests == 2


async def test_an_answer_outside_the_retried_statuses_is_not_retried(
    server: OpenAIServer,
) -> None:
    server.answer_next(1, 400)
    node = api_node(HTTPResource(base_url=server.url, retry=RETRY))
    try:
        session = await node.http()  # type: ignore[attr-defined]
        assert await post(session, "bad") == 400
    finally:
        await node.aclose()
    assert server.statistics().requests == 1


async def test_an_attempt_past_the_timeout_raises_a_timeout_error_after_the_retries() -> None:
    with openai_server(ServerLimits(latency=30)) as slow:
        retry = RetryPolicy(max_attempts=2, initial_interval=0, jitter=False)
        node = api_node(HTTPResource(base_url=slow.url, timeout=0.2, retry=retry))
        try:
            session = await node.http()  # type: ignore[attr-defined]
            with pytest.raises(TimeoutError, match=r"HTTPResource\(timeout=\.\.\.\)"):
                await post(session, "slow")
        finally:
            await node.aclose()
        assert slow.statistics().requests == 2


def test_a_rate_limiter_without_acquire_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"HTTPResource\(rate_limiter=\.\.\.\) must be"):
        HTTPResource(rate_limiter=20)  # type: ignore[arg-type]


def test_a_retry_that_is_not_a_retry_policy_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"HTTPResource\(retry=\.\.\.\) must be"):
        HTTPResource(retry=3)  # type: ignore[arg-type]


def test_the_repr_names_the_rate_limiter_and_the_retry() -> None:
    text = repr(HTTPResource(rate_limiter=RateLimiter(20), retry=RETRY))
    assert "rate_limiter=RateLimiter(" in text
    assert "retry=(RetryPolicy(" in text
