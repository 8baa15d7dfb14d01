"""LLM calls within provider limits: what a user picks today vs the library, side by side.

Workload: the local OpenAI-compatible server (``tests/_openai_server.py``, in a
process of its own) enforcing R requests/s and T tokens/s over 1 s sliding windows
(429 with ``retry-after`` / ``retry-after-ms`` when either is exceeded); ChatOpenAI
calls (the real openai SDK) whose cost is spread over 50-400 tokens, 16 in flight.
The floor is the earliest a sender that knew both windows could finish (the first
window's budget may go at once). Reported per contender: calls failed, 429s the
server sent, seconds, and the ratio to the floor.

(a) 200 calls at 40 requests/s and 8,000 tokens/s, from one task group;
(b) 400 calls at 20 requests/s and 4,000 tokens/s, from 8 concurrent graph runs
    (2 calls in flight each) sharing the contender's limiter;
(c) an outage: run (a), but the server answers every request 429 with
    ``retry-after: 2`` for 2 s, from 0.5 s in; reported: requests that reached the
    server during the outage;
(d) (a)'s costs through the limiter alone, without a server;
(e) where a margin goes: (a) with known costs, each request's grant-to-send and
    send-to-arrival delays;
(f) the Redis row of (a) and (b) at each of several margins.

(a) and (b) end with a row of 4 worker processes sharing a `RedisMultiRateLimiter`
(Redis at 127.0.0.1:6379, a key of its own per run), each making its share of the
calls with ``python -m benchmarks.bench_llm worker ...``.

``LLM_CALLS=60 python -m benchmarks llm`` runs smaller workloads ((b) takes twice as
many calls). ``LLM_TABLES=a,b`` runs only those tables (of ``a`` to ``f``);
``LLM_ROWS=adaptive,redis`` only the rows whose contender names one of the words
(case-insensitive); ``LLM_ROUNDS=3`` runs each chosen row that many times in turn
(one line per run). Unset, everything runs once.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

import httpx
import openai
from aiolimiter import AsyncLimiter
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy
from tests._openai_server import (
    RemoteServer,
    ServerLimits,
    ServerStatistics,
    openai_server_process,
)

from act_operator_lib import AsyncBaseNode, RateLimiter, call_with_policies, map_concurrent
from act_operator_lib.integrations.langchain import Estimate, with_token_budget
from act_operator_lib.limits import MultiRateLimiter, Rate, RedisMultiRateLimiter

CALLS = int(os.environ.get("LLM_CALLS", "200"))
TABLES = set(os.environ.get("LLM_TABLES", "a,b,c,d,e,f").replace(" ", "").split(","))
ROWS = [word.lower() for word in os.environ.get("LLM_ROWS", "").split(",") if word.strip()]
ROUNDS = int(os.environ.get("LLM_ROUNDS", "1"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PROCESSES = 4
IN_FLIGHT = 16
COSTS = (50, 400)
SEED = 15
OUTAGE_START = 0.5
OUTAGE_SECONDS = 2.0
MARGIN = 0.03
"""Seconds our limiters count each grant beyond the 1 s window (`Rate.margin`): above
most of the spread of grant-to-arrival delays that (e) measures, small enough for
(a)'s 1.05x (a margin costs (a) about 5 s x margin)."""
WIDE_MARGIN = 0.1
"""A margin above the whole spread, for comparison."""
REDIS_MARGIN = 0.07
"""The Redis row's margin: four processes and Redis share the two cores with the
server, so their spread is wider than (e)'s; (f) runs the row at each margin."""
REDIS_MARGINS = (MARGIN, 0.05, REDIS_MARGIN, WIDE_MARGIN)
"""The margins (f) compares for the Redis row."""

RATE_LIMITED = RetryPolicy(max_attempts=8, initial_interval=0.5, retry_on=openai.RateLimitError)
"""The retry our contenders use: the engine waits each 429's Retry-After."""


@dataclass(frozen=True, slots=True)
class Workload:
    rate: float
    """Requests per second the server allows."""
    tokens: float
    """Tokens per second the server allows."""
    calls: int
    graphs: int = 0
    """Concurrent graph runs sharing the calls; 0: one task group."""

    def costs(self) -> list[int]:
        chooser = random.Random(SEED)
        return [chooser.randint(*COSTS) for _ in range(self.calls)]

    def floor(self) -> float:
        return floor_seconds(self.costs(), self.rate, self.tokens)


