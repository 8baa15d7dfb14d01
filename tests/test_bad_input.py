"""Bad input to every public function and class: the error type, and a message that helps.

Each `Row` is one row of the "Bad input" table in docs/reliability.md (the row's id
is its "invalid input" cell); `test_bad_input_is_rejected` proves it, and
`test_reliability_table_lists_every_row` keeps the table and these rows the same.
A row's call is written once: its "invalid input" text is the call the test makes
(the names the docs use for placeholders are in `placeholders`), unless the text
describes the call rather than being it, when ``call=`` makes it.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.types import RetryPolicy

import act_operator_lib
from act_operator_lib import (
    AsyncBaseNode,
    BaseGraph,
    BaseNode,
    DuplicateItemKeyError,
    DurableContextError,
    FunctionNotAsyncError,
    GraphDefinitionError,
    MissingAwaitError,
    NodeDefinitionError,
    NodeResultError,
    RateLimiter,
    ResultNotSerializableError,
    bridge,
    cache,
    concurrency,
    diagnostics,
    durable,
    forget_durable,
    gather_within,
    limits,
    map_concurrent,
    map_durable,
    observability,
    resources,
    retry_after,
    run_async,
    testing,
)
from act_operator_lib._retry_after import MAX_RETRY_AFTER
from act_operator_lib.integrations import langchain as langchain_integration
from act_operator_lib.integrations.langchain import with_token_budget
from act_operator_lib.limits import MultiRateLimiter, Rate, RedisMultiRateLimiter
from act_operator_lib.testing import (
    fake_chat_model,
    run_node,
    run_node_sync,
)

REDIS = "redis://127.0.0.1:1/0"
"""A Redis URL for constructors; nothing connects to it (arguments are checked first)."""

UNUSED_FILE = str(Path(tempfile.gettempdir()) / "act-operator-bad-input-never-written.txt")
"""A path the file helpers must not open: their arguments are checked first."""


@dataclass(frozen=True)
class Row:
    """One row of the table: ``call()`` must raise ``error`` naming ``says``."""

    section: str
    """The docs section: the module that owns ``api``."""
    api: str
    invalid_input: str
    """The table's "invalid input" cell, the test id, and the call unless ``call`` is given."""
    error: type[BaseException]
    says: tuple[str, ...]
    """Fragments the message contains: the argument, and the fix."""
    hides: str = ""
    """A secret the message must not contain."""
    call: Callable[[], Any] | None = None
    """Makes the bad call when ``invalid_input`` describes it.

    A coroutine the call returns is run, an async iterator drained."""

    def make_call(self) -> Any:
        if self.call is not None:
            return self.call()
        return eval(self.invalid_input, globals() | placeholders())

    def markdown(self) -> str:
        says = ", ".join(_code(fragment) for fragment in self.says)
        if self.hides:
            says += f"; never {_code(self.hides)}"
        cells = (_code(self.api), _code(self.invalid_input), _code(self.error.__name__), says)
        return "| " + " | ".join(cells) + " |"


PUBLIC_MODULES = (
    act_operator_lib,
    bridge,
    cache,
    concurrency,
    diagnostics,
    durable,
    limits,
    observability,
    resources,
    testing,
    langchain_integration,
)


def placeholders() -> dict[str, Any]:
    """What the table's calls may name: the public API, and its placeholder arguments.

    The placeholders are fresh for each row.
    """
    names: dict[str, Any] = {
        name: getattr(module, name) for module in PUBLIC_MODULES for name in module.__all__
    }
    return names | {
        "url": REDIS,
        "fn": double,
        "sync_fn": sync_double,
        "items": [1, 2],
        "store": InMemoryStore(),
        "path": UNUSED_FILE,
        "messages": [],
        "state": {},
        "limiter": MultiRateLimiter(tokens=Rate(100)),
    }


