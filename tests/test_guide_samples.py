"""The guide's own code samples, run unchanged against the library.

The guide ("Async Patterns for LangGraph Nodes", the project's specification) is not
copied here: it is read at test time from ``shared/seed/`` beside the repository (or
from ``ACT_GUIDE_PATH``, a file or a directory), its ```python blocks are parsed, and
each block that defines a node class is executed as written into a namespace seeded
with what the samples assume (``asyncio``, ``time``, ``aiohttp``, ``aiofiles``,
``asyncpg``, ``AIMessage``, ``AsyncBaseNode``, ``BaseNode``, ``pytest``). Only the
block's imports, classes and functions are executed; usage lines such as
``result = await graph.ainvoke(...)`` are left out, since they refer to a graph the
block never builds. Tracebacks point at the guide's own line numbers.

`SAMPLES` names every node class the guide defines, by section and class name, with
the state to run it with and what it must return (or the test that covers it), so a
sample that disappears, is renamed or changes behaviour fails here.

Each node runs as users run it: in a real one-node LangGraph ``StateGraph``, through
``ainvoke`` (``invoke`` for the sync sample), with the state schema the sample expects.
Sleeps run on the virtual clock; HTTP samples talk to a real aiohttp server on
127.0.0.1 and file samples to files in ``tmp_path``, both on real time.

A sample that is wrong must fail loudly, with the exception named in its test; each
such test says why the sample is wrong and where docs/cookbook.md explains it. A
dependency a sample uses but never defines (``self.llm``, ``fetch_from_api``,
``expensive_operation``, ``url``) is supplied by the test: that is "the sample,
unchanged, plus what it assumes".
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import gc
import logging
import os
import random
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiofiles
import aiohttp
import asyncpg
import pytest
from aiohttp import web
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from act_operator_lib import MissingAwaitError, NodeTimeoutError, detect_blocking
from act_operator_lib._blocking import EventLoopBlockedWarning
from act_operator_lib.base_node import AsyncBaseNode, BaseNode
from act_operator_lib.testing import BlockingCallError, VirtualClock, assert_no_blocking_calls

GUIDE_TITLE = "# Async Patterns for LangGraph Nodes"
GUIDE_DIR = Path(__file__).resolve().parents[2] / "shared" / "seed"


def _find_guide() -> Path | None:
    """The guide file: ``ACT_GUIDE_PATH`` (file or directory), else shared/seed/."""
    configured = os.environ.get("ACT_GUIDE_PATH")
    where = Path(configured) if configured else GUIDE_DIR
    if where.is_file():
        return where
    if where.is_dir():
        for candidate in sorted(where.iterdir()):
            if candidate.suffix in (".txt", ".md") and candidate.is_file():
                with candidate.open(encoding="utf-8") as text:
                    if text.readline().strip() == GUIDE_TITLE:
                        return candidate
    return None


GUIDE = _find_guide()
if GUIDE is None:
    pytest.skip(
        f"the guide ({GUIDE_TITLE!r}) was not found at "
        f"{os.environ.get('ACT_GUIDE_PATH') or GUIDE_DIR}; clone the repository with "
        "shared/ beside it, or set ACT_GUIDE_PATH to the guide file or its directory",
        allow_module_level=True,
    )
assert GUIDE is not None


# --- reading the guide ----------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One ```python block: the headings above it and its parsed source."""

    chapter: str  # the "## " heading
    section: str  # the "### " heading
    first_line: int  # 1-based line number in the guide of the block's first line
    source: str
    module: ast.Module = field(repr=False)

    def node_classes(self) -> list[str]:
        return [
            statement.name
            for statement in self.module.body
            if isinstance(statement, ast.ClassDef)
            and any(
                isinstance(base, ast.Name) and base.id in ("AsyncBaseNode", "BaseNode")
                for base in statement.bases
            )
        ]


_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@cache
def guide_blocks() -> tuple[Block, ...]:
    assert GUIDE is not None
    lines = GUIDE.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    chapter = section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```python"):
            end = index + 1
            while not lines[end].startswith("```"):
                end += 1
            source = "\n".join(lines[index + 1 : end])
            module = compile(
                source,
                str(GUIDE),
                "exec",
                flags=ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
                dont_inherit=True,  # not this module's `from __future__ import annotations`
            )
            ast.increment_lineno(module, index + 1)
            blocks.append(Block(chapter, section, index + 2, source, module))
            index = end
        elif line.startswith("```"):
            end = index + 1
            while not lines[end].startswith("```"):
                end += 1
            index = end
        elif line.startswith("### "):
            section = line[4:].strip()
        elif line.startswith("## "):
            chapter, section = line[3:].strip(), ""
        index += 1
    return tuple(blocks)


