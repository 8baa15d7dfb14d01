"""retry_after(error): the wait a server asks for, read from the real clients' errors.

Every error here is raised by the real client (openai through langchain-openai's
ChatOpenAI, anthropic, httpx, aiohttp, requests) against a real aiohttp server on
127.0.0.1 answering what each test sets up.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email.utils import formatdate
from typing import Any, TypedDict

import aiohttp
import anthropic
import httpx
import openai
import pytest
import requests
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from tests._openai_server import ChatModels, OpenAIServer, openai_server

from act_operator_lib import AsyncBaseNode
from act_operator_lib._retry_after import MAX_RETRY_AFTER, retry_after


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as running:
        yield running


@pytest.fixture
async def chat(server: OpenAIServer) -> AsyncIterator[ChatModels]:
    models = ChatModels(server)
    yield models
    await models.aclose()


async def httpx_error(server: OpenAIServer, status: int, headers: dict[str, str]) -> Exception:
    """The HTTPStatusError httpx raises for one answer with ``status`` and ``headers``."""
    server.answer_next(1, status, headers)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{server.base_url}/chat/completions", json={})
        with pytest.raises(httpx.HTTPStatusError) as caught:
            response.raise_for_status()
    return caught.value


async def test_openai_rate_limit_error_from_chat_openai_gives_its_retry_after(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    server.answer_next(1, 429, {"retry-after": "1"})
    with pytest.raises(openai.RateLimitError) as caught:
        await chat().ainvoke("hello")
    assert caught.value.response.headers["retry-after"] == "1"
    assert retry_after(caught.value) == 1.0


async def test_anthropic_rate_limit_error_gives_its_retry_after(server: OpenAIServer) -> None:
    server.answer_next(1, 429, {"retry-after": "3"})
    async with anthropic.AsyncAnthropic(
        base_url=server.url, api_key="test", max_retries=0
    ) as client:
        with pytest.raises(anthropic.RateLimitError) as caught:
            await client.messages.create(
                model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
    assert retry_after(caught.value) == 3.0


async def test_httpx_status_error_gives_its_retry_after(server: OpenAIServer) -> None:
    error = await httpx_error(server, 503, {"Retry-After": "2"})
    assert retry_after(error) == 2.0


async def test_aiohttp_client_response_error_gives_its_retry_after(server: OpenAIServer) -> None:
    server.answer_next(1, 429, {"retry-after": "4"})
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            await session.post(f"{server.base_url}/chat/completions", json={})
    assert caught.value.headers is not None
    assert retry_after(caught.value) == 4.0


def test_requests_http_error_gives_its_retry_after(server: OpenAIServer) -> None:
    server.answer_next(1, 429, {"retry-after": "5"})
    response = requests.post(f"{server.base_url}/chat/completions", json={}, timeout=10)
    with pytest.raises(requests.HTTPError) as caught:
        response.raise_for_status()
    response.close()
    assert retry_after(caught.value) == 5.0


def test_requests_connection_error_without_a_response_gives_none() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as caught:
        requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert retry_after(caught.value) is None


async def test_retry_after_ms_is_read_in_milliseconds_and_wins(server: OpenAIServer) -> None:
    error = await httpx_error(server, 429, {"retry-after-ms": "1500", "retry-after": "2"})
    assert retry_after(error) == 1.5


async def test_retry_after_as_an_http_date_gives_the_seconds_until_then(
    server: OpenAIServer,
) -> None:
    error = await httpx_error(
        server, 503, {"retry-after": formatdate(time.time() + 30, usegmt=True)}
    )
    seconds = retry_after(error)
    assert seconds is not None
    assert 25 < seconds <= 30


async def test_retry_after_as_an_http_date_in_the_past_gives_zero(server: OpenAIServer) -> None:
    error = await httpx_error(server, 503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after(error) == 0.0


async def test_a_429_without_retry_after_takes_the_larger_openai_reset(
    server: OpenAIServer,
) -> None:
    error = await httpx_error(
        server, 429, {"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "1.5s"}
    )
    assert retry_after(error) == 1.5


async def test_openai_reset_durations_with_minutes_are_read(server: OpenAIServer) -> None:
    error = await httpx_error(server, 429, {"x-ratelimit-reset-tokens": "0m30.5s"})
    assert retry_after(error) == 30.5


async def test_resets_are_ignored_when_the_answer_is_not_a_429(server: OpenAIServer) -> None:
    error = await httpx_error(server, 500, {"x-ratelimit-reset-requests": "1s"})
    assert retry_after(error) is None


@pytest.mark.parametrize("value", ["soon", "-5", "nan", "inf", "1e400", "", "Mon, 99 Foo"])
async def test_an_unreadable_retry_after_is_ignored(server: OpenAIServer, value: str) -> None:
    error = await httpx_error(server, 503, {"retry-after": value})
    assert retry_after(error) is None


@pytest.mark.parametrize("value", ["6x", "1h-2m", "m5s", "20 ms"])
async def test_an_unreadable_reset_duration_is_ignored(server: OpenAIServer, value: str) -> None:
    error = await httpx_error(server, 429, {"x-ratelimit-reset-requests": value})
    assert retry_after(error) is None


async def test_an_unreadable_retry_after_falls_back_to_the_reset_on_a_429(
    server: OpenAIServer,
) -> None:
    error = await httpx_error(
        server, 429, {"retry-after": "later", "x-ratelimit-reset-requests": "2s"}
    )
    assert retry_after(error) == 2.0


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "86400"},
        {"retry-after-ms": "99999999"},
        {"retry-after": formatdate(time.time() + 10 * 365 * 86400, usegmt=True)},
        {"x-ratelimit-reset-tokens": "6m0s"},
    ],
)
async def test_a_wait_longer_than_the_cap_is_cut_to_the_cap(
    server: OpenAIServer, headers: dict[str, str]
) -> None:
    error = await httpx_error(server, 429, headers)
    assert retry_after(error) == MAX_RETRY_AFTER == 60.0


class RateLimited(Exception):
    def __init__(self, seconds: Any) -> None:
        super().__init__("rate limited")
        self.retry_after = seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7.0), (0.25, 0.25), (timedelta(seconds=3), 3.0), ("2", 2.0), (3600, MAX_RETRY_AFTER)],
)
def test_a_retry_after_attribute_is_read_in_seconds(value: object, expected: float) -> None:
    assert retry_after(RateLimited(value)) == expected


@pytest.mark.parametrize("value", [True, -1, float("nan"), float("inf"), None, "soon", object()])
def test_an_unusable_retry_after_attribute_is_ignored(value: object) -> None:
    assert retry_after(RateLimited(value)) is None


async def test_the_retry_after_attribute_wins_over_the_headers(server: OpenAIServer) -> None:
    error = await httpx_error(server, 429, {"retry-after": "9"})
    error.retry_after = 1  # type: ignore[attr-defined]
    assert retry_after(error) == 1.0


class State(TypedDict, total=False):
    question: str
    answer: str


class Ask(AsyncBaseNode):
    """One LLM call, retried by the node policy on the SDK's rate limit error."""

    retry = RetryPolicy(max_attempts=3, initial_interval=0.05, retry_on=openai.RateLimitError)

    def __init__(self, model: ChatOpenAI, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    async def execute(self, state: State) -> dict[str, Any]:
        message = await self.model.ainvoke(state["question"])
        assert isinstance(message, AIMessage)
        return {"answer": message.text}


async def test_a_node_retry_waits_for_the_retry_after_of_chat_openai_429(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    server.answer_next(1, 429, {"retry-after": "1"})
    builder = StateGraph(State)
    builder.add_node("ask", Ask(chat()))
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)

    result = await builder.compile().ainvoke({"question": "hello"})

    assert result["answer"]
    seen = server.statistics()
    assert (seen.requests, seen.rejected) == (2, 1)
    assert seen.early_retries == 0
