"""LLM calls within provider limits: what a user picks today vs the library, side by side.

Workload: the local OpenAI-compatible server (``tests/_openai_server.py``, in a
process of its own) enforcing
``RATE`` requests/s and ``TOKENS`` tokens/s over 1 s sliding windows (429 with
``retry-after`` / ``retry-after-ms`` when either is exceeded); ``CALLS`` ChatOpenAI
calls (the real openai SDK) whose cost is spread over 50-400 tokens, 16 in flight.
The floor is the earliest a sender that knew both windows could finish (the first
window's budget may go at once). Reported per contender: calls failed, 429s the
server sent, seconds, and the ratio to the floor.

Outage: the same run, but the server answers every request 429 with
``retry-after: 2`` for 2 s, starting 0.5 s in; reported: requests that reached the
server during the outage.

``LLM_CALLS=60 python -m benchmarks llm`` runs a smaller workload.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import openai
from aiolimiter import AsyncLimiter
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_openai import ChatOpenAI
from langgraph.types import RetryPolicy
from tests._openai_server import RemoteServer, ServerLimits, openai_server_process

from act_operator_lib import RateLimiter, call_with_policies, map_concurrent
from act_operator_lib.integrations.langchain import Estimate, with_token_budget
from act_operator_lib.limits import MultiRateLimiter, Rate

RATE = 40.0
TOKENS = 8_000.0
CALLS = int(os.environ.get("LLM_CALLS", "200"))
IN_FLIGHT = 16
COSTS = (50, 400)
SEED = 15
OUTAGE_START = 0.5
OUTAGE_SECONDS = 2.0

RATE_LIMITED = RetryPolicy(max_attempts=8, initial_interval=0.5, retry_on=openai.RateLimitError)
"""The retry our contenders use: the engine waits each 429's Retry-After."""

Call = Callable[[int, str], Awaitable[Any]]
"""One contender's way to make call ``cost`` with prompt ``prompt``."""


@dataclass(frozen=True, slots=True)
class Outcome:
    failed: int
    rejected: int
    seconds: float
    during_outage: int


def costs() -> list[int]:
    chooser = random.Random(SEED)
    return [chooser.randint(*COSTS) for _ in range(CALLS)]


def floor_seconds(costs: list[int], rate: float, tokens: float, window: float = 1.0) -> float:
    """When the last call could go out at the earliest, knowing both windows exactly."""
    sent: list[tuple[float, int]] = []
    now = 0.0
    for cost in costs:
        while True:
            recent = [(moment, spent) for moment, spent in sent if moment > now - window]
            ready = now
            if len(recent) + 1 > rate * window:
                ready = max(ready, recent[len(recent) - int(rate * window)][0] + window)
            excess = sum(spent for _, spent in recent) + cost - tokens * window
            for moment, spent in recent:
                if excess <= 0:
                    break
                excess -= spent
                ready = max(ready, moment + window)
            if ready == now:
                break
            now = ready
        sent.append((now, cost))
    return now


