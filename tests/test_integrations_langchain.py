"""LangChain integration: our limiters as ``rate_limiter=``, and token budgets from usage.

Real ChatOpenAI (the openai SDK) in real LangGraph graphs, against the local
OpenAI-compatible server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypedDict

import openai
import pytest
from aiolimiter import AsyncLimiter
from langchain_core.messages import AIMessage
from langchain_core.rate_limiters import BaseRateLimiter
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from tests._openai_server import ChatModels, OpenAIServer, openai_server

from act_operator_lib import AsyncBaseNode, BaseNode, RateLimiter
from act_operator_lib.integrations.langchain import (
    LangChainRateLimiter,
    TokenBudgetModel,
    with_token_budget,
)
from act_operator_lib.limits import MultiRateLimiter, Rate, Reservation


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with openai_server() as running:
        yield running


@pytest.fixture
async def chat(server: OpenAIServer) -> AsyncIterator[ChatModels]:
    models = ChatModels(server)
    yield models
    await models.aclose()


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
    chat: ChatModels,
) -> None:
    limiter = RateLimiter(1000)
    model = chat(rate_limiter=LangChainRateLimiter(limiter))

    result = await graph_of(AskAll(model)).ainvoke(QUESTIONS)

    assert len(result["answers"]) == 3
    assert limiter.statistics().granted == 3 == server.statistics().requests


def test_sync_invoke_in_a_sync_graph_takes_tokens_from_the_same_limiter(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    limiter = RateLimiter(1000)
    model = chat(rate_limiter=LangChainRateLimiter(limiter))

    result = graph_of(AskAllSync(model)).invoke(QUESTIONS)

    assert len(result["answers"]) == 3
    assert limiter.statistics().granted == 3


async def test_astream_takes_a_token_per_request(server: OpenAIServer, chat: ChatModels) -> None:
    limiter = RateLimiter(1000)
    model = chat(rate_limiter=LangChainRateLimiter(limiter))
    chunks = [chunk async for chunk in model.astream("cost=5 stream")]
    assert chunks
    assert limiter.statistics().granted == 1


async def test_aiolimiter_works_as_the_limiter_behind_the_adapter(
    server: OpenAIServer, chat: ChatModels
) -> None:
    model = chat(rate_limiter=LangChainRateLimiter(AsyncLimiter(1000, 1)))
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


def budget() -> MultiRateLimiter:
    return MultiRateLimiter(requests=Rate(1000, burst=1000), tokens=Rate(100_000, burst=100_000))


def granted(limiter: MultiRateLimiter) -> tuple[int, int]:
    rates = limiter.statistics().rates
    return rates["requests"].granted, rates["tokens"].granted


class StreamAll(AsyncBaseNode):
    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    async def execute(self, state: State) -> dict[str, Any]:
        answers = []
        for question in state["questions"]:
            text = ""
            async for chunk in self.model.astream(question):
                text += chunk.text
            answers.append(text)
        return {"answers": answers}


async def test_ainvoke_in_a_graph_settles_each_call_to_its_usage(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)

    result = await graph_of(AskAll(model)).ainvoke(QUESTIONS)

    assert len(result["answers"]) == 3
    assert granted(limiter) == (3, 10 + 20 + 30)


def test_sync_invoke_in_a_sync_graph_settles_each_call_to_its_usage(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)

    result = graph_of(AskAllSync(model)).invoke(QUESTIONS)

    assert len(result["answers"]) == 3
    assert granted(limiter) == (3, 60)


async def test_astream_in_a_graph_settles_to_the_usage_of_the_final_chunk(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)

    result = await graph_of(StreamAll(model)).ainvoke(QUESTIONS)

    assert all(answer.startswith("Hello from the local server") for answer in result["answers"])
    assert granted(limiter) == (3, 60)


def test_sync_stream_settles_to_the_usage_of_the_final_chunk(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)
    chunks = list(model.stream("cost=70 story"))
    assert chunks
    assert granted(limiter) == (1, 70)


class RecordingBudget(MultiRateLimiter):
    """A MultiRateLimiter that keeps the costs it was asked to reserve."""

    def __init__(self, tokens: int = 100_000) -> None:
        super().__init__(requests=Rate(1_000, burst=1_000), tokens=Rate(tokens, burst=tokens))
        self.asked: list[int] = []

    def reserve(self, **costs: int) -> Reservation:
        self.asked.append(costs["tokens"])
        return super().reserve(**costs)


async def test_later_calls_reserve_what_the_earlier_ones_cost(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = RecordingBudget()
    model = with_token_budget(chat(), limiter, estimate=100)

    for cost in (300, 300, 200):
        await model.ainvoke(f"cost={cost} hello")

    # The first call reserves the estimate; the next ones the average total plus twice
    # its mean deviation: 300 + 2 x 200 (the first total's distance from the guess),
    # then 300 + 2 x 100 (the mean of the deviations 200 and 0).
    assert limiter.asked == [100, 700, 500]


async def test_a_learned_estimate_never_asks_more_than_the_rate_grants_at_once(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = RecordingBudget(tokens=250)
    model = with_token_budget(chat(), limiter, estimate=100)

    for cost in (300, 300):
        await model.ainvoke(f"cost={cost} hello")

    assert limiter.asked == [100, 250]


async def test_with_learn_off_every_call_reserves_the_estimate(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = RecordingBudget()
    model = with_token_budget(chat(), limiter, estimate=100, learn=False)

    for cost in (300, 300):
        await model.ainvoke(f"cost={cost} hello")

    assert limiter.asked == [100, 100]


async def test_a_known_cost_is_reserved_exactly_by_an_estimate_function(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    limiter = budget()
    reserved: list[int] = []

    def cost_of(text: Any) -> int:
        reserved.append(int(str(text).split()[0].removeprefix("cost=")))
        return reserved[-1]

    model = with_token_budget(chat(), limiter, estimate=cost_of)
    await graph_of(AskAll(model)).ainvoke(QUESTIONS)

    assert reserved == [10, 20, 30]
    assert granted(limiter) == (3, 60)


async def test_a_stream_without_usage_keeps_the_estimate(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = budget()
    model = with_token_budget(chat(stream_usage=False), limiter, estimate=100)
    chunks = [chunk async for chunk in model.astream("cost=30 no usage")]
    assert chunks
    assert granted(limiter) == (1, 100)


async def test_a_429_refunds_the_tokens_and_pauses_the_limiter_for_everyone(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    server.answer_next(1, 429, {"retry-after": "1"})
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)

    with pytest.raises(openai.RateLimitError):
        await model.ainvoke("cost=30 refused")

    assert granted(limiter) == (1, 0)
    assert limiter.statistics().pauses == 1


async def test_a_node_retry_after_a_429_resends_no_earlier_than_the_retry_after(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    server.answer_next(1, 429, {"retry-after": "1"})
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)
    node = AskAll(model, retry=RetryPolicy(max_attempts=2, retry_on=openai.RateLimitError))

    result = await graph_of(node).ainvoke({"questions": ["cost=40 again"]})

    assert len(result["answers"]) == 1
    seen = server.statistics()
    assert (seen.requests, seen.rejected, seen.early_retries) == (2, 1, 0)
    assert granted(limiter) == (2, 40)


async def test_an_abandoned_stream_keeps_the_estimate(
    server: OpenAIServer, chat: ChatModels
) -> None:
    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=100)
    stream = model.astream("cost=30 abandoned")
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    assert granted(limiter) == (1, 100)


def test_bind_tools_keeps_the_budget(server: OpenAIServer, chat: ChatModels) -> None:
    def lookup(city: str) -> str:
        """Look up a city."""
        return city

    limiter = budget()
    model = with_token_budget(chat(), limiter, estimate=50)
    bound = model.bind_tools([lookup])
    assert isinstance(bound, TokenBudgetModel)
    bound.invoke("cost=25 tools")
    assert granted(limiter) == (1, 25)


async def test_a_multi_rate_limiter_also_works_as_a_rate_limiter_adapter(
    server: OpenAIServer,
    chat: ChatModels,
) -> None:
    limiter = budget()
    model = chat(rate_limiter=LangChainRateLimiter(limiter))
    await model.ainvoke("cost=5 hello")
    assert granted(limiter) == (1, 1)


def test_a_limiter_without_reserve_is_refused_with_the_fix(
    server: OpenAIServer, chat: ChatModels
) -> None:
    with pytest.raises(TypeError, match=r"with_token_budget\(limiter=\.\.\.\) must be"):
        with_token_budget(chat(), RateLimiter(10))  # type: ignore[arg-type]


def test_a_negative_estimate_is_refused_with_the_fix(
    server: OpenAIServer, chat: ChatModels
) -> None:
    with pytest.raises(ValueError, match=r"with_token_budget\(estimate=\.\.\.\) must be"):
        with_token_budget(chat(), budget(), estimate=-1)


async def test_an_estimate_function_returning_a_non_int_is_refused(
    server: OpenAIServer, chat: ChatModels
) -> None:
    model = with_token_budget(chat(), budget(), estimate=lambda _: "many")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match=r"must return an int >= 0"):
        await model.ainvoke("cost=5 hi")
    assert server.statistics().requests == 0