def seed_namespace(**assumed: Any) -> dict[str, Any]:
    """What the samples use without importing it, plus a sample's missing globals."""
    return {
        "__name__": "guide_samples",
        "asyncio": asyncio,
        "time": time,
        "aiohttp": aiohttp,
        "aiofiles": aiofiles,
        "asyncpg": asyncpg,
        "AIMessage": AIMessage,
        "AsyncBaseNode": AsyncBaseNode,
        "BaseNode": BaseNode,
        "pytest": pytest,
        **assumed,
    }


def _run_definitions(block: Block, statements: list[ast.stmt], namespace: dict[str, Any]) -> None:
    module = ast.Module(body=statements, type_ignores=[])
    exec(compile(module, str(GUIDE), "exec", dont_inherit=True), namespace)


def guide_namespace(section: str, **assumed: Any) -> dict[str, Any]:
    """Execute the node-defining block(s) of ``section``, unchanged, in a fresh namespace."""
    blocks = [b for b in guide_blocks() if b.section == section and b.node_classes()]
    assert blocks, f"the guide has no node sample under {section!r} any more"
    namespace = seed_namespace(**assumed)
    for block in blocks:
        kept = [s for s in block.module.body if isinstance(s, _DEFINITIONS)]
        _run_definitions(block, kept, namespace)
    return namespace


def guide_class(section: str, name: str, **assumed: Any) -> Any:
    namespace = guide_namespace(section, **assumed)
    assert name in namespace, f"the guide's {section!r} section no longer defines {name}"
    return namespace[name]


def guide_functions(chapter: str, section: str, **assumed: Any) -> dict[str, Callable[..., Any]]:
    """Each bare ``execute`` of a snippet, keyed "wrong" / "correct" by its ❌ / ✅ comment."""
    (block,) = [b for b in guide_blocks() if b.chapter == chapter and b.section == section]
    lines = block.source.splitlines()
    found: dict[str, Callable[..., Any]] = {}
    for statement in block.module.body:
        if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        above = lines[: statement.lineno - block.first_line]
        label = next(line for line in reversed(above) if line.strip().startswith("#"))
        kind = "wrong" if "❌" in label else "correct" if "✅" in label else label
        namespace = seed_namespace(**assumed)
        _run_definitions(block, [statement], namespace)
        found[kind] = namespace[statement.name]
    return found


def node_class(name: str, execute: Callable[..., Any], **methods: Any) -> Any:
    """A node class around a snippet's bare ``execute`` (and the methods it calls)."""
    return type(name, (AsyncBaseNode,), {"execute": execute, **methods})


# --- running a node the way users do ---------------------------------------------------


def state_of(outputs: Iterable[str] = (), **inputs: Any) -> Any:
    """A dataclass state (the guide reads ``state.field``) with the inputs and outputs."""
    names = dict.fromkeys([*inputs, *outputs])
    schema = dataclasses.make_dataclass(
        "GuideState",
        [(name, Any, field(default=None)) for name in names],
        kw_only=True,
    )
    return schema(**inputs)


def one_node_graph(node: Any, schema: Any) -> Any:
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(schema)
    builder.add_node(node.name, node)
    builder.add_edge(START, node.name)
    builder.add_edge(node.name, END)
    return builder.compile()


async def ainvoke(node: Any, state: Any, schema: Any = None) -> dict[str, Any]:
    """``await graph.ainvoke(state)`` on a real one-node StateGraph."""
    graph = one_node_graph(node, schema if schema is not None else type(state))
    result: dict[str, Any] = await graph.ainvoke(state)
    return result


