"""LangChain integration: our limiters as ``rate_limiter=``, and token budgets from usage.

Real ChatOpenAI (the openai SDK) in real LangGraph graphs, against the local
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypedDict

import pytest
from aiolimiter import AsyncLimiter
from langchain_core.messages import AIMessage
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from tests._openai_server import OpenAIServer, openai_server

from act_operator_lib import AsyncBaseNode, BaseNode, RateLimiter
from act_operator_lib.integrations.langchain import LangChainRateLimiter


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as running:
        yield running


def chat(server: OpenAIServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model="gpt-test",
        base_url=server.base_url,
        api_key="test",
        max_retries=0,
        stream_usage=True,
        **kwargs,
    )


class State(TypedDict, total=False):
    questions: list[str]
    answers: list[str]
    tokens: int


def graph_of(node: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("ask", node)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder.compile()


class AskAll(AsyncBaseNode):
    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    async def execute(self, state: State) -> dict[str, Any]:
        answers = [await self.model.ainvoke(question) for question in state["questions"]]
        return {"answers": [answer.text for answer in answers]}


class AskAllSync(BaseNode):
    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def execute(self, state: State) -> dict[str, Any]:
        answers = [self.model.invoke(question) for question in state["questions"]]
        return {"answers": [answer.text for answer in answers]}


QUESTIONS = {"questions": ["cost=10 one", "cost=20 two", "cost=30 three"]}


def test_the_adapter_is_a_langchain_rate_limiter() -> None:
    assert isinstance(LangChainRateLimiter(RateLimiter(10)), BaseRateLimiter)


async def test_a_rate_limiter_as_chat_openai_rate_limiter_takes_a_token_per_request(
    server: OpenAIServer,
) -> None:
    limiter = RateLimiter(1000)
    model = chat(server, rate_limiter=LangChainRateLimiter(limiter))

    result = await graph_of(AskAll(model)).ainvoke(QUESTIONS)

    assert len(result["answers"]) == 3
    assert limiter.statistics().granted == 3 == server.statistics().requests


def test_sync_invoke_in_a_sync_graph_takes_tokens_from_the_same_limiter(
    server: OpenAIServer,
) -> None:
    limiter = RateLimiter(1000)
    model = chat(server, rate_limiter=LangChainRateLimiter(limiter))

    result = graph_of(AskAllSync(model)).invoke(QUESTIONS)

    assert len(result["answers"]) == 3
    assert limiter.statistics().granted == 3


async def test_astream_takes_a_token_per_request(server: OpenAIServer) -> None:
    limiter = RateLimiter(1000)
    model = chat(server, rate_limiter=LangChainRateLimiter(limiter))
    chunks = [chunk async for chunk in model.astream("cost=5 stream")]
    assert chunks
    assert limiter.statistics().granted == 1


async def test_aiolimiter_works_as_the_limiter_behind_the_adapter(server: OpenAIServer) -> None:
    model = chat(server, rate_limiter=LangChainRateLimiter(AsyncLimiter(1000, 1)))
    message = await model.ainvoke("cost=5 hello")
    assert isinstance(message, AIMessage)


async def test_a_non_blocking_acquire_takes_a_free_token_and_refuses_to_wait() -> None:
    limiter = RateLimiter(1, per=60)
    adapter = LangChainRateLimiter(limiter)
    assert await adapter.aacquire(blocking=False) is True
    assert await adapter.aacquire(blocking=False) is False
    assert limiter.statistics().granted == 1


def test_a_non_blocking_sync_acquire_refuses_to_wait() -> None:
    limiter = RateLimiter(1, per=60)
    adapter = LangChainRateLimiter(limiter)
    assert adapter.acquire(blocking=False) is True
    assert adapter.acquire(blocking=False) is False


def test_an_object_without_acquire_is_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"LangChainRateLimiter\(limiter=\.\.\.\) must be"):
        LangChainRateLimiter(40)  # type: ignore[arg-type]