@dataclass(frozen=True, slots=True)
class Outcome:
    failed: int
    rejected: int
    seconds: float
    during_outage: int
    rejected_for: dict[str, int]
    """The server's 429s by cause (``requests``, ``tokens``, ``outage``)."""
    after_refusal: int = 0
    """(c): outage 429s for requests sent after the first outage 429 came back."""
    after_pause: int | None = None
    """(c): outage 429s for requests sent after our limiter's cooldown began (None:
    no limiter of ours)."""


Call = Callable[[int, str], Awaitable[Any]]
"""One contender's way to make a call of known ``cost`` with its prompt."""
Contender = Callable[[RemoteServer, Workload], Call]


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


class Traffic:
    """(c)'s view from the client (httpx's hooks on every contender's model): how many
    outage 429s answered requests sent after the first of them had come back, i.e.
    sent once the sender could know."""

    def __init__(self) -> None:
        self.sent: dict[int, float] = {}
        self.first_refusal = math.inf
        self.after_refusal = 0
        # When our limiter was first paused (the shared cooldown began), and the
        # outage 429s for requests sent after that.
        self.first_pause = math.inf
        self.after_pause = 0
        self.clients: list[httpx.AsyncClient] = []

    def client(self) -> httpx.AsyncClient:
        async def request(request: httpx.Request) -> None:
            self.sent[id(request)] = time.monotonic()

        async def response(response: httpx.Response) -> None:
            sent = self.sent.pop(id(response.request), -math.inf)
            # The outage's 429s carry only `retry-after` (a window's also `-ms`).
            if response.status_code == 429 and "retry-after-ms" not in response.headers:
                if sent > self.first_refusal:
                    self.after_refusal += 1
                if sent > self.first_pause:
                    self.after_pause += 1
                self.first_refusal = min(self.first_refusal, time.monotonic())

        client = httpx.AsyncClient(event_hooks={"request": [request], "response": [response]})
        self.clients.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class TimedPauses(MultiRateLimiter):
    """A `MultiRateLimiter` telling (c)'s `Traffic` when the outage's cooldown began
    (its first pause of the outage's Retry-After; a full window's 429 asks less)."""

    def __init__(self, traffic: Traffic, **rates: Rate) -> None:
        super().__init__(**rates)
        self.traffic = traffic

    async def pause(self, seconds: float) -> None:
        if seconds >= OUTAGE_SECONDS:
            self.traffic.first_pause = min(self.traffic.first_pause, time.monotonic())
        await super().pause(seconds)


TRAFFIC: Traffic | None = None
"""Set while (c) runs a contender: its models send through the recorder's clients."""


def chat(server: RemoteServer, **kwargs: Any) -> ChatOpenAI:
    if TRAFFIC is not None:
        kwargs.setdefault("http_async_client", TRAFFIC.client())
    return ChatOpenAI(model="gpt-test", base_url=server.base_url, api_key="bench", **kwargs)


def prompt(index: int, cost: int) -> str:
    return f"cost={cost} call {index}"


def cost_of(text: Any) -> int:
    return int(str(text).split()[0].removeprefix("cost="))


class Batch(TypedDict, total=False):
    indices: list[int]
    failed: int


class AskAll(AsyncBaseNode):
    """One graph run's share of the calls, a few in flight."""

    def __init__(self, call: Callable[[int], Awaitable[Any]], limit: int) -> None:
        super().__init__()
        self.call = call
        self.limit = limit

    async def execute(self, state: Batch) -> Batch:
        results = await map_concurrent(
            self.call, state["indices"], limit=self.limit, return_exceptions=True
        )
        return {"failed": sum(1 for result in results if isinstance(result, BaseException))}