def chat(server: RemoteServer, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-test", base_url=server.base_url, api_key="bench", **kwargs)


def prompt(index: int, cost: int) -> str:
    return f"cost={cost} call {index}"


def cost_of(text: Any) -> int:
    return int(str(text).split()[0].removeprefix("cost="))


async def run(limits: ServerLimits, make: Callable[[RemoteServer], Call], outage: bool) -> Outcome:
    spend = costs()
    with openai_server_process(limits) as server:
        call = make(server)
        loop = asyncio.get_running_loop()
        if outage:
            loop.call_later(OUTAGE_START, server.outage, OUTAGE_SECONDS, OUTAGE_SECONDS)
        started = time.monotonic()
        results = await map_concurrent(
            lambda index: call(spend[index], prompt(index, spend[index])),
            range(len(spend)),
            limit=IN_FLIGHT,
            return_exceptions=True,
        )
        seconds = time.monotonic() - started
        seen = server.statistics()
    window = (started + OUTAGE_START, started + OUTAGE_START + OUTAGE_SECONDS)
    during = sum(1 for moment in seen.arrivals if window[0] <= moment < window[1])
    failed = sum(1 for result in results if isinstance(result, BaseException))
    return Outcome(failed, seen.rejected, seconds, during if outage else 0)


def sdk_retries(retries: int) -> Callable[[RemoteServer], Call]:
    def make(server: RemoteServer) -> Call:
        model = chat(server, max_retries=retries)
        return lambda cost, text: model.ainvoke(text)

    return make


def langchain_limiter(server: RemoteServer) -> Call:
    limiter = InMemoryRateLimiter(requests_per_second=RATE, check_every_n_seconds=0.01)
    model = chat(server, rate_limiter=limiter)
    return lambda cost, text: model.ainvoke(text)


def aiolimiter_first(server: RemoteServer) -> Call:
    limiter = AsyncLimiter(RATE, 1)
    model = chat(server)

    async def call(cost: int, text: str) -> Any:
        await limiter.acquire()
        return await model.ainvoke(text)

    return call


def rate_limiter_pair(server: RemoteServer) -> Call:
    requests, tokens = RateLimiter(RATE), RateLimiter(TOKENS)
    model = chat(server)

    async def call(cost: int, text: str) -> Any:
        await requests.acquire()
        await tokens.acquire(weight=cost)
        return await model.ainvoke(text)

    return call


def budgeted(
    estimate: Estimate, scale: float = 1.0, adaptive: bool = False
) -> Callable[[RemoteServer], Call]:
    """Our way: one MultiRateLimiter, reserved and settled by the model, retried by policy."""

    def make(server: RemoteServer) -> Call:
        limiter = MultiRateLimiter(
            requests=Rate(RATE * scale, burst=int(RATE * scale)),
            tokens=Rate(TOKENS * scale, burst=int(TOKENS * scale)),
            adaptive=adaptive,
        )
        model = with_token_budget(chat(server, max_retries=0), limiter, estimate=estimate)
        return lambda cost, text: call_with_policies(
            lambda: model.ainvoke(text), retry=RATE_LIMITED
        )

    return make


CONTENDERS: list[tuple[str, Callable[[RemoteServer], Call]]] = [
    ("the openai SDK's own retries (`max_retries=2`, ChatOpenAI's default)", sdk_retries(2)),
    ("the same, `max_retries=6`", sdk_retries(6)),
    (f"LangChain `InMemoryRateLimiter({RATE:g}/s)` as `rate_limiter=`", langchain_limiter),
    (f"aiolimiter `AsyncLimiter({RATE:g}, 1)` before each call", aiolimiter_first),
    (
        f"`RateLimiter({RATE:g})` then `RateLimiter({TOKENS:g}).acquire(weight=cost)`",
        rate_limiter_pair,
    ),
    ("ours: `MultiRateLimiter`, cost known before the call", budgeted(cost_of)),
    ("ours: `MultiRateLimiter`, estimate 100 settled from usage", budgeted(100)),
    ("ours: limits at 2x the server's, adaptive, cost known", budgeted(cost_of, 2.0, True)),
]

OUTAGE_CONTENDERS: list[tuple[str, Callable[[RemoteServer], Call]]] = [
    ("the openai SDK's own retries (`max_retries=6`)", sdk_retries(6)),
    (
        f"`RateLimiter({RATE:g})` then `RateLimiter({TOKENS:g}).acquire(weight=cost)`",
        rate_limiter_pair,
    ),
    ("ours: `MultiRateLimiter`, estimate 100, shared cooldown", budgeted(100)),
]


async def _run() -> str:
    spend = costs()
    floor = floor_seconds(spend, RATE, TOKENS)
    limits = ServerLimits(requests_per_second=RATE, tokens_per_second=TOKENS)
    lines = [
        "## LLM calls within provider limits (bench_llm)",
        "",
        f"{CALLS} ChatOpenAI calls ({sum(spend):,} tokens, 50-400 each), {IN_FLIGHT} in "
        f"flight, against a local server allowing {RATE:g} requests/s and {TOKENS:,.0f} "
        f"tokens/s (1 s sliding windows); floor {floor:.2f} s.",
        "",
        "| contender | failed | 429s | seconds | vs floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, make in CONTENDERS:
        outcome = await run(limits, make, outage=False)
        lines.append(
            f"| {name} | {outcome.failed} | {outcome.rejected} | {outcome.seconds:.2f} "
            f"| {outcome.seconds / floor:.2f}x |"
        )
    lines += [
        "",
        f"Outage: every request answered 429 `retry-after: {OUTAGE_SECONDS:g}` for "
        f"{OUTAGE_SECONDS:g} s, {OUTAGE_START:g} s into the same run:",
        "",
        "| contender | failed | requests during the outage | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name, make in OUTAGE_CONTENDERS:
        outcome = await run(limits, make, outage=True)
        lines.append(
            f"| {name} | {outcome.failed} | {outcome.during_outage} | {outcome.seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> str:
    """Run the comparison and return the Markdown section for docs/benchmarks.md."""
    return asyncio.run(_run())