def subset(result: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {key: result[key] for key in keys}


# --- the table: every node class of the guide -------------------------------------------


@dataclass(frozen=True)
class Case:
    """Run the class with a dataclass state of ``inputs``; it must return ``expect``."""

    inputs: dict[str, Any]
    expect: dict[str, Any]
    virtual_seconds: float | None = None
    assumed: dict[str, Any] = field(default_factory=dict)


async def _fetch_from_api() -> dict[str, str]:
    await asyncio.sleep(1)
    return {"from": "api"}


# (section, class name) -> a Case run by test_sample_returns_documented_result, or the
# name of the test in this module that covers the class.
SAMPLES: dict[tuple[str, str], Case | str] = {
    ("Basic Structure", "MyAsyncNode"): "test_my_async_node_with_the_guides_own_state",
    ("Async vs Sync", "AsyncNode"): Case(
        {"query": "test"},
        {"data": {"from": "api"}},
        virtual_seconds=1,
        assumed={"fetch_from_api": _fetch_from_api},
    ),
    ("Async vs Sync", "SyncNode"): "test_sync_node_with_invoke",
    ("Single Async Operation", "FetchNode"): "test_fetch_node_against_local_server",
    ("Multiple Sequential Operations", "SequentialNode"): Case(
        {"user_id": 7},
        {
            "user": {"id": 7, "name": "Alice"},
            "posts": [{"id": 1, "title": "Post 1"}],
            "comments": [{"id": 1, "text": "Comment 1"}],
        },
        virtual_seconds=0.3,
    ),
    ("Concurrent Operations", "ConcurrentNode"): Case(
        {"user_id": 7, "location": "Paris", "topic": "ai"},
        {"user": {"id": 7}, "weather": {"temp": 72}, "news": {"articles": []}},
        virtual_seconds=1,  # three 1 s calls at once, as the guide says: not 3 s
    ),
    ("Async Context Managers", "DatabaseNode"): "test_database_node_async_with_on_a_coroutine",
    ("Async Generators", "StreamingNode"): Case(
        {"query": "q"},
        {"results": [{"item": i, "query": "q"} for i in range(5)]},
        virtual_seconds=0.5,
    ),
    ("Async Generators", "StreamingProcessNode"): Case(
        {"query": "q"},
        {"processed": [{"processed": {"data": i}} for i in range(5)]},
        virtual_seconds=0.75,
    ),
    ("Timeout Handling", "TimeoutNode"): Case(
        {"input": "slow"}, {"result": None, "timed_out": True}, virtual_seconds=5
    ),
    ("Timeout Handling", "MultiTimeoutNode"): Case(
        {},
        # op3 (index 2) times out; str(TimeoutError()) is empty (cookbook: Timeout Handling)
        {"results": ["result1", "result2"], "errors": ["Operation 2 failed: "]},
        virtual_seconds=3,
    ),
    ("Rate Limiting", "RateLimitedNode"): Case(
        {"items": [1, 2, 3]}, {"results": ["Result for 1", "Result for 2", "Result for 3"]}
    ),
    ("Rate Limiting", "TokenBucketNode"): Case(
        # At most `capacity` items: the bucket refills on time.time(), which the virtual
        # clock does not move, so a wait would spin (cookbook: Rate Limiting, wall clock).
        {"items": [1, 2, 3]},
        {"results": ["Result for 1", "Result for 2", "Result for 3"]},
    ),
    ("Connection Pooling", "PooledHTTPNode"): "test_pooled_http_node_leaves_session_open",
    ("Streaming Responses", "StreamingLLMNode"): "test_streaming_llm_node_with_a_fake_model",
    ("Streaming Responses", "RuntimeStreamNode"): "test_runtime_stream_node_sends_tokens",
    ("Try-Except in Async", "ErrorHandlingNode"): "test_error_handling_node",
    ("Async Error Recovery", "RetryNode"): "test_retry_node_with_seeded_random",
    ("Timeout Errors", "TimeoutHandlingNode"): "test_timeout_handling_node_passes_coroutines",
    ("Cancellation", "CancellableNode"): "test_cancellable_node_with_dict_state",
    ("asyncio.gather", "GatherNode"): Case(
        {"user_id": 7}, {"user": {"id": 7}, "posts": [], "comments": []}, virtual_seconds=1
    ),
    ("asyncio.gather", "GatherErrorHandlingNode"): Case(
        {},
        {
            "successes": [{"op": 0, "result": "success1"}, {"op": 2, "result": "success3"}],
            "failures": [{"op": 1, "error": "Operation 2 failed"}],
        },
        virtual_seconds=0.1,
    ),
    ("asyncio.wait", "WaitNode"): Case({}, {"first_result": "fast"}, virtual_seconds=0.1),
    ("asyncio.wait", "WaitTimeoutNode"): "test_wait_timeout_node",
    ("Semaphores", "SemaphoreNode"): Case(
        {"items": list(range(12))},
        {"results": [f"Processed {i}" for i in range(12)]},
        virtual_seconds=0.3,  # 12 items, 5 at a time, 0.1 s each
    ),
    ("Semaphores", "RateLimitedAPINode"): Case(
        {"urls": ["a", "b", "c", "d"]},
        {"results": ["Data from a", "Data from b", "Data from c", "Data from d"]},
        virtual_seconds=1.0,  # 4 calls, 3 at a time, 0.5 s each
    ),
    ("Task Groups", "TaskGroupNode"): Case(
        {}, {"results": ["result1", "result2", "result3"]}, virtual_seconds=0.3
    ),
    ("Async HTTP Clients", "HTTPNode"): "test_http_node_get_and_post",
    ("Async HTTP Clients", "RobustHTTPNode"): "test_robust_http_node",
    ("Async Database Operations", "DatabaseNode"): "test_asyncpg_samples_fail_loudly",
    ("Async Database Operations", "PooledDatabaseNode"): "test_asyncpg_samples_fail_loudly",
    ("Async File I/O", "FileNode"): "test_file_node",
    ("Async File I/O", "MultiFileNode"): "test_multi_file_node",
    ("Mixed Sync/Async Code", "MixedNode"): "test_mixed_node",
    ("1. Use connection pooling", "OptimizedNode"): "test_optimized_node",
    ("4. Cache results", "CachedNode"): "test_cached_node",
}


def test_table_lists_every_node_class_of_the_guide():
    """A sample added, removed or renamed in the guide must be added to SAMPLES."""
    found = {(block.section, name) for block in guide_blocks() for name in block.node_classes()}
    assert found == set(SAMPLES)
    for covered_by in SAMPLES.values():
        if isinstance(covered_by, str):
            assert callable(globals().get(covered_by)), covered_by


@pytest.mark.virtual_clock
@pytest.mark.parametrize(
    ("section", "name"),
    [key for key, case in SAMPLES.items() if isinstance(case, Case)],
    ids=lambda value: value,
)
async def test_sample_returns_documented_result(
    section: str, name: str, virtual_clock: VirtualClock
):
    case = SAMPLES[section, name]
    assert isinstance(case, Case)
    node = guide_class(section, name, **case.assumed)()

    with virtual_clock.measure() as stopwatch:
        result = await ainvoke(node, state_of(case.expect, **case.inputs))

    assert subset(result, case.expect) == case.expect
    if case.virtual_seconds is not None:
        assert stopwatch.seconds == case.virtual_seconds


# --- samples that run, with a state or dependency of their own ----------------------------


@pytest.mark.virtual_clock
async def test_my_async_node_with_the_guides_own_state():
    """Basic Structure: the guide's MyAsyncNode, run with the guide's own State class."""
    namespace = guide_namespace("Basic Structure")
    node = namespace["MyAsyncNode"]()

    result = await ainvoke(node, namespace["State"](query="test"))

    assert result == {"query": "test", "result": "Data for test"}


@pytest.mark.virtual_clock
async def test_rate_limited_nodes_own_rate_limit_attribute_is_neither_a_policy_nor_deprecated():
    """Rate Limiting: ``self.rate_limit = requests_per_second`` in the sample's ``__init__``
    is its own setting, not the deprecated spelling of the ``rate_limiter`` policy."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node = guide_class("Rate Limiting", "RateLimitedNode")(requests_per_second=5)
        result = await ainvoke(node, state_of(["results"], items=[1, 2]))

    assert node.rate_limit == 5
    assert node.rate_limiter is None
    assert result["results"] == ["Result for 1", "Result for 2"]
    assert node.statistics().rate_limit_wait == 0


def test_sync_node_with_invoke():
    """Async vs Sync: a graph of sync nodes runs with ``graph.invoke``, as the guide says."""
    calls: list[str] = []

    def fetch_from_api_sync() -> dict[str, str]:
        calls.append("fetch")
        return {"from": "sync api"}

    node = guide_class("Async vs Sync", "SyncNode", fetch_from_api_sync=fetch_from_api_sync)()
    state = state_of(["data"], query="test")

    result = one_node_graph(node, type(state)).invoke(state)

    assert result["data"] == {"from": "sync api"}
    assert calls == ["fetch"]


@pytest.mark.virtual_clock
async def test_error_handling_node():
    """Try-Except in Async: a good input is processed; ``"fail"`` is reported in the state.

    The sample's final ``except Exception`` also turns bugs into a "successful" run
    (docs/cookbook.md, Error Handling: Try-Except in Async); here it only meets the
    ValueError it was written for.
    """
    Node = guide_class("Try-Except in Async", "ErrorHandlingNode")

    ok = await ainvoke(Node(), state_of(["result", "error"], input="ok"))
    failed = await ainvoke(Node(), state_of(["result", "error"], input="fail"))

    assert subset(ok, ["result", "error"]) == {"result": "Processed ok", "error": None}
    assert subset(failed, ["result", "error"]) == {"result": None, "error": "Invalid input"}


@pytest.mark.virtual_clock
@pytest.mark.parametrize(
    ("seed", "expect", "seconds"),
    [
        (0, {"result": "Success: x", "attempts": 1, "error": None}, 0.1),
        (1, {"result": "Success: x", "attempts": 2, "error": None}, 1.2),
        (4, {"result": None, "attempts": 3, "error": "Random failure"}, 3.3),
    ],
)
async def test_retry_node_with_seeded_random(
    seed: int,
    expect: dict[str, Any],
    seconds: float,
    virtual_clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
):
    """Async Error Recovery: RetryNode succeeds on the first success, or reports 3 attempts.

    The sample fails on ``random.random() < 0.5``, so ``random.random`` is seeded: seed
    0 succeeds at once, seed 1 on the second attempt (after a 1 s backoff), seed 4
    fails three times (1 s + 2 s backoff) and returns the error instead of raising
    (docs/cookbook.md, Error Handling: Async Error Recovery). ``random.seed`` alone is
    not enough: LangGraph draws from the global generator too (checkpoint ids) before
    the node runs, so ``random.random`` gets a generator of its own.
    """
    node = guide_class("Async Error Recovery", "RetryNode")()
    monkeypatch.setattr(random, "random", random.Random(seed).random)

    with virtual_clock.measure() as stopwatch:
        result = await ainvoke(node, state_of(expect, input="x"))

    assert subset(result, expect) == expect
    assert stopwatch.seconds == seconds


class CancelState(TypedDict, total=False):
    cancel_requested: bool
    result: Any
    cancelled: bool


@pytest.mark.virtual_clock
async def test_cancellable_node_with_dict_state(virtual_clock: VirtualClock):
    """Cancellation: with a dict state (``state.get``) the cooperative check works."""
    Node = guide_class("Cancellation", "CancellableNode")

    with virtual_clock.measure() as stopwatch:
        stopped = await ainvoke(Node(), {"cancel_requested": True}, CancelState)
    assert subset(stopped, ["result", "cancelled"]) == {"result": None, "cancelled": True}
    assert stopwatch.seconds == 0.1

    with virtual_clock.measure() as stopwatch:
        finished = await ainvoke(Node(), {"cancel_requested": False}, CancelState)
    assert subset(finished, ["result", "cancelled"]) == {"result": "complete", "cancelled": False}
    assert stopwatch.seconds == 11  # 100 x (0.1 + 0.01)


@pytest.mark.virtual_clock
async def test_cancellable_node_cleanup_runs_on_node_timeout(caplog: pytest.LogCaptureFixture):
    """Cancellation: the library's ``timeout`` cancels the sample, whose cleanup is awaited.

    The sample's ``except CancelledError: await self.cleanup(); raise`` is the right
    shape (Common Pitfalls #3). The `timeout` policy cancels the attempt, waits for that
    cleanup, and raises `NodeTimeoutError` naming the node.
    """
    node = guide_class("Cancellation", "CancellableNode")(timeout=1, verbose=True)

    with (
        caplog.at_level(logging.DEBUG, logger="act_operator_lib.node"),
        pytest.raises(NodeTimeoutError, match="CancellableNode"),
    ):
        await ainvoke(node, {"cancel_requested": False}, CancelState)

    messages = [record.getMessage() for record in caplog.records]
    assert "[CancellableNode] Task was cancelled" in messages
    assert "[CancellableNode] Cleaning up..." in messages


@pytest.mark.virtual_clock
async def test_wait_timeout_node():
    """asyncio.wait: two of three operations finish within 2 s, the third is counted.

    ``done`` is a set, so the order of ``completed`` is arbitrary and which result
    belongs to which operation is lost (docs/cookbook.md, Concurrency Control:
    asyncio.wait).
    """
    node = guide_class("asyncio.wait", "WaitTimeoutNode")()

    result = await ainvoke(node, state_of(["completed", "incomplete_count"]))

    assert sorted(result["completed"]) == ["op1", "op2"]
    assert result["incomplete_count"] == 1


@pytest.mark.virtual_clock
async def test_cached_node():
    """Performance Optimization #4: the second call is served from the cache.

    ``expensive_operation`` is a global the guide never defines; the test supplies it.
    The sample returns the cache entry itself, a dict shared by every later call
    (docs/cookbook.md, Performance Optimization 4).
    """
    calls: list[str] = []

    async def expensive_operation(key: str) -> dict[str, str]:
        calls.append(key)
        await asyncio.sleep(1)
        return {"result": f"computed {key}"}

    node = guide_class("4. Cache results", "CachedNode", expensive_operation=expensive_operation)()

    first = await ainvoke(node, state_of(["result"], query="q"))
    second = await ainvoke(node, state_of(["result"], query="q"))

    assert first["result"] == second["result"] == "computed q"
    assert calls == ["q"]
    assert node.cache == {"q": {"result": "computed q"}}


@pytest.mark.virtual_clock
async def test_streaming_llm_node_with_a_fake_model():
    """Streaming Responses: StreamingLLMNode, given the ``self.llm`` the guide never sets.

    The chunks' text is joined, which drops ids, tool calls and usage
    (docs/cookbook.md, Advanced Patterns: Streaming Responses).
    """
    node = guide_class("Streaming Responses", "StreamingLLMNode")()
    node.llm = GenericFakeChatModel(messages=iter(["Paris is the capital"]))

    result = await ainvoke(node, MessagesState(messages=[HumanMessage("capital?")]))

    assert [message.content for message in result["messages"]] == [
        "capital?",
        "Paris is the capital",
    ]


@dataclass(kw_only=True)
class MessagesState:
    messages: Annotated[list[AnyMessage], add_messages] = field(default_factory=list)


@pytest.mark.virtual_clock
async def test_runtime_stream_node_sends_tokens():
    """Streaming Responses: ``runtime.stream.send`` puts each token on the custom stream.

    LangGraph's ``Runtime`` has no ``stream``; the library's `NodeRuntime` adds it, so
    the sample runs unchanged (docs/cookbook.md, Advanced Patterns: Streaming
    Responses). ``self.llm`` is supplied, as the guide never sets it.
    """
    node = guide_class("Streaming Responses", "RuntimeStreamNode")()
    node.llm = GenericFakeChatModel(messages=iter(["Paris is the capital"]))
    graph = one_node_graph(node, MessagesState)

    custom: list[Any] = []
    updates: list[Any] = []
    async for mode, item in graph.astream(
        MessagesState(messages=[HumanMessage("capital?")]), stream_mode=["custom", "updates"]
    ):
        (custom if mode == "custom" else updates).append(item)

    assert len(custom) > 1
    assert "".join(custom) == "Paris is the capital"
    (update,) = updates
    assert update["RuntimeStreamNode"]["messages"][0].content == "Paris is the capital"


@pytest.mark.virtual_clock
async def test_batching_snippet_as_a_node(virtual_clock: VirtualClock):
    """Performance Optimization #2: the batching ``execute``, in a node with ``process``."""
    (execute,) = guide_functions("Performance Optimization", "2. Batch operations").values()

    async def process(self: Any, item: int) -> int:
        await asyncio.sleep(1)
        return item * 2

    node = node_class("BatchNode", execute, process=process)()

    with virtual_clock.measure() as stopwatch:
        result = await ainvoke(node, state_of(["results"], items=list(range(25))))

    assert result["results"] == [i * 2 for i in range(25)]
    assert stopwatch.seconds == 3  # batches of 10, 10 and 5


# --- samples that are wrong: they must fail loudly ---------------------------------------


@contextmanager
def never_awaited() -> Iterator[list[str]]:
    """Collect the names in Python's "coroutine ... was never awaited" warnings.

    Under ``-W error`` such a warning, raised while a coroutine is destroyed, would
    surface as an unraisable-exception failure; here it is recorded and asserted.
    """
    names: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield names
        finally:
            gc.collect()
    for warning in caught:
        message = str(warning.message)
        if issubclass(warning.category, RuntimeWarning) and "was never awaited" in message:
            names.append(message.split("'")[1])
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )


@pytest.mark.virtual_clock
async def test_database_node_async_with_on_a_coroutine():
    """Async Context Managers: ``async with self.get_connection()`` raises TypeError.

    ``get_connection`` is an ``async def`` that returns the context manager, so the
    call is a coroutine and ``async with`` rejects it; Python also warns that the
    coroutine was never awaited. Fix: a plain ``def``, or ``@asynccontextmanager``
    (docs/cookbook.md, Core Async Patterns: Async Context Managers).
    """
    node = guide_class("Async Context Managers", "DatabaseNode")()

    with (
        never_awaited() as coroutines,
        pytest.raises(TypeError, match="asynchronous context manager protocol"),
    ):
        await ainvoke(node, state_of(["result"], query="SELECT 1"))

    assert coroutines == ["DatabaseNode.get_connection"]


@pytest.mark.virtual_clock
async def test_timeout_handling_node_passes_coroutines():
    """Timeout Errors: ``asyncio.wait`` on bare coroutines raises TypeError on 3.11+.

    The sample hands ``tasks.values()`` (coroutines) to ``asyncio.wait``, which Python
    3.11 forbids, so the node always fails, and the three coroutines are never
    awaited. Use tasks, or `gather_within` (docs/cookbook.md, Error Handling: Timeout
    Errors).
    """
    node = guide_class("Timeout Errors", "TimeoutHandlingNode")()

    with (
        never_awaited() as coroutines,
        pytest.raises(TypeError, match="Passing coroutines is forbidden"),
    ):
        await ainvoke(node, state_of(["results"]))

    assert sorted(coroutines) == [
        "TimeoutHandlingNode.slow_op1",
        "TimeoutHandlingNode.slow_op2",
        "TimeoutHandlingNode.slow_op3",
    ]


@pytest.mark.virtual_clock
async def test_cancellable_node_with_dataclass_state_fails():
    """Cancellation: ``state.get(...)`` on the guide's dataclass state raises AttributeError.

    The guide declares its state as a ``@dataclass``, which has no ``.get``; with such
    a state the sample fails on its first check (docs/cookbook.md, Error Handling:
    Cancellation). It works with a dict state (test above).
    """
    node = guide_class("Cancellation", "CancellableNode")()

    with pytest.raises(AttributeError, match="has no attribute 'get'"):
        await ainvoke(node, state_of(["result", "cancelled"], cancel_requested=True))


async def test_asyncpg_samples_fail_loudly():
    """Async Database Operations: hard-coded ``user='user', password='password'``.

    Both asyncpg samples connect to a database that does not exist here, with
    credentials written into the code. They fail at once with asyncpg's error (or
    the refused connection) rather than returning an empty result. Credentials belong
    in configuration; use `PostgresResource` (docs/cookbook.md, Integration Patterns:
    Async Database Operations). Runs on real time: it opens real sockets on loopback.
    """
    namespace = guide_namespace("Async Database Operations")

    for name in ("DatabaseNode", "PooledDatabaseNode"):
        node = namespace[name]()
        with pytest.raises((OSError, asyncpg.PostgresError)):
            await ainvoke(node, state_of(["users"], user_id=1))
        if name == "PooledDatabaseNode":
            assert node.pool is None  # nothing half-open was kept


# --- Common Pitfalls ------------------------------------------------------------------


async def _async_operation(self: Any) -> str:
    await asyncio.sleep(0.1)
    return "done"


@pytest.mark.virtual_clock
async def test_pitfall_1_forgotten_await_raises_missing_await_error():
    """Common Pitfalls #1: the un-awaited coroutine is caught, not merged into the state.

    The library closes the coroutine (no "never awaited" warning) and raises
    `MissingAwaitError` naming the node and the key (docs/cookbook.md, Common Pitfalls).
    """
    snippets = guide_functions("Common Pitfalls", "1. Forgetting await")
    wrong = node_class("ForgotAwait", snippets["wrong"], async_operation=_async_operation)
    correct = node_class("Awaited", snippets["correct"], async_operation=_async_operation)

    with pytest.raises(MissingAwaitError, match=r"node 'ForgotAwait': the value of 'result'"):
        await ainvoke(wrong(), state_of(["result"]))
    assert (await ainvoke(correct(), state_of(["result"])))["result"] == "done"


@pytest.mark.virtual_clock
async def test_pitfall_2_time_sleep_fails_assert_no_blocking_calls():
    """Common Pitfalls #2: ``time.sleep`` in an async node fails `assert_no_blocking_calls`."""
    snippets = guide_functions("Common Pitfalls", "2. Using time.sleep instead of asyncio.sleep")
    wrong = node_class("SleepsInLoop", snippets["wrong"])
    correct = node_class("SleepsAsync", snippets["correct"])

    with pytest.raises(BlockingCallError, match="sleep"), assert_no_blocking_calls():
        await ainvoke(wrong(), state_of(["x"]))
    with assert_no_blocking_calls():
        assert (await ainvoke(correct(), state_of(["x"])))["x"] is None


async def test_pitfall_2_time_sleep_is_reported_by_detect_blocking():
    """Common Pitfalls #2: `detect_blocking` names the node that blocked the loop.

    Real time: the sample really blocks the loop for its 1 s ``time.sleep``.
    """
    snippets = guide_functions("Common Pitfalls", "2. Using time.sleep instead of asyncio.sleep")
    wrong = node_class("SleepsInLoop", snippets["wrong"])

    with pytest.warns(EventLoopBlockedWarning, match="SleepsInLoop"):
        async with detect_blocking(threshold=0.2):
            await ainvoke(wrong(), state_of(["x"]))


@pytest.mark.virtual_clock
async def test_pitfall_3_cancellation_cleanup():
    """Common Pitfalls #3: on the node's timeout only the ✅ version cleans up.

    Both fail loudly with `NodeTimeoutError` naming the node; the library awaits the
    ✅ version's ``except CancelledError`` cleanup before raising.
    """
    cleaned: list[str] = []

    async def long_operation() -> None:
        await asyncio.sleep(60)

    async def cleanup(self: Any) -> None:
        await asyncio.sleep(0.1)
        cleaned.append(self.name)

    snippets = guide_functions(
        "Common Pitfalls", "3. Not handling cancellation", long_operation=long_operation
    )
    for name, kind in (("NoCleanup", "wrong"), ("CleansUp", "correct")):
        node = node_class(name, snippets[kind], cleanup=cleanup)(timeout=5)
        with pytest.raises(NodeTimeoutError, match=name):
            await ainvoke(node, state_of(["x"]))

    assert cleaned == ["CleansUp"]


# --- HTTP samples, against a real local server (real time) ---------------------------------


@pytest.fixture
async def api() -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1, random port; yields its base URL."""

    async def data(request: web.Request) -> web.Response:
        return web.json_response({"items": [1, 2, 3]})

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"echo": await request.json()})

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=f"page {request.match_info['n']}")

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def update(request: web.Request) -> web.Response:
        return web.json_response({"data": {"from": "server"}})

    async def a_list(request: web.Request) -> web.Response:
        return web.json_response([1, 2, 3])

    app = web.Application()
    app.router.add_get("/data", data)
    app.router.add_post("/echo", echo)
    app.router.add_get("/page/{n}", page)
    app.router.add_get("/missing", missing)
    app.router.add_get("/update", update)
    app.router.add_get("/list", a_list)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_fetch_node_against_local_server(api: str):
    """Single Async Operation: FetchNode GETs the URL in the state and returns its JSON."""
    node = guide_class("Single Async Operation", "FetchNode")()

    result = await ainvoke(node, state_of(["data"], url=f"{api}/data"))

    assert result["data"] == {"items": [1, 2, 3]}


async def test_http_node_get_and_post(api: str):
    """Async HTTP Clients: HTTPNode's GET and POST both reach the server."""
    node = guide_class("Async HTTP Clients", "HTTPNode")()
    state = state_of(["data", "result"], url=f"{api}/data", api_url=f"{api}/echo", query="q")

    result = await ainvoke(node, state)

    assert result["data"] == {"items": [1, 2, 3]}
    assert result["result"] == {"echo": {"query": "q"}}


async def test_robust_http_node(api: str):
    """Async HTTP Clients: RobustHTTPNode returns the data, or a 404 as an error string.

    It catches ``aiohttp.ClientError`` before ``TimeoutError``, so aiohttp's own
    timeouts are reported as "HTTP error" (docs/cookbook.md, Try-Except in Async).
    """
    Node = guide_class("Async HTTP Clients", "RobustHTTPNode")

    ok = await ainvoke(Node(), state_of(["data", "error"], url=f"{api}/data"))
    missing = await ainvoke(Node(), state_of(["data", "error"], url=f"{api}/missing"))

    assert subset(ok, ["data", "error"]) == {"data": {"items": [1, 2, 3]}, "error": None}
    assert missing["data"] is None
    assert missing["error"].startswith("404")


async def test_pooled_http_node_leaves_session_open(api: str):
    """Connection Pooling: PooledHTTPNode works, and leaves its session open.

    Nothing calls the sample's ``cleanup()``, and the session is bound to this event
    loop (docs/cookbook.md, Advanced Patterns: Connection Pooling); the test calls
    ``cleanup()`` itself, or the run would end with "Unclosed client session".
    """
    node = guide_class("Connection Pooling", "PooledHTTPNode")(pool_size=2)
    urls = [f"{api}/page/{n}" for n in range(4)]
    try:
        result = await ainvoke(node, state_of(["results"], urls=urls))

        assert result["results"] == [f"page {n}" for n in range(4)]
        assert node.session is not None
        assert not node.session.closed
    finally:
        await node.cleanup()
    assert node.session.closed


async def test_optimized_node(api: str):
    """Performance Optimization #1: OptimizedNode reads a ``url`` it never defines.

    As written it raises ``NameError`` after it opened its session, which stays open;
    given a module-level ``url`` it returns the response JSON itself as the update,
    which must then be a dict (a list raises `NodeResultError` naming the node)
    (docs/cookbook.md, Performance Optimization 1).
    """
    broken = guide_class("1. Use connection pooling", "OptimizedNode")()
    try:
        with pytest.raises(NameError, match="name 'url' is not defined"):
            await ainvoke(broken, state_of(["data"]))
        assert broken.session is not None
        assert not broken.session.closed
    finally:
        if broken.session is not None:
            await broken.session.close()

    for path, outcome in (("/update", None), ("/list", "NodeResultError")):
        Node = guide_class("1. Use connection pooling", "OptimizedNode", url=f"{api}{path}")
        node = Node()
        try:
            if outcome is None:
                result = await ainvoke(node, state_of(["data"]))
                assert result["data"] == {"from": "server"}
            else:
                with pytest.raises(TypeError, match="node 'OptimizedNode'") as raised:
                    await ainvoke(node, state_of(["data"]))
                assert type(raised.value).__name__ == outcome
        finally:
            await node.session.close()


# --- file and thread samples (real time) ---------------------------------------------------


async def test_file_node(tmp_path: Path):
    """Async File I/O: FileNode reads a file and writes it upper-cased."""
    source, target = tmp_path / "in.txt", tmp_path / "out.txt"
    source.write_text("hello guide\n", encoding="utf-8")
    node = guide_class("Async File I/O", "FileNode")()

    result = await ainvoke(
        node, state_of(["processed"], input_file=str(source), output_file=str(target))
    )

    assert result["processed"] is True
    assert target.read_text(encoding="utf-8") == "HELLO GUIDE\n"


async def test_multi_file_node(tmp_path: Path):
    """Async File I/O: MultiFileNode reads every file concurrently and reports lengths."""
    files = []
    for n in range(3):
        path = tmp_path / f"f{n}.txt"
        path.write_text("x" * (n + 1), encoding="utf-8")
        files.append(str(path))
    node = guide_class("Async File I/O", "MultiFileNode")()

    result = await ainvoke(node, state_of(["results"], files=files))

    assert result["results"] == [{"file": f, "length": n + 1} for n, f in enumerate(files)]


@pytest.mark.virtual_clock
async def test_mixed_node():
    """Mixed Sync/Async Code: MixedNode returns both results.

    Its private ``ThreadPoolExecutor`` is never shut down (docs/cookbook.md,
    Integration Patterns: Mixed Sync/Async Code): nothing warns about that, the
    threads just stay until the interpreter exits, so the test shuts it down. The
    thread's ``time.sleep(1)`` is real time; the ``asyncio.sleep(1)`` is virtual.
    """
    node = guide_class("Mixed Sync/Async Code", "MixedNode")()
    try:
        result = await ainvoke(node, state_of(["async_result", "sync_result"], input="x"))
    finally:
        node.executor.shutdown(wait=True)

    assert subset(result, ["async_result", "sync_result"]) == {
        "async_result": "Async: x",
        "sync_result": "Sync: x",
    }