async def ask(
    one: Callable[[int], Awaitable[Any]], indices: list[int], graphs: int, in_flight: int
) -> int:
    """Make the calls of ``indices``, ``in_flight`` at once; the number that failed.

    ``graphs`` concurrent graph runs share them (``in_flight // graphs`` each), or
    one task group when 0.
    """
    if not graphs:
        results = await map_concurrent(one, indices, limit=in_flight, return_exceptions=True)
        return sum(1 for result in results if isinstance(result, BaseException))
    builder = StateGraph(Batch)
    builder.add_node("ask", AskAll(one, in_flight // graphs))
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    graph = builder.compile()
    shares = [indices[n::graphs] for n in range(graphs)]
    runs = await asyncio.gather(*(graph.ainvoke({"indices": share}) for share in shares))
    return sum(result["failed"] for result in runs)


def outcome(seen: ServerStatistics, failed: int, seconds: float) -> Outcome:
    # The server answers every request of its outage 429 "outage", from the moment
    # the outage request reached it: an exact count, unlike the client's clock.
    during = seen.rejected_for.get("outage", 0)
    return Outcome(failed, seen.rejected, seconds, during, seen.rejected_for)


async def run(workload: Workload, make: Contender, outage: bool = False) -> Outcome:
    global TRAFFIC
    spend = workload.costs()
    limits = ServerLimits(requests_per_second=workload.rate, tokens_per_second=workload.tokens)
    traffic = TRAFFIC = Traffic() if outage else None
    with openai_server_process(limits) as server:
        call = make(server, workload)
        TRAFFIC = None

        def one(index: int) -> Awaitable[Any]:
            return call(spend[index], prompt(index, spend[index]))

        if outage:
            asyncio.get_running_loop().call_later(
                OUTAGE_START, server.outage, OUTAGE_SECONDS, OUTAGE_SECONDS
            )
        started = time.monotonic()
        failed = await ask(one, list(range(len(spend))), workload.graphs, IN_FLIGHT)
        seconds = time.monotonic() - started
        seen = server.statistics()
    if traffic is None:
        return outcome(seen, failed, seconds)
    await traffic.aclose()
    return dataclasses.replace(
        outcome(seen, failed, seconds),
        after_refusal=traffic.after_refusal,
        after_pause=traffic.after_pause if traffic.first_pause < math.inf else None,
    )


def server_rates(workload: Workload, margin: float = 0.0) -> dict[str, Rate]:
    """The server's two limits as `Rate`s, each window's budget usable at once."""
    return {
        "requests": Rate(workload.rate, burst=int(workload.rate), margin=margin),
        "tokens": Rate(workload.tokens, burst=int(workload.tokens), margin=margin),
    }


def redis_limiter(
    workload: Workload, key: str, margin: float
) -> tuple[RedisMultiRateLimiter, float]:
    """The Redis twin at the server's limits, with ``margin`` if it takes one (else
    none), and the margin it got."""
    try:
        return (
            RedisMultiRateLimiter(REDIS_URL, key, **server_rates(workload, margin)),
            margin,
        )
    except (TypeError, ValueError):
        return RedisMultiRateLimiter(REDIS_URL, key, **server_rates(workload, 0.0)), 0.0


async def redis_worker(url: str, key: str, settings: str, number: str, margin: str) -> None:
    """One of `PROCESSES` workers: its share of the calls through the shared Redis twin.

    Prints "ready" once set up, reads the common start time (``time.time()``) from
    stdin, and prints ``{"failed", "finished", "margin"}`` as JSON.
    """
    workload = Workload(**json.loads(settings))
    spend = workload.costs()
    limiter, taken = redis_limiter(workload, key, float(margin))
    model = with_token_budget(chat(RemoteServer(url), max_retries=0), limiter, estimate=100)

    def one(index: int) -> Awaitable[Any]:
        text = prompt(index, spend[index])
        return call_with_policies(lambda: model.ainvoke(text), retry=RATE_LIMITED)

    indices = list(range(workload.calls))[int(number) :: PROCESSES]
    print("ready", flush=True)
    start = float(await asyncio.to_thread(sys.stdin.readline))
    await asyncio.sleep(max(0.0, start - time.time()))
    try:
        failed = await ask(one, indices, workload.graphs // PROCESSES, IN_FLIGHT // PROCESSES)
    finally:
        await limiter.aclose()
    report = {"failed": failed, "finished": time.time(), "margin": taken}
    print(json.dumps(report), flush=True)


async def run_processes(workload: Workload, margin: float = REDIS_MARGIN) -> tuple[Outcome, float]:
    """`PROCESSES` worker processes sharing one `RedisMultiRateLimiter` key with
    ``margin``; the outcome and the margin the twin took."""
    limits = ServerLimits(requests_per_second=workload.rate, tokens_per_second=workload.tokens)
    key = f"bench:act_operator_lib:llm:{uuid.uuid4().hex}"
    settings = json.dumps(dataclasses.asdict(workload))
    with openai_server_process(limits) as server:
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.bench_llm",
                "worker",
                server.url,
                key,
                settings,
                str(number),
                repr(margin),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for number in range(PROCESSES)
        ]
        for worker in workers:
            assert worker.stdout is not None
            assert await worker.stdout.readline() == b"ready\n"
        start = time.time() + 0.2
        outputs = await asyncio.gather(
            *(worker.communicate(f"{start!r}\n".encode()) for worker in workers)
        )
        reports = [json.loads(stdout) for stdout, _ in outputs]
        seen = server.statistics()
    failed = sum(report["failed"] for report in reports)
    seconds = max(report["finished"] for report in reports) - start
    return outcome(seen, failed, seconds), min(report["margin"] for report in reports)


def sdk_retries(retries: int) -> Contender:
    def make(server: RemoteServer, workload: Workload) -> Call:
        model = chat(server, max_retries=retries)
        return lambda cost, text: model.ainvoke(text)

    return make


def langchain_limiter(server: RemoteServer, workload: Workload) -> Call:
    limiter = InMemoryRateLimiter(requests_per_second=workload.rate, check_every_n_seconds=0.01)
    model = chat(server, rate_limiter=limiter)
    return lambda cost, text: model.ainvoke(text)


def aiolimiter_first(server: RemoteServer, workload: Workload) -> Call:
    limiter = AsyncLimiter(workload.rate, 1)
    model = chat(server)

    async def call(cost: int, text: str) -> Any:
        await limiter.acquire()
        return await model.ainvoke(text)

    return call


def rate_limiter_pair(server: RemoteServer, workload: Workload) -> Call:
    requests, tokens = RateLimiter(workload.rate), RateLimiter(workload.tokens)
    model = chat(server)

    async def call(cost: int, text: str) -> Any:
        await requests.acquire()
        await tokens.acquire(weight=cost)
        return await model.ainvoke(text)

    return call


def budgeted(
    estimate: Estimate, scale: float = 1.0, adaptive: bool = False, margin: float = 0.0
) -> Contender:
    """Our way: one MultiRateLimiter, reserved and settled by the model, retried by policy."""

    def make(server: RemoteServer, workload: Workload) -> Call:
        rate, tokens = workload.rate * scale, workload.tokens * scale
        rates = {
            "requests": Rate(rate, burst=int(rate), margin=margin),
            "tokens": Rate(tokens, burst=int(tokens), margin=margin),
        }
        limiter = (
            MultiRateLimiter(**rates, adaptive=adaptive)
            if TRAFFIC is None or adaptive
            else TimedPauses(TRAFFIC, **rates)
        )
        model = with_token_budget(chat(server, max_retries=0), limiter, estimate=estimate)
        return lambda cost, text: call_with_policies(
            lambda: model.ainvoke(text), retry=RATE_LIMITED
        )

    return make


CONTENDERS: list[tuple[str, Contender]] = [
    ("the openai SDK's own retries (`max_retries=2`, ChatOpenAI's default)", sdk_retries(2)),
    ("the same, `max_retries=6`", sdk_retries(6)),
    ("LangChain `InMemoryRateLimiter(R/s)` as `rate_limiter=`", langchain_limiter),
    ("aiolimiter `AsyncLimiter(R, 1)` before each call", aiolimiter_first),
    ("`RateLimiter(R)` then `RateLimiter(T).acquire(weight=cost)`", rate_limiter_pair),
    ("ours: `MultiRateLimiter`, cost known before the call, no margin", budgeted(cost_of)),
    (
        f"ours: `MultiRateLimiter`, cost known, `margin={MARGIN:g}`",
        budgeted(cost_of, margin=MARGIN),
    ),
    (
        f"ours: `MultiRateLimiter`, cost known, `margin={WIDE_MARGIN:g}`",
        budgeted(cost_of, margin=WIDE_MARGIN),
    ),
    (
        f"ours: `MultiRateLimiter`, estimate 100 settled from usage, `margin={MARGIN:g}`",
        budgeted(100, margin=MARGIN),
    ),
    (
        f"ours: limits at 2x the server's, adaptive, cost known, `margin={MARGIN:g}`",
        budgeted(cost_of, 2.0, True, margin=MARGIN),
    ),
]

OUTAGE_CONTENDERS: list[tuple[str, Contender]] = [
    ("the openai SDK's own retries (`max_retries=6`)", sdk_retries(6)),
    ("`RateLimiter(R)` then `RateLimiter(T).acquire(weight=cost)`", rate_limiter_pair),
    ("ours: `MultiRateLimiter`, estimate 100, shared cooldown", budgeted(100, margin=MARGIN)),
]


REDIS_ROW = (
    f"ours: {PROCESSES} processes, `RedisMultiRateLimiter` on one key, estimate 100 "
    "settled from usage"
)


def chosen(name: str) -> bool:
    """Whether ``LLM_ROWS`` (unset: every row) names the row ``name``."""
    return not ROWS or any(word in name.lower() for word in ROWS)


def _row(name: str, outcome: Outcome, floor: float) -> str:
    ratio = f"{outcome.seconds / floor:.2f}x | {floor / outcome.seconds:.0%}"
    return f"| {name} | {outcome.failed} | {outcome.rejected} | {outcome.seconds:.2f} | {ratio} |"


async def _table(title: str, workload: Workload) -> list[str]:
    spend = workload.costs()
    floor = workload.floor()
    lines = [
        "",
        f"{title}: {workload.calls} calls ({sum(spend):,} tokens), R = {workload.rate:g} "
        f"requests/s, T = {workload.tokens:,.0f} tokens/s; floor {floor:.2f} s.",
        "",
        "| contender | failed | 429s | seconds | vs floor | floor / seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    contenders = [(name, make) for name, make in CONTENDERS if chosen(name)]
    # Rounds alternate between the rows, so a noisy moment weighs on all alike.
    for _ in range(ROUNDS):
        for name, make in contenders:
            lines.append(_row(name, await run(workload, make), floor))
        if chosen(REDIS_ROW):
            processes, margin = await run_processes(workload)
            given = f"`margin={margin:g}`" if margin else "no margin (the twin takes none)"
            lines.append(_row(f"{REDIS_ROW}, {given}", processes, floor))
    return lines


async def _limiter_alone(workload: Workload, margin: float = 0.0) -> tuple[float, int]:
    """(a)'s costs through a MultiRateLimiter alone: last grant, most tokens in any window."""
    limiter = MultiRateLimiter(**server_rates(workload, margin))
    loop = asyncio.get_running_loop()
    grants: list[tuple[float, int]] = []
    started = loop.time()

    async def one(cost: int) -> None:
        await limiter.reserve(tokens=cost)
        grants.append((loop.time() - started, cost))

    await map_concurrent(one, workload.costs(), limit=IN_FLIGHT)
    most = max(
        sum(spent for moment, spent in grants if end - 1.0 < moment <= end) for end, _ in grants
    )
    return max(moment for moment, _ in grants), most


def _quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _spread(workload: Workload, margin: float) -> tuple[list[float], list[float], int, int]:
    """(a) with known costs, timing each request: grant to send (httpx's request hook,
    on the client's clock) and send to arrival (the server's, on the same machine's
    monotonic clock). Sends and arrivals are paired in order (the k-th send with the
    k-th arrival), which is exact while requests keep their order on the way. Returns
    both delays in seconds, the 429s, and those sent 0.9-1.1 s after the first arrival
    (where the first window's burst leaves the server's window)."""
    spend = workload.costs()
    granted: contextvars.ContextVar[float] = contextvars.ContextVar("granted")
    to_send: list[float] = []
    sends: list[float] = []

    async def sent(request: httpx.Request) -> None:
        now = time.monotonic()
        sends.append(now)
        to_send.append(now - granted.get())

    limits = ServerLimits(requests_per_second=workload.rate, tokens_per_second=workload.tokens)
    with openai_server_process(limits) as server:
        limiter = MultiRateLimiter(**server_rates(workload, margin))
        async with httpx.AsyncClient(event_hooks={"request": [sent]}) as client:
            model = chat(server, max_retries=0, http_async_client=client)

            async def attempt(index: int) -> Any:
                async with limiter.reserve(tokens=spend[index]):
                    granted.set(time.monotonic())  # the limiter runs on this clock
                    return await model.ainvoke(prompt(index, spend[index]))

            def one(index: int) -> Awaitable[Any]:
                return call_with_policies(lambda: attempt(index), retry=RATE_LIMITED)

            await ask(one, list(range(len(spend))), workload.graphs, IN_FLIGHT)
        seen = server.statistics()
    on_the_way = [
        arrival - send for arrival, send in zip(sorted(seen.arrivals), sorted(sends), strict=True)
    ]
    first = min(seen.arrivals)
    boundary = sum(1 for moment in seen.rejections if 0.9 <= moment - first <= 1.1)
    return to_send, on_the_way, seen.rejected, boundary


async def _run() -> str:
    one_group = Workload(rate=40, tokens=8_000, calls=CALLS)
    graphs = Workload(rate=20, tokens=4_000, calls=2 * CALLS, graphs=8)
    lines = [
        "## LLM calls within provider limits (bench_llm)",
        "",
        f"ChatOpenAI calls of 50-400 tokens each, {IN_FLIGHT} in flight, against a local "
        "server (own process) with 1 s sliding windows of R requests and T tokens.",
    ]
    if "a" in TABLES:
        lines += await _table("(a) one task group", one_group)
    if "b" in TABLES:
        lines += await _table(f"(b) {graphs.graphs} concurrent graph runs", graphs)
    if "c" in TABLES:
        lines += [
            "",
            f"(c) outage: (a), with every request answered 429 `retry-after: "
            f"{OUTAGE_SECONDS:g}` for {OUTAGE_SECONDS:g} s from {OUTAGE_START:g} s in:",
            "",
            "| contender | failed | requests during the outage | of them sent after the "
            "first outage 429 came back | after the shared cooldown began | seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for _ in range(ROUNDS):
            for name, make in OUTAGE_CONTENDERS:
                if not chosen(name):
                    continue
                outage = await run(one_group, make, outage=True)
                lines.append(
                    f"| {name} | {outage.failed} | {outage.during_outage} | "
                    f"{outage.after_refusal} | "
                    f"{'-' if outage.after_pause is None else outage.after_pause} | "
                    f"{outage.seconds:.2f} |"
                )
    if "d" in TABLES:
        last, most = await _limiter_alone(one_group)
        held, _ = await _limiter_alone(one_group, WIDE_MARGIN)
        tight, _ = await _limiter_alone(one_group, MARGIN)
        lines += [
            "",
            f"(d) (a)'s costs through the `MultiRateLimiter` alone (no server): last grant "
            f"at {last:.2f} s (floor {one_group.floor():.2f} s), at most {most:,} tokens in "
            f"any 1 s (T = {one_group.tokens:,.0f}); last grant at {tight:.2f} s with "
            f"`margin={MARGIN:g}`, at {held:.2f} s with `margin={WIDE_MARGIN:g}`.",
        ]
    if "e" in TABLES:
        lines += [
            "",
            f"(e) where the margin goes: (a) with known costs and `margin={MARGIN:g}`, "
            "each request timed from its grant to its send (httpx's request hook) and from "
            "its send to its arrival at the server (the server's clock), in ms:",
            "",
            "| run | 429s | of them 0.9-1.1 s in | grant to send: median | p99 | max "
            "| send to arrival: median | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for number in range(1, 3 * ROUNDS + 1):
            to_send, on_the_way, rejected, boundary = await _spread(one_group, MARGIN)
            cells = [
                f"{1000 * value:.1f}"
                for delays in (to_send, on_the_way)
                for value in (_quantile(delays, 0.5), _quantile(delays, 0.99), max(delays))
            ]
            lines.append(f"| {number} | {rejected} | {boundary} | {' | '.join(cells)} |")
    if "f" in TABLES:
        lines += [
            "",
            f"(f) the Redis row ({PROCESSES} processes, estimate 100 settled from usage) "
            "at each margin:",
            "",
            "| workload | margin | failed | 429s | seconds | vs floor | floor / seconds |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for _ in range(ROUNDS):
            for label, workload in (("(a)", one_group), ("(b)", graphs)):
                floor = workload.floor()
                for margin in REDIS_MARGINS:
                    processes, taken = await run_processes(workload, margin)
                    lines.append(_row(f"{label} | {taken:g}", processes, floor))
    return "\n".join(lines) + "\n"


def main() -> str:
    """Run the comparison and return the Markdown section for docs/benchmarks.md."""
    return asyncio.run(_run())


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(redis_worker(*sys.argv[2:]))
    else:
        print(main())
