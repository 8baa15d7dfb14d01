"""Guide: Integration Patterns / Mixed Sync/Async Code (and the Troubleshooting entry
"RuntimeError: This event loop is already running").

Blocking code in an async node: ``await run_sync(fn, ...)``, on the library's bounded
thread pool with the caller's context (so ``emit`` still reaches the graph's stream);
no private executor, no ``get_event_loop()``. Async code in a sync node:
``run_async(coroutine)``, which works whether or not a loop runs in this thread, on one
long-lived loop (instead of ``asyncio.run``, which fails inside a running loop).
``python -m examples.guide.mixed_sync_async``
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any, TypedDict

from langgraph.graph import START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseNode, emit, run_async, run_sync


class State(TypedDict, total=False):
    text: str
    checksum: str
    translations: list[str]


def legacy_checksum(text: str) -> str:
    """A blocking library call."""
    time.sleep(0.01)
    emit({"checksum": "computed in a worker thread"})  # the graph's stream, from a thread
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def translate(text: str, languages: list[str]) -> list[str]:
    """An async client, called concurrently."""

    async def one(language: str) -> str:
        await asyncio.sleep(0.01)
        return f"[{language}] {text}"

    return await asyncio.gather(*(one(language) for language in languages))


class Checksum(AsyncBaseNode):
    """Async node, blocking helper: run it in a thread."""

    async def execute(self, state: State) -> dict[str, Any]:
        return {"checksum": await run_sync(legacy_checksum, state["text"])}


class Translate(BaseNode):
    """Sync node (e.g. in a ``graph.invoke`` app), async helpers: bridge with run_async."""

    def execute(self, state: State) -> dict[str, Any]:
        translations = run_async(translate(state["text"], ["fr", "de"]), timeout=5)
        return {"translations": translations}


def build_async_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("checksum", Checksum())
    builder.add_node("translate", Translate())  # LangGraph runs a sync node in a thread
    builder.add_edge(START, "checksum")
    builder.add_edge("checksum", "translate")
    return builder.compile()


def build_sync_graph() -> Any:
    builder = StateGraph(State)
    builder.add_node("translate", Translate())
    builder.add_edge(START, "translate")
    return builder.compile()


async def run_async_graph() -> tuple[dict[str, Any], list[Any]]:
    final: dict[str, Any] = {}
    custom: list[Any] = []
    async for mode, chunk in build_async_graph().astream(
        {"text": "hello"}, stream_mode=["custom", "values"]
    ):
        if mode == "custom":
            custom.append(chunk)
        else:
            final = chunk
    return final, custom


def main() -> dict[str, Any]:
    sync_result = build_sync_graph().invoke({"text": "hello"})  # plain sync code
    print("sync graph:", sync_result["translations"])
    async_result, custom = asyncio.run(run_async_graph())
    print("async graph:", async_result["checksum"], async_result["translations"])
    print("custom stream:", custom)
    return {"sync": sync_result, "async": async_result, "custom": custom}


if __name__ == "__main__":
    main()