def _code(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def graph_building(checkpointer: Any) -> BaseGraph:
    """A graph whose build() returns None, or one compiled with ``checkpointer``."""

    class Cast(BaseGraph):
        def build(self) -> Any:
            if checkpointer is None:
                return None
            builder = StateGraph(dict)
            builder.add_node("noop", lambda state: {})
            builder.add_edge(START, "noop")
            return builder.compile(checkpointer=checkpointer)

    return Cast()


async def double(item: int) -> int:
    return item * 2


async def answer_nul(item: int) -> str:
    return "a\x00b"


async def answer_object(item: int) -> object:
    return object()


def sync_function() -> int:
    return 1


def sync_double(item: int) -> int:
    return item * 2


async def drain(iterator: AsyncIterable[Any]) -> None:
    async for _ in iterator:
        pass


def node_class(base: type, **attributes: Any) -> type:
    """``class Node(base): ...`` with ``attributes``, as a class statement would."""
    return type("Node", (base,), attributes)


def sync_execute(self: Any, state: Any) -> dict[str, Any]:
    return {}


async def async_execute(self: Any, state: Any) -> dict[str, Any]:
    return {}


async def async_fn() -> None:
    return None


async def execute_with_extra(self: Any, state: Any, foo: Any) -> dict[str, Any]:
    return {}


async def execute_returning_5(self: Any, state: Any) -> Any:
    return 5


async def execute_forgetting_await(self: Any, state: Any) -> Any:
    return asyncio.sleep(0)


class Echo(AsyncBaseNode):
    async def execute(self, state: dict[str, Any]) -> dict[str, Any]:
        return dict(state)


@dataclass
class EchoState:
    text: str = ""


async def call_with_pending(make: Callable[[Any], Any]) -> Any:
    """``make(coroutine)`` with a coroutine that is closed if ``make`` rejects it."""
    pending = asyncio.sleep(0)
    try:
        return await make(pending)
    finally:
        pending.close()


async def settle_twice() -> None:
    limiter = MultiRateLimiter(tokens=Rate(100))
    reservation = await limiter.reserve(tokens=10)
    await reservation.settle(tokens=5)
    await reservation.settle(tokens=5)


async def settle_negative() -> None:
    reservation = await MultiRateLimiter(tokens=Rate(100)).reserve(tokens=10)
    await reservation.settle(tokens=-5)


async def settle_after_its_block() -> None:
    async with MultiRateLimiter(tokens=Rate(100)).reserve(tokens=10) as reservation:
        pass
    await reservation.settle(tokens=5)


async def settle_before_the_grant() -> None:
    await MultiRateLimiter(tokens=Rate(100)).reserve(tokens=10).settle(tokens=5)


async def settle_an_unknown_rate() -> None:
    reservation = await MultiRateLimiter(tokens=Rate(100)).reserve(tokens=10)
    await reservation.settle(images=5)


def token_budget() -> MultiRateLimiter:
    return MultiRateLimiter(requests=Rate(500, per=60), tokens=Rate(90_000, per=60))


async def run_node_sync_inside_a_loop() -> Any:
    return run_node_sync(Echo(), {"text": "hi"})


ROWS = [
    # act_operator_lib.limits
    Row(
        "limits",
        "RateLimiter",
        "RateLimiter(0)",
        ValueError,
        ("rate", "finite number above 0"),
    ),
    Row(
        "limits",
        "RateLimiter",
        "RateLimiter('5')",
        TypeError,
        ("rate", "must be a number"),
    ),
    Row(
        "limits",
        "RateLimiter",
        "RateLimiter(5, per=-1)",
        ValueError,
        ("per", "finite number above 0"),
    ),
    Row(
        "limits",
        "RateLimiter",
        "RateLimiter(5, burst=0)",
        ValueError,
        ("burst", "at least 1"),
    ),
    Row(
        "limits",
        "RateLimiter",
        "RateLimiter(5, burst=1.5)",
        TypeError,
        ("burst", "must be an int"),
    ),
    Row(
        "limits",
        "ConcurrencyLimiter",
        "ConcurrencyLimiter(0)",
        ValueError,
        ("limit", "at least 1"),
    ),
    Row(
        "limits",
        "ConcurrencyLimiter",
        "ConcurrencyLimiter(2.5)",
        TypeError,
        ("limit", "must be an int"),
    ),
    Row(
        "limits",
        "RateLimiter.acquire",
        "RateLimiter(5).acquire(weight=0)",
        ValueError,
        ("RateLimiter.acquire(weight=0)", "from 1 to 5"),
    ),
    Row(
        "limits",
        "RateLimiter.pause",
        "RateLimiter(5).pause(-1)",
        ValueError,
        ("RateLimiter.pause(seconds=-1)", "finite number >= 0"),
    ),
    Row(
        "limits",
        "RateLimiter.pause",
        "RateLimiter(5).pause(True)",
        TypeError,
        ("RateLimiter.pause(seconds=True)", "must be a number"),
    ),
    Row(
        "limits",
        "MultiRateLimiter",
        "MultiRateLimiter()",
        TypeError,
        ("MultiRateLimiter(**rates)", "at least one rate"),
    ),
    Row(
        "limits",
        "MultiRateLimiter",
        "MultiRateLimiter(requests=500)",
        TypeError,
        ("MultiRateLimiter(requests=...)", "must be a Rate"),
    ),
    Row(
        "limits",
        "Rate",
        "Rate(0)",
        ValueError,
        ("Rate(limit=0)", "finite number above 0"),
    ),
    Row(
        "limits",
        "MultiRateLimiter.reserve",
        "limiter.reserve(tokens=-1)",
        ValueError,
        ("MultiRateLimiter.reserve(tokens=-1)", "at least 0"),
    ),
    Row(
        "limits",
        "MultiRateLimiter.reserve",
        "limiter.reserve(images=1)",
        TypeError,
        ("reserve(images=...)", "must name one of the rates"),
    ),
    Row(
        "limits",
        "Reservation.settle",
        "reservation.settle(tokens=-5)",
        ValueError,
        ("Reservation.settle(tokens=-5)", "at least 0"),
        call=settle_negative,
    ),
    Row(
        "limits",
        "Reservation.settle",
        "reservation.settle(...) twice",
        RuntimeError,
        ("is closed", "settled once"),
        call=settle_twice,
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, '', 5)",
        ValueError,
        ("key", "1 to 512 characters without whitespace"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, 'k', 0)",
        ValueError,
        ("rate", "finite number above 0"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, 'k', 5, timeout=0)",
        ValueError,
        ("timeout", "finite number above 0"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, 'k', 5, on_unavailable='x')",
        ValueError,
        ("on_unavailable", "('fail', 'allow', 'local')"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(5, 'k', 5)",
        TypeError,
        ("redis", "a URL or a redis.asyncio.Redis client"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter('http://:secret@127.0.0.1:1', 'k', 5)",
        ValueError,
        ("malformed Redis URL", "redis, rediss, unix"),
        hides="secret",
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, 'k', 5).pause(-1)",
        ValueError,
        ("RedisRateLimiter.pause(seconds=-1)", "finite number >= 0"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter('redis+sentinel://:secret@127.0.0.1:26379', 'k', 5)",
        ValueError,
        ("malformed Redis URL", "no service name"),
        hides="secret",
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter('redis+sentinel://127.0.0.1/primary', 'k', 5)",
        ValueError,
        ("malformed Redis URL", "each Sentinel must be host:port"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, 'k', 5, adaptive='no')",
        TypeError,
        ("RedisRateLimiter(adaptive='no')", "True or False"),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter",
        "RedisMultiRateLimiter(url, 'k', adaptive=1, tokens=Rate(100))",
        TypeError,
        ("RedisMultiRateLimiter(adaptive=1)", "True or False"),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter",
        "RedisMultiRateLimiter(url, 'k')",
        TypeError,
        ("RedisMultiRateLimiter(**rates)", "at least one rate"),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter",
        "RedisMultiRateLimiter(url, 'k', tokens=500)",
        TypeError,
        ("RedisMultiRateLimiter(tokens=...)", "must be a Rate"),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter",
        "RedisMultiRateLimiter(url, 'k', **{'a b': Rate(5)})",
        ValueError,
        ("RedisMultiRateLimiter('a b'=...)", "Python identifier"),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter",
        "RedisMultiRateLimiter(url, 'k', tokens=Rate(5), timeout=0)",
        ValueError,
        ("timeout", "finite number above 0"),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter.reserve",
        "redis_limiter.reserve(tokens=-1)",
        ValueError,
        ("RedisMultiRateLimiter.reserve(tokens=-1)", "at least 0"),
        call=lambda: RedisMultiRateLimiter(REDIS, "k", tokens=Rate(100)).reserve(tokens=-1),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter.reserve",
        "redis_limiter.reserve(tokens=101)",
        ValueError,
        ("RedisMultiRateLimiter.reserve(tokens=101)", "at most the rate's max_cost 100"),
        call=lambda: RedisMultiRateLimiter(REDIS, "k", tokens=Rate(100)).reserve(tokens=101),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter.reserve",
        "redis_limiter.reserve(images=1)",
        TypeError,
        ("RedisMultiRateLimiter.reserve(images=...)", "must name one of the rates"),
        call=lambda: RedisMultiRateLimiter(REDIS, "k", tokens=Rate(100)).reserve(images=1),
    ),
    Row(
        "limits",
        "RedisMultiRateLimiter.pause",
        "redis_limiter.pause(-1)",
        ValueError,
        ("RedisMultiRateLimiter.pause(seconds=-1)", "finite number >= 0"),
        call=lambda: RedisMultiRateLimiter(REDIS, "k", tokens=Rate(100)).pause(-1),
    ),
    Row(
        "limits",
        "RedisConcurrencyLimiter",
        "RedisConcurrencyLimiter(url, 'k', 0)",
        ValueError,
        ("limit", "at least 1"),
    ),
    Row(
        "limits",
        "RedisConcurrencyLimiter",
        "RedisConcurrencyLimiter(url, 'k', 2, lease=0)",
        ValueError,
        ("lease", "finite number above 0"),
    ),
    Row(
        "limits",
        "RedisConcurrencyLimiter",
        "RedisConcurrencyLimiter(url, 5, 2)",
        TypeError,
        ("key", "must be a str"),
    ),
    Row(
        "limits",
        "RateLimiter",
        "RateLimiter(5, adaptive='no')",
        TypeError,
        ("RateLimiter(adaptive='no')", "True or False"),
    ),
    Row(
        "limits",
        "MultiRateLimiter",
        "MultiRateLimiter(adaptive=1, tokens=Rate(100))",
        TypeError,
        ("MultiRateLimiter(adaptive=1)", "True or False"),
    ),
    Row(
        "limits",
        "RateLimiter.pause",
        "RateLimiter(5).pause(float('nan'))",
        ValueError,
        ("RateLimiter.pause(seconds=nan)", "finite number >= 0"),
    ),
    Row(
        "limits",
        "MultiRateLimiter.pause",
        "MultiRateLimiter(tokens=Rate(100)).pause(-1)",
        ValueError,
        ("MultiRateLimiter.pause(seconds=-1)", "finite number >= 0"),
    ),
    Row(
        "limits",
        "MultiRateLimiter.pause",
        "MultiRateLimiter(tokens=Rate(100)).pause('1')",
        TypeError,
        ("MultiRateLimiter.pause(seconds='1')", "must be a number"),
    ),
    Row(
        "limits",
        "RedisRateLimiter",
        "RedisRateLimiter(url, 'k', 5).pause('x')",
        TypeError,
        ("RedisRateLimiter.pause(seconds='x')", "must be a number"),
    ),
    Row(
        "limits",
        "RedisConcurrencyLimiter",
        "RedisConcurrencyLimiter(url, 'k', 2).pause(-1)",
        ValueError,
        ("RedisConcurrencyLimiter.pause(seconds=-1)", "finite number >= 0"),
    ),
    Row(
        "limits",
        "Rate",
        "Rate(5, per=0)",
        ValueError,
        ("Rate(per=0)", "finite number above 0"),
    ),
    Row(
        "limits",
        "MultiRateLimiter.reserve",
        "limiter.reserve(tokens=1.5)",
        TypeError,
        ("MultiRateLimiter.reserve(tokens=1.5)", "must be an int"),
    ),
    Row(
        "limits",
        "MultiRateLimiter.reserve",
        "limiter.reserve(tokens=1000) (above the rate's limit of 100)",
        ValueError,
        ("MultiRateLimiter.reserve(tokens=1000)", "at most the rate's max_cost 100"),
        call=lambda: MultiRateLimiter(tokens=Rate(100)).reserve(tokens=1000),
    ),
    Row(
        "limits",
        "Reservation.settle",
        "reservation.settle(...) after its async with block",
        RuntimeError,
        ("is closed", "before its async with block ends"),
        call=settle_after_its_block,
    ),
    Row(
        "limits",
        "Reservation.settle",
        "reservation.settle(...) before the grant",
        RuntimeError,
        ("was not granted yet", "await it first"),
        call=settle_before_the_grant,
    ),
    Row(
        "limits",
        "Reservation.settle",
        "reservation.settle(images=5)",
        TypeError,
        ("Reservation.settle(images=...)", "must name one of the rates (tokens)"),
        call=settle_an_unknown_rate,
    ),
    # act_operator_lib.concurrency
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, items, limit=0)",
        ValueError,
        ("limit", "at least 1", "how many calls run at once"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, items, limit=1.5)",
        TypeError,
        ("limit", "must be an int"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, items, limit=1, timeout=0)",
        ValueError,
        ("timeout", "more than 0 seconds", "pass None for no timeout"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(None, items, limit=1)",
        TypeError,
        ("fn", "async function taking one item"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, 5, limit=1)",
        TypeError,
        ("items", "iterable or async iterable"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, items, limit=1, rate_limiter=5)",
        TypeError,
        ("rate_limiter", "async acquire()", "limits.RateLimiter"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(sync_fn, items, limit=1, return_exceptions=True)",
        FunctionNotAsyncError,
        ("fn", "sync_double() returned int", "async def", "run_sync"),
    ),
    Row(
        "concurrency",
        "as_completed",
        "as_completed(sync_fn, items, limit=1, timeout=1)",
        FunctionNotAsyncError,
        ("fn", "sync_double() returned int", "async def", "run_sync"),
    ),
    Row(
        "concurrency",
        "as_completed",
        "as_completed(fn, items, limit=0)",
        ValueError,
        ("limit", "at least 1"),
    ),
    Row(
        "concurrency",
        "as_completed",
        "as_completed(fn, items, limit=1, timeout=-1)",
        ValueError,
        ("timeout", "more than 0 seconds"),
    ),
    Row(
        "concurrency",
        "gather_within",
        "gather_within(coroutine, timeout=-1)",
        ValueError,
        ("timeout", "more than 0 seconds"),
        call=lambda: call_with_pending(lambda pending: gather_within(pending, timeout=-1)),
    ),
    Row(
        "concurrency",
        "gather_within",
        "gather_within(coroutine, timeout='x')",
        TypeError,
        ("timeout", "number of seconds"),
        call=lambda: call_with_pending(lambda pending: gather_within(pending, timeout="x")),
    ),
    Row(
        "concurrency",
        "gather_within",
        "gather_within(5, timeout=1)",
        TypeError,
        ("argument 0 is int", "Pass `fetch()`, not `fetch`"),
    ),
    Row(
        "concurrency",
        "first_completed",
        "first_completed()",
        ValueError,
        ("needs at least one awaitable",),
    ),
    Row(
        "concurrency",
        "first_completed",
        "first_completed(5)",
        TypeError,
        ("argument 0 is int", "Pass `fetch()`, not `fetch`"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, items, limit=1, retry=5)",
        TypeError,
        ("map_concurrent", "retry", "RetryPolicy(max_attempts=3)"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(fn, items, limit=1, retry=[])",
        TypeError,
        ("map_concurrent", "retry", "non-empty"),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(..., retry=RetryPolicy(max_attempts=0))",
        ValueError,
        ("map_concurrent", "retry.max_attempts", "at least 1"),
        call=lambda: map_concurrent(double, [1], limit=1, retry=RetryPolicy(max_attempts=0)),
    ),
    Row(
        "concurrency",
        "map_concurrent",
        "map_concurrent(..., retry=RetryPolicy(initial_interval=-1))",
        ValueError,
        ("map_concurrent", "retry.initial_interval", ">= 0"),
        call=lambda: map_concurrent(double, [1], limit=1, retry=RetryPolicy(initial_interval=-1)),
    ),
    Row(
        "concurrency",
        "as_completed",
        "as_completed(fn, items, limit=1, retry=[5])",
        TypeError,
        ("as_completed", "retry", "RetryPolicy objects", "got int"),
    ),
    # act_operator_lib.durable
    Row(
        "durable",
        "map_durable",
        "map_durable(fn, items, key=None, limit=1)",
        TypeError,
        ("key", "key=lambda row: str(row['id'])"),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(fn, items, key=str, limit=1) outside a graph",
        DurableContextError,
        ("needs a LangGraph store", "store=..."),
        call=lambda: map_durable(double, [1], key=str, limit=1),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., limit=0, store=store, namespace='n')",
        ValueError,
        ("limit", "at least 1"),
        call=lambda: map_durable(
            double, [1], key=str, limit=0, store=InMemoryStore(), namespace="n"
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., store=5, namespace='n')",
        TypeError,
        ("store", "BaseStore (InMemoryStore"),
        call=lambda: map_durable(double, [1], key=str, limit=1, store=5, namespace="n"),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., store=store, namespace=5)",
        TypeError,
        ("namespace", "a str or a tuple of str"),
        call=lambda: map_durable(double, [1], key=str, limit=1, store=InMemoryStore(), namespace=5),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., store=store, namespace='')",
        ValueError,
        ("namespace", "non-empty"),
        call=lambda: map_durable(
            double, [1], key=str, limit=1, store=InMemoryStore(), namespace=""
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., flush_every=0)",
        ValueError,
        ("flush_every", "at least 1"),
        call=lambda: map_durable(
            double, [1], key=str, limit=1, store=InMemoryStore(), namespace="n", flush_every=0
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., flush_interval=-1)",
        ValueError,
        ("flush_interval", "more than 0 seconds"),
        call=lambda: map_durable(
            double, [1], key=str, limit=1, store=InMemoryStore(), namespace="n", flush_interval=-1
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(fn, [1, 1], key=str, ...) (duplicate keys)",
        DuplicateItemKeyError,
        ("same key '1'", "must be unique and stable"),
        call=lambda: map_durable(
            double, [1, 1], key=str, limit=1, store=InMemoryStore(), namespace="n"
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(fn, [1], key=lambda item: item, ...)",
        TypeError,
        ("key", "must return a str"),
        call=lambda: map_durable(
            double, [1], key=lambda item: item, limit=1, store=InMemoryStore(), namespace="n"
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(fn returning object(), ...)",
        ResultNotSerializableError,
        ("item '1'", "records JSON data", "model_dump"),
        call=lambda: map_durable(
            answer_object, [1], key=str, limit=1, store=InMemoryStore(), namespace="n"
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(fn returning 'a\\x00b', ...)",
        ResultNotSerializableError,
        ("item '1'", "NUL character", "PostgreSQL store cannot hold"),
        call=lambda: map_durable(
            answer_nul, [1], key=str, limit=1, store=InMemoryStore(), namespace="n"
        ),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(fn, [1], key=lambda item: 'a\\x00b', ...)",
        ValueError,
        ("key", "without NUL characters"),
        call=lambda: map_durable(
            double, [1], key=lambda item: "a\x00b", limit=1, store=InMemoryStore(), namespace="n"
        ),
    ),
    Row(
        "durable",
        "forget_durable",
        "forget_durable() outside a graph",
        DurableContextError,
        ("needs a LangGraph store", "store=..."),
        call=lambda: forget_durable(),
    ),
    Row(
        "durable",
        "forget_durable",
        "forget_durable(store=store) outside a graph",
        DurableContextError,
        ("outside a LangGraph node", "namespace=..."),
        call=lambda: forget_durable(store=InMemoryStore()),
    ),
    Row(
        "durable",
        "forget_durable",
        "forget_durable(store=store, namespace=5)",
        TypeError,
        ("namespace", "a str or a tuple of str"),
    ),
    Row(
        "durable",
        "map_durable",
        "map_durable(..., retry=5)",
        TypeError,
        ("map_durable", "retry", "RetryPolicy(max_attempts=3)"),
        call=lambda: map_durable(
            double, [1], key=str, limit=1, store=InMemoryStore(), namespace="n", retry=5
        ),
    ),
    # act_operator_lib.resources
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(limit=-1)",
        ValueError,
        ("limit", "int >= 1"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(limit_per_host=-1)",
        ValueError,
        ("limit_per_host", "int >= 0"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(timeout=0)",
        ValueError,
        ("timeout", "> 0 or None"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(connect_timeout=0)",
        ValueError,
        ("connect_timeout", "> 0"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(base_url='api.example.com')",
        ValueError,
        ("base_url", "absolute http:// or https:// URL"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(base_url='ftp://u:secret@host/')",
        ValueError,
        ("base_url", "u:***@host"),
        hides="secret",
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(headers=5)",
        TypeError,
        ("headers", "mapping of header name to value"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource(min_size=-1)",
        ValueError,
        ("min_size", "0..max_size"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource(max_size=0)",
        ValueError,
        ("max_size", "int >= 1"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource(min_size=5, max_size=2)",
        ValueError,
        ("min_size", "0..max_size (2)"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource(connect_timeout=0)",
        ValueError,
        ("connect_timeout", "> 0"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource(command_timeout=-1)",
        ValueError,
        ("command_timeout", "finite number above 0"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource(5)",
        TypeError,
        ("dsn", "str URL or None"),
    ),
    Row(
        "resources",
        "PostgresResource",
        "PostgresResource('mysql://u:secret@h/db')",
        ValueError,
        ("dsn", "postgresql:// or postgres:// URL"),
        hides="secret",
    ),
    Row(
        "resources",
        "SQLiteResource",
        "SQLiteResource(5)",
        TypeError,
        ("path", "str or os.PathLike"),
    ),
    Row(
        "resources",
        "SQLiteResource",
        "SQLiteResource('app.db', timeout=-1)",
        ValueError,
        ("timeout", ">= 0"),
    ),
    Row(
        "resources",
        "SQLiteResource",
        "SQLiteResource('app.db', timeout='5')",
        TypeError,
        ("timeout", "number of seconds"),
    ),
    Row(
        "resources",
        "SQLiteResource",
        "SQLiteResource('app.db', pragmas={'a; drop': 1})",
        ValueError,
        ("pragmas", "is not a pragma name"),
    ),
    Row(
        "resources",
        "Resource",
        "Resource() (abstract)",
        TypeError,
        ("abstract", "close", "open"),
    ),
    Row(
        "resources",
        "BoundResource",
        "BoundResource(5, 'label')",
        TypeError,
        ("resource", "declare resources as class attributes"),
    ),
    Row(
        "resources",
        "read_text",
        "read_text(5)",
        TypeError,
        ("path", "str or os.PathLike"),
    ),
    Row(
        "resources",
        "read_bytes",
        "read_bytes(None)",
        TypeError,
        ("path", "str or os.PathLike"),
    ),
    Row(
        "resources",
        "write_text",
        "write_text(path, 5)",
        TypeError,
        ("text", "must be a str", "write_bytes()"),
    ),
    Row(
        "resources",
        "write_bytes",
        "write_bytes(path, 'text')",
        TypeError,
        ("data", "must be bytes", "write_text()"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(rate_limiter=5)",
        TypeError,
        ("HTTPResource(rate_limiter=...)", "await rate_limiter.acquire()", "RateLimiter(20)"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(retry=5)",
        TypeError,
        ("HTTPResource(retry=...)", "RetryPolicy(max_attempts=5)", "got int"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(retry=[])",
        TypeError,
        ("HTTPResource(retry=...)", "non-empty sequence", "got []"),
    ),
    Row(
        "resources",
        "HTTPResource",
        "HTTPResource(retry=RetryPolicy(max_attempts=0))",
        ValueError,
        ("HTTPResource(retry.max_attempts=0)", "at least 1"),
    ),
    # act_operator_lib.bridge
    Row(
        "bridge",
        "run_async",
        "run_async(5)",
        TypeError,
        ("needs a coroutine", "run_async(fetch_all(urls))"),
    ),
    Row(
        "bridge",
        "run_async",
        "run_async(coroutine, timeout=-1)",
        ValueError,
        ("timeout", "> 0 or None"),
        call=lambda: call_with_pending(
            lambda pending: asyncio.to_thread(run_async, pending, timeout=-1)
        ),
    ),
    Row(
        "bridge",
        "run_sync",
        "run_sync(5)",
        TypeError,
        ("function", "run_sync(query, 'SELECT 1')"),
    ),
    Row(
        "bridge",
        "set_thread_limit",
        "set_thread_limit(0)",
        ValueError,
        ("limit", "int >= 1"),
    ),
    Row(
        "bridge",
        "set_thread_limit",
        "set_thread_limit(1.5)",
        TypeError,
        ("limit", "int >= 1"),
    ),
    # act_operator_lib.cache
    Row(
        "cache",
        "cached",
        "cached(ttl=0)",
        ValueError,
        ("ttl", "finite number above 0"),
    ),
    Row(
        "cache",
        "cached",
        "cached(ttl='60')",
        TypeError,
        ("ttl", "must be a number"),
    ),
    Row(
        "cache",
        "cached",
        "cached(ttl=60)(sync_function)",
        TypeError,
        ("needs an async function",),
    ),
    Row(
        "cache",
        "cached",
        "cached(ttl=60, key=5)",
        TypeError,
        ("key", "function (*args, **kwargs) -> str"),
    ),
    Row(
        "cache",
        "cached",
        "cached(ttl=60, backend=5)",
        TypeError,
        ("backend", "MemoryCacheBackend(), RedisCacheBackend(url)"),
    ),
    Row(
        "cache",
        "cached",
        "cached(ttl=60, copy='yes')",
        TypeError,
        ("copy", "True or False", "deep copy"),
    ),
    Row(
        "cache",
        "MemoryCacheBackend",
        "MemoryCacheBackend(0)",
        ValueError,
        ("max_entries", "at least 1"),
    ),
    Row(
        "cache",
        "RedisCacheBackend",
        "RedisCacheBackend(url, serializer='yaml')",
        ValueError,
        ("serializer", "'json' or 'pickle'"),
    ),
    Row(
        "cache",
        "RedisCacheBackend",
        "RedisCacheBackend(url, timeout=0)",
        ValueError,
        ("timeout", "finite number above 0"),
    ),
    Row(
        "cache",
        "RedisCacheBackend",
        "RedisCacheBackend(url, prefix=5)",
        TypeError,
        ("prefix", "must be a str"),
    ),
    Row(
        "cache",
        "RedisCacheBackend",
        "RedisCacheBackend('http://user:secret@127.0.0.1:1')",
        ValueError,
        ("malformed Redis URL", "redis, rediss, unix"),
        hides="secret",
    ),
    Row(
        "cache",
        "CacheBackend",
        "CacheBackend() (abstract)",
        TypeError,
        ("abstract", "get", "set"),
    ),
    # act_operator_lib.streaming
    Row(
        "streaming",
        "CustomStream",
        "CustomStream(5)",
        TypeError,
        ("writer", "get_stream_writer()"),
    ),
    Row(
        "streaming",
        "relay_tokens",
        "relay_tokens(5, messages)",
        TypeError,
        ("llm", "LangChain chat model"),
    ),
    Row(
        "streaming",
        "NodeRuntime",
        "NodeRuntime(bogus=1)",
        TypeError,
        ("unexpected keyword argument 'bogus'",),
    ),
    # act_operator_lib.observability
    Row(
        "observability",
        "set_tracer_provider",
        "set_tracer_provider(5)",
        TypeError,
        ("provider", "OpenTelemetry TracerProvider"),
    ),
    Row(
        "observability",
        "add_observer",
        "add_observer(object())",
        TypeError,
        ("add_observer(observer=...)", "call_started(node)", "got object"),
    ),
    # act_operator_lib.policies
    Row(
        "policies",
        "call_with_policies",
        "call_with_policies(fn, max_concurrency=3)",
        TypeError,
        ("call_with_policies(max_concurrency=...)", "ConcurrencyLimiter(3)"),
    ),
    Row(
        "policies",
        "call_with_policies",
        "call_with_policies(5)",
        TypeError,
        ("call_with_policies(fn=...)", "lambda: client.get(url)"),
    ),
    Row(
        "policies",
        "call_with_policies",
        "call_with_policies(fn, retry=5)",
        TypeError,
        ("call_with_policies", "retry", "RetryPolicy(max_attempts=3)"),
    ),
    Row(
        "policies",
        "call_with_policies",
        "call_with_policies(fn, timeout=0)",
        ValueError,
        ("call_with_policies(timeout=0)", "finite number above 0"),
    ),
    Row(
        "policies",
        "call_with_policies",
        "call_with_policies(fn, rate_limiter=5)",
        TypeError,
        ("call_with_policies", "rate_limiter", "RateLimiter(10)"),
    ),
    Row(
        "policies",
        "call_with_policies",
        "call_with_policies(lambda: sync_function())",
        FunctionNotAsyncError,
        ("call_with_policies(fn=...)", "must return an awaitable", "run_sync"),
    ),
    # act_operator_lib.integrations.langchain
    Row(
        "integrations.langchain",
        "LangChainRateLimiter",
        "LangChainRateLimiter(5)",
        TypeError,
        ("LangChainRateLimiter(limiter=...)", "await limiter.acquire()", "RateLimiter(40)"),
    ),
    Row(
        "integrations.langchain",
        "with_token_budget",
        "with_token_budget(5, budget)",
        TypeError,
        ("with_token_budget(model=...)", "LangChain chat model"),
        call=lambda: with_token_budget(5, token_budget()),
    ),
    Row(
        "integrations.langchain",
        "with_token_budget",
        "with_token_budget(model, RateLimiter(5))",
        TypeError,
        ("with_token_budget(limiter=...)", "MultiRateLimiter(", "got RateLimiter"),
        call=lambda: with_token_budget(fake_chat_model(["hi"]), RateLimiter(5)),
    ),
    Row(
        "integrations.langchain",
        "with_token_budget",
        "with_token_budget(model, budget, estimate=-1)",
        ValueError,
        ("with_token_budget(estimate=...)", "int >= 0"),
        call=lambda: with_token_budget(fake_chat_model(["hi"]), token_budget(), estimate=-1),
    ),
    Row(
        "integrations.langchain",
        "with_token_budget",
        "with_token_budget(model, budget, estimate='5')",
        TypeError,
        ("with_token_budget(estimate=...)", "int >= 0", "got str"),
        call=lambda: with_token_budget(fake_chat_model(["hi"]), token_budget(), estimate="5"),
    ),
    Row(
        "integrations.langchain",
        "with_token_budget",
        "with_token_budget(model, budget, rate=5)",
        TypeError,
        ("with_token_budget(rate=...)", "'tokens'", "got int"),
        call=lambda: with_token_budget(fake_chat_model(["hi"]), token_budget(), rate=5),
    ),
    Row(
        "integrations.langchain",
        "with_token_budget",
        "with_token_budget(model, budget, rate='toks')",
        ValueError,
        ("with_token_budget(rate='toks')", "one of the limiter's rates ('requests', 'tokens')"),
        call=lambda: with_token_budget(fake_chat_model(["hi"]), token_budget(), rate="toks"),
    ),
    Row(
        "integrations.langchain",
        "TokenBudgetModel.ainvoke",
        "with_token_budget(model, budget, estimate=lambda _: -5).ainvoke('hi')",
        ValueError,
        ("with_token_budget(estimate=...)", "must return an int >= 0", "got -5"),
        call=lambda: with_token_budget(
            fake_chat_model(["hi"]), token_budget(), estimate=lambda _: -5
        ).ainvoke("hi"),
    ),
    # act_operator_lib.diagnostics
    Row(
        "diagnostics",
        "detect_blocking",
        "detect_blocking(0)",
        ValueError,
        ("threshold", "positive number of seconds", "default is 0.1"),
    ),
    Row(
        "diagnostics",
        "detect_blocking",
        "detect_blocking('x')",
        ValueError,
        ("threshold", "positive number of seconds"),
    ),
    Row(
        "diagnostics",
        "BlockDetector",
        "BlockDetector(-1)",
        ValueError,
        ("threshold", "positive number of seconds"),
    ),
    Row(
        "diagnostics",
        "set_block_detection",
        "set_block_detection('yes')",
        TypeError,
        ("set_block_detection(enabled=...)", "True or False"),
    ),
    # act_operator_lib.base_node
    Row(
        "base_node",
        "AsyncBaseNode",
        "class Node(AsyncBaseNode): def execute(self, state)",
        NodeDefinitionError,
        ("must be defined with `async def`", "derive from BaseNode"),
        call=lambda: node_class(AsyncBaseNode, execute=sync_execute),
    ),
    Row(
        "base_node",
        "BaseNode",
        "class Node(BaseNode): async def execute(self, state)",
        NodeDefinitionError,
        ("is `async def`", "derive from AsyncBaseNode"),
        call=lambda: node_class(BaseNode, execute=async_execute),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class Node(AsyncBaseNode): pass; Node()",
        NodeDefinitionError,
        ("does not implement execute()", "abstract=True"),
        call=lambda: node_class(AsyncBaseNode)(),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "async def execute(self, state, foo)",
        NodeDefinitionError,
        ("unsupported parameter foo", "Pass other settings to __init__"),
        call=lambda: node_class(AsyncBaseNode, execute=execute_with_extra),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class attribute timeout = -1",
        ValueError,
        ("timeout", "finite number above 0"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute, timeout=-1),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class attribute max_concurrency = 0",
        ValueError,
        ("max_concurrency", "at least 1"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute, max_concurrency=0),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class attribute rate_limiter = 5",
        TypeError,
        ("rate_limiter", "RateLimiter(10)"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute, rate_limiter=5),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class attributes rate_limit and rate_limiter",
        NodeDefinitionError,
        ("declares both `rate_limit` and `rate_limiter`", "Keep `rate_limiter` only"),
        call=lambda: node_class(
            AsyncBaseNode,
            execute=async_execute,
            rate_limit=RateLimiter(10),
            rate_limiter=RateLimiter(10),
        ),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class attribute retry = 5",
        TypeError,
        ("retry", "RetryPolicy(max_attempts=3)"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute, retry=5),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "class attribute retries = RetryPolicy()",
        NodeDefinitionError,
        ("retries", "did you mean `retry`?"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute, retries=RetryPolicy()),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "Node(timeout=-1)",
        ValueError,
        ("timeout", "finite number above 0"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute)(timeout=-1),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "Node(rate_limit=RateLimiter(10), rate_limiter=RateLimiter(10))",
        TypeError,
        ("Node(rate_limit=..., rate_limiter=...) must give the policy once", "got both"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute)(
            rate_limit=RateLimiter(10), rate_limiter=RateLimiter(10)
        ),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "Node(name=5)",
        ValueError,
        ("name", "non-empty string"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute)(name=5),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "Node(verbose='x')",
        TypeError,
        ("verbose", "True or False"),
        call=lambda: node_class(AsyncBaseNode, execute=async_execute)(verbose="x"),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "execute() returns 5",
        NodeResultError,
        ("must return a dict of state updates", "got int"),
        call=lambda: node_class(AsyncBaseNode, execute=execute_returning_5)()({}),
    ),
    Row(
        "base_node",
        "AsyncBaseNode",
        "execute() returns a coroutine",
        MissingAwaitError,
        ("coroutine", "await"),
        call=lambda: node_class(AsyncBaseNode, execute=execute_forgetting_await)()({}),
    ),
    Row(
        "base_node",
        "BaseNode",
        "BaseNode() (abstract)",
        TypeError,
        ("abstract", "execute"),
    ),
    # act_operator_lib.base_graph
    Row(
        "base_graph",
        "BaseGraph",
        "BaseGraph() (abstract)",
        TypeError,
        ("abstract", "build"),
    ),
    Row(
        "base_graph",
        "BaseGraph",
        "build() returns None",
        GraphDefinitionError,
        ("Cast.build() must return a StateGraph or a compiled graph", "got NoneType"),
        call=lambda: graph_building(None)(),
    ),
    Row(
        "base_graph",
        "BaseGraph",
        "checkpointer=... when build() compiled in its own",
        GraphDefinitionError,
        ("Cast()(checkpointer=...)", "declare checkpointer in build()"),
        call=lambda: graph_building(InMemorySaver())(checkpointer=InMemorySaver()),
    ),
    # act_operator_lib.testing
    Row(
        "testing",
        "run_node",
        "run_node(5, state)",
        TypeError,
        ("node", "node instance"),
    ),
    Row(
        "testing",
        "run_node",
        "run_node(node, EchoState) (a class as state)",
        TypeError,
        ("state", "pass an instance", "state_schema="),
        call=lambda: run_node(Echo(), EchoState),
    ),
    Row(
        "testing",
        "run_node_sync",
        "run_node_sync(5, state)",
        TypeError,
        ("node", "node instance"),
    ),
    Row(
        "testing",
        "run_node_sync",
        "run_node_sync(async node) in a running loop",
        RuntimeError,
        ("inside a running event loop", "await run_node(...)"),
        call=run_node_sync_inside_a_loop,
    ),
    Row(
        "testing",
        "fake_chat_model",
        "fake_chat_model(5)",
        TypeError,
        ("responses", "list of answers"),
    ),
    Row(
        "testing",
        "fake_chat_model",
        "fake_chat_model('Paris')",
        TypeError,
        ("responses", "fake_chat_model(['Paris'])"),
    ),
    Row(
        "testing",
        "fake_chat_model",
        "fake_chat_model([])",
        ValueError,
        ("responses", "at least one answer"),
    ),
    Row(
        "testing",
        "Stopwatch",
        "Stopwatch(5)",
        TypeError,
        ("clock", "virtual_clock()", "clock.measure()"),
    ),
    Row(
        "testing",
        "assert_no_blocking_calls",
        "assert_no_blocking_calls(5)",
        TypeError,
        ("modules", "a list of them"),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.invalid_input for row in ROWS])
def test_bad_input_is_rejected(row: Row) -> None:
    async def call() -> Any:
        result = row.make_call()
        if asyncio.iscoroutine(result):
            return await result
        if isinstance(result, AsyncIterable):
            return await drain(result)
        return result

    with pytest.raises(row.error) as caught:
        asyncio.run(call())
    assert type(caught.value) is row.error
    message = str(caught.value)
    for fragment in row.says:
        assert fragment in message
    if row.hides:
        assert row.hides not in message
    assert not Path(UNUSED_FILE).exists()


def test_reliability_table_lists_every_row() -> None:
    text = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    section = text.split("## Bad input", 1)[1].split("\n## ", 1)[0]
    table_lines = {line for line in section.splitlines() if line.startswith("| `")}
    rows = {row.markdown() for row in ROWS}
    assert rows - table_lines == set(), "rows missing from docs/reliability.md"
    assert table_lines - rows == set(), "table lines no test checks"


def test_row_ids_are_unique() -> None:
    ids = [row.invalid_input for row in ROWS]
    assert len(ids) == len(set(ids))


@dataclass(frozen=True)
class Fallback:
    """One row of "Documented fallbacks": a 429 with ``headers`` gives ``seconds``."""

    headers: tuple[tuple[str, str], ...]
    seconds: float | None

    def markdown(self) -> str:
        sent = "; ".join(f"{name}: {value}" for name, value in self.headers)
        return f"| `{sent}` | `{self.seconds}` |"


FALLBACKS = [
    Fallback((("retry-after", "soon"),), None),
    Fallback((("retry-after", "-5"),), None),
    Fallback((("retry-after", "nan"),), None),
    Fallback((("retry-after", "86400"),), MAX_RETRY_AFTER),
    Fallback((("retry-after", "Fri, 31 Dec 2100 23:59:59 GMT"),), MAX_RETRY_AFTER),
    Fallback((("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT"),), 0.0),
    Fallback((("retry-after", "Fri, 31 Dec 2100 23:59:59"),), None),
    Fallback((("retry-after-ms", "inf"), ("retry-after", "2")), 2.0),
    Fallback((("x-ratelimit-reset-tokens", "6m0s"),), MAX_RETRY_AFTER),
    Fallback((("x-ratelimit-reset-requests", "1d"),), None),
    Fallback((("x-ratelimit-reset-requests", "1s2x"), ("x-ratelimit-reset-tokens", "20ms")), 0.02),
]


@pytest.mark.parametrize("row", FALLBACKS, ids=[row.markdown() for row in FALLBACKS])
def test_a_retry_after_that_cannot_be_honoured_gets_its_documented_fallback(
    row: Fallback,
) -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    response = httpx.Response(429, headers=list(row.headers), request=request)
    error = httpx.HTTPStatusError("429", request=request, response=response)

    assert retry_after(error) == row.seconds


def test_reliability_fallback_table_lists_every_row() -> None:
    text = (Path(__file__).parent.parent / "docs" / "reliability.md").read_text()
    section = text.split("## Documented fallbacks", 1)[1].split("\n## ", 1)[0]
    table_lines = {line for line in section.splitlines() if line.startswith("| `")}
    assert table_lines == {row.markdown() for row in FALLBACKS}
