"""Streaming from nodes: emit, runtime.stream.send, relay_tokens, heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import operator
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.language_models.fake_chat_models import (
    FakeListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableGenerator
from langgraph.errors import NodeTimeoutError
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import TimeoutPolicy

from act_operator_lib import AsyncBaseNode, BaseNode, NodeRuntime
from act_operator_lib.streaming import capture_custom_stream, emit, heartbeat, relay_tokens


class State(TypedDict, total=False):
    items: list[str]
    done: Annotated[list[str], operator.add]


class ChatState(TypedDict):
    messages: Annotated[list[BaseMessage], add_messages]


def single_node_graph(node: Any, name: str = "node", **options: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node(name, node, **options)
    builder.add_edge(START, name)
    builder.add_edge(name, END)
    return builder.compile()


def chat_graph(node: Any, name: str = "answer") -> Any:
    builder = StateGraph(ChatState)
    builder.add_node(name, node)
    builder.add_edge(START, name)
    builder.add_edge(name, END)
    return builder.compile()


async def custom_chunks(graph: Any, inputs: Any) -> list[Any]:
    return [chunk async for chunk in graph.astream(inputs, stream_mode="custom")]


class AsyncProgress(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        for index, item in enumerate(state["items"]):
            self.emit({"done": index, "item": item})
        return {"done": state["items"]}


class SyncProgress(BaseNode):
    def execute(self, state: State) -> dict[str, Any]:
        for index, item in enumerate(state["items"]):
            self.emit({"done": index, "item": item})
        return {"done": state["items"]}


class RuntimeProgress(AsyncBaseNode):
    async def execute(self, state: State, runtime: NodeRuntime[Any]) -> dict[str, Any]:
        for item in state["items"]:
            runtime.stream.send(item)
        return {}


async def test_emit_in_async_node_writes_to_custom_stream() -> None:
    graph = single_node_graph(AsyncProgress())

    chunks = await custom_chunks(graph, {"items": ["a", "b"]})

    assert chunks == [{"done": 0, "item": "a"}, {"done": 1, "item": "b"}]


async def test_emit_in_sync_node_writes_to_custom_stream() -> None:
    graph = single_node_graph(SyncProgress())

    chunks = await custom_chunks(graph, {"items": ["a", "b"]})

    assert chunks == [{"done": 0, "item": "a"}, {"done": 1, "item": "b"}]


def test_emit_in_sync_node_under_sync_stream_writes_to_custom_stream() -> None:
    graph = single_node_graph(SyncProgress())

    chunks = list(graph.stream({"items": ["a"]}, stream_mode="custom"))

    assert chunks == [{"done": 0, "item": "a"}]


async def test_emit_in_tasks_started_by_the_node_writes_to_custom_stream() -> None:
    class FanOut(AsyncBaseNode):
        async def execute(self, state: State) -> dict[str, Any]:
            async def report(source: str) -> None:
                await asyncio.sleep(0)
                emit(source)

            await asyncio.create_task(report("create_task"))
            async with asyncio.TaskGroup() as group:
                group.create_task(report("task_group"))
            await asyncio.gather(report("gather"))
            await asyncio.to_thread(emit, "to_thread")
            return {}

    chunks = await custom_chunks(single_node_graph(FanOut()), {"items": []})

    assert chunks == ["create_task", "task_group", "gather", "to_thread"]


async def test_runtime_stream_send_writes_to_custom_stream() -> None:
    chunks = await custom_chunks(single_node_graph(RuntimeProgress()), {"items": ["x", "y"]})

    assert chunks == ["x", "y"]


async def test_custom_and_updates_modes_stream_together() -> None:
    graph = single_node_graph(AsyncProgress(), name="progress")

    chunks = [
        chunk async for chunk in graph.astream({"items": ["a"]}, stream_mode=["updates", "custom"])
    ]

    assert chunks == [
        ("custom", {"done": 0, "item": "a"}),
        ("updates", {"progress": {"done": ["a"]}}),
    ]


async def test_emit_outside_a_graph_is_captured() -> None:
    with capture_custom_stream() as sent:
        result = await AsyncProgress()({"items": ["a"]})

    assert sent == [{"done": 0, "item": "a"}]
    assert result == {"done": ["a"]}


async def test_runtime_stream_send_outside_a_graph_is_captured() -> None:
    with capture_custom_stream() as sent:
        await RuntimeProgress()({"items": ["x"]})

    assert sent == ["x"]


async def test_emit_outside_a_graph_without_capture_is_dropped() -> None:
    result = await AsyncProgress()({"items": ["a"]})

    assert result == {"done": ["a"]}


def test_capture_blocks_nest_and_restore_the_outer_one() -> None:
    with capture_custom_stream() as outer:
        emit(1)
        with capture_custom_stream() as inner:
            emit(2)
        emit(3)
    emit(4)

    assert outer == [1, 3]
    assert inner == [2]


async def test_capture_does_not_take_data_from_a_graph_run() -> None:
    with capture_custom_stream() as sent:
        chunks = await custom_chunks(single_node_graph(AsyncProgress()), {"items": ["a"]})

    assert sent == []
    assert chunks == [{"done": 0, "item": "a"}]


def test_heartbeat_outside_a_graph_does_nothing() -> None:
    heartbeat()
    AsyncProgress().heartbeat()


async def test_heartbeat_keeps_a_node_alive_past_its_idle_timeout() -> None:
    # The silent node's idle timeout is twice the patient node's, and the patient
    # node finishes only once the silent one has been timed out: by then it has run
    # past its own idle timeout, kept alive by nothing but heartbeat().
    patient_idle = 0.05
    silent_cancelled = asyncio.Event()

    class Silent(AsyncBaseNode):
        async def execute(self, state: State) -> dict[str, Any]:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                silent_cancelled.set()
                raise
            return {}

    class Patient(AsyncBaseNode):
        async def execute(self, state: State) -> dict[str, Any]:
            while not silent_cancelled.is_set():
                self.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(silent_cancelled.wait(), patient_idle / 10)
            return {"done": ["patient"]}

    def policy(idle: float) -> TimeoutPolicy:
        return TimeoutPolicy(idle_timeout=idle, refresh_on="heartbeat")

    silent = single_node_graph(Silent(), timeout=policy(2 * patient_idle))
    patient = single_node_graph(Patient(), timeout=policy(patient_idle))

    silent_outcome, patient_outcome = await asyncio.gather(
        silent.ainvoke({"items": []}), patient.ainvoke({"items": []}), return_exceptions=True
    )

    assert isinstance(silent_outcome, NodeTimeoutError)
    assert silent_outcome.kind == "idle"
    assert patient_outcome == {"items": [], "done": ["patient"]}


class RelayAnswer(AsyncBaseNode):
    def __init__(self, llm: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.llm = llm

    async def execute(self, state: ChatState) -> dict[str, Any]:
        reply = await relay_tokens(self.llm, state["messages"])
        return {"messages": [reply]}


def fake_llm(*replies: str) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter([AIMessage(content=reply) for reply in replies]))


async def test_relay_tokens_sends_each_token_to_custom_stream() -> None:
    graph = chat_graph(RelayAnswer(fake_llm("hello big world")))

    chunks = await custom_chunks(graph, {"messages": [HumanMessage("hi")]})

    assert chunks == ["hello", " ", "big", " ", "world"]


async def test_relay_tokens_shows_tokens_in_messages_mode() -> None:
    graph = chat_graph(RelayAnswer(fake_llm("hello world")), name="answer")

    streamed = [
        (chunk.content, metadata["langgraph_node"])
        async for chunk, metadata in graph.astream(
            {"messages": [HumanMessage("hi")]}, stream_mode="messages"
        )
        if isinstance(chunk, AIMessageChunk)
    ]

    assert streamed == [("hello", "answer"), (" ", "answer"), ("world", "answer")]


async def test_relay_tokens_returns_the_complete_message() -> None:
    graph = chat_graph(RelayAnswer(fake_llm("hello world")))

    final = await graph.ainvoke({"messages": [HumanMessage("hi")]})

    reply = final["messages"][-1]
    assert type(reply) is AIMessage
    assert reply.content == "hello world"


async def test_relay_tokens_keeps_tool_calls_and_usage_metadata() -> None:
    async def stream(_: AsyncIterator[Any]) -> AsyncIterator[AIMessageChunk]:
        yield AIMessageChunk(content="Searching", id="run-1")
        yield AIMessageChunk(
            content="",
            tool_call_chunks=[{"name": "search", "args": '{"q": ', "id": "call-1", "index": 0}],
        )
        yield AIMessageChunk(
            content="",
            tool_call_chunks=[{"name": None, "args": '"cats"}', "id": None, "index": 0}],
            usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        )

    graph = chat_graph(RelayAnswer(RunnableGenerator(stream)))
    sent: list[Any] = []
    final: dict[str, Any] = {}

    async for mode, chunk in graph.astream(
        {"messages": [HumanMessage("cats?")]}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            sent.append(chunk)
        else:
            final = chunk

    reply = final["messages"][-1]
    assert sent == ["Searching"]
    assert type(reply) is AIMessage
    assert reply.content == "Searching"
    assert reply.tool_calls == [
        {"name": "search", "args": {"q": "cats"}, "id": "call-1", "type": "tool_call"}
    ]
    assert reply.usage_metadata == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}


async def test_relay_tokens_outside_a_graph_is_captured() -> None:
    with capture_custom_stream() as sent:
        reply = await relay_tokens(fake_llm("a b"), [HumanMessage("hi")])

    assert sent == ["a", " ", "b"]
    assert reply.content == "a b"


async def test_relay_tokens_rejects_a_chain_that_streams_strings() -> None:
    async def words(_: AsyncIterator[Any]) -> AsyncIterator[str]:
        yield "plain"

    with pytest.raises(TypeError, match="AIMessageChunk, got a str"):
        await relay_tokens(RunnableGenerator(words), "hi")


async def test_guide_runtime_stream_node_works() -> None:
    # The guide's RuntimeStreamNode, as written (dict state instead of a dataclass).
    class RuntimeStreamNode(AsyncBaseNode):
        def __init__(self, llm: Any, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.llm = llm

        async def execute(self, state: ChatState, runtime: NodeRuntime[Any]) -> dict[str, Any]:
            chunks = []
            async for chunk in self.llm.astream(state["messages"]):
                chunks.append(chunk.content)
                if runtime and runtime.stream:
                    runtime.stream.send(chunk.content)
            full_response = "".join(chunks)
            return {"messages": [AIMessage(content=full_response)]}

    llm = FakeListChatModel(responses=["abc"])
    graph = chat_graph(RuntimeStreamNode(llm))
    sent: list[Any] = []
    final: dict[str, Any] = {}

    async for mode, chunk in graph.astream(
        {"messages": [HumanMessage("hi")]}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            sent.append(chunk)
        else:
            final = chunk

    assert sent == ["a", "b", "c"]
    assert final["messages"][-1].content == "abc"
