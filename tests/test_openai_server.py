"""The local OpenAI-compatible server the LLM tests and benchmarks run against.

Checked with the real openai SDK (through ChatOpenAI), so the tests and benchmarks
built on it measure what a provider would answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_openai import ChatOpenAI
from tests._openai_server import (
    ChatModels,
    OpenAIServer,
    ServerLimits,
    openai_server,
    openai_server_process,
)

from act_operator_lib._retry_after import retry_after


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server(ServerLimits(requests_per_second=3, tokens_per_second=1000)) as running:
        yield running


@pytest.fixture
async def chat(server: OpenAIServer) -> AsyncIterator[ChatModels]:
    models = ChatModels(server)
    yield models
    await models.aclose()


async def test_a_completion_reports_the_cost_named_in_the_message_as_usage(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    message = await chat().ainvoke("cost=120 hello")
    assert isinstance(message, AIMessage)
    assert message.text
    assert message.usage_metadata is not None
    assert message.usage_metadata["total_tokens"] == 120
    assert server.statistics().tokens == 120


async def test_a_stream_sends_chunks_and_a_final_usage_chunk(
    server: OpenAIServer, chat: ChatModels
) -> None:
    chunks = [chunk async for chunk in chat().astream("cost=80 hello")]
    assert len(chunks) > 3
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total, AIMessageChunk)
    assert total.text.startswith("Hello from the local server")
    assert total.usage_metadata is not None
    assert total.usage_metadata["total_tokens"] == 80


def test_sync_invoke_works_against_the_server(server: OpenAIServer, chat: ChatModels) -> None:
    message = chat().invoke("cost=10 hi")
    assert message.usage_metadata is not None
    assert message.usage_metadata["total_tokens"] == 10


async def test_requests_above_the_request_rate_get_429_with_retry_headers(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    model = chat()
    results = await asyncio.gather(
        *(model.ainvoke(f"cost=1 call {n}") for n in range(4)), return_exceptions=True
    )
    errors = [result for result in results if isinstance(result, BaseException)]
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, openai.RateLimitError)
    headers = error.response.headers
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert {"retry-after", "retry-after-ms", "x-ratelimit-reset-requests"} <= set(headers)
    seconds = retry_after(error)
    assert seconds is not None
    assert 0 < seconds <= 1
    assert server.statistics().rejected == 1


async def test_a_call_above_the_token_rate_gets_429(server: OpenAIServer, chat: ChatModels) -> None:
    model = chat()
    await model.ainvoke("cost=900 first")
    with pytest.raises(openai.RateLimitError) as caught:
        await model.ainvoke("cost=200 second")
    assert caught.value.response.headers["x-ratelimit-remaining-tokens"] == "100"


async def test_a_retry_before_the_retry_after_counts_as_early(
    server: OpenAIServer, chat: ChatModels
) -> None:
    server.answer_next(1, 429, {"retry-after": "30"})
    model = chat()
    with pytest.raises(openai.RateLimitError):
        await model.ainvoke("cost=1 same")
    await model.ainvoke("cost=1 same")
    assert server.statistics().early_retries == 1


async def test_an_outage_answers_429_until_it_ends(server: OpenAIServer, chat: ChatModels) -> None:
    server.outage(60, retry_after=2)
    with pytest.raises(openai.RateLimitError) as caught:
        await chat().ainvoke("cost=1 during")
    assert retry_after(caught.value) == 2.0


def test_the_server_also_runs_in_a_process_of_its_own() -> None:
    with openai_server_process(ServerLimits(requests_per_second=1)) as remote:
        model = ChatOpenAI(model="gpt-test", base_url=remote.base_url, api_key="t", max_retries=0)
        assert model.invoke("cost=15 hi").usage_metadata["total_tokens"] == 15  # type: ignore[index]
        with pytest.raises(openai.RateLimitError):
            model.invoke("cost=15 again")
        seen = remote.statistics()
    assert (seen.requests, seen.rejected, seen.rejected_for) == (2, 1, {"requests": 1})
