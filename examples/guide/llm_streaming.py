"""Guide: Advanced Patterns / Streaming Responses (LLM tokens).

`relay_tokens` streams the model's answer: each token goes to the ``custom`` stream as
it arrives (and LangGraph's ``messages`` mode sees it too), and the chunks are merged
into one ``AIMessage`` that keeps the id, tool calls and metadata that joining
``chunk.content`` strings throws away. The model is langchain-core's
``GenericFakeChatModel``: no network, no key. ``python -m examples.guide.llm_streaming``
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, TypedDict

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages

from act_operator_lib import AsyncBaseNode, relay_tokens


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


class Answer(AsyncBaseNode):
    def __init__(self, model: BaseChatModel, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    async def execute(self, state: State) -> dict[str, Any]:
        reply = await relay_tokens(self.model, state["messages"])
        return {"messages": [reply]}


def build_graph(model: BaseChatModel) -> Any:
    builder = StateGraph(State)
    builder.add_node("answer", Answer(model))
    builder.add_edge(START, "answer")
    return builder.compile()


async def main() -> dict[str, Any]:
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="Paris is the capital of France.", id="answer-1")])
    )
    graph = build_graph(model)
    tokens: list[str] = []
    final: dict[str, Any] = {}
    question = {"messages": [HumanMessage("What is the capital of France?")]}
    async for mode, chunk in graph.astream(question, stream_mode=["custom", "values"]):
        if mode == "custom":
            tokens.append(chunk)
            print(chunk, end="", flush=True)
        else:
            final = chunk
    reply = final["messages"][-1]
    print(f"\nfinal message: {reply.content!r} (id {reply.id})")
    return {"tokens": tokens, "reply": reply}


if __name__ == "__main__":
    asyncio.run(main())
