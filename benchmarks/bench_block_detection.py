"""Cost of event-loop block detection: the same workloads with it off, on by default, and
inside ``detect_blocking``.

The default detection adds one look-up of the thread's watchdog to an async node call;
its watchdog thread asks the loop to answer every ``threshold / 5`` s. ``detect_blocking``
adds a timer tick on the loop as often. The workloads yield to the loop regularly (as a
graph run does), so both run while they do.
"""

from __future__ import annotations

import asyncio
import operator
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from act_operator_lib import AsyncBaseNode
from act_operator_lib.diagnostics import detect_blocking, set_block_detection

CALLS = 200_000
BATCH = 1_000
GRAPH_RUNS = 400
REPEATS = 5
RESULT = {"result": 1}


class Trivial(AsyncBaseNode):
    async def execute(self, state: Any) -> dict[str, int]:
        return RESULT


class State(TypedDict, total=False):
    result: Annotated[int, operator.add]


async def node_calls() -> int:
    node = Trivial()
    state = {"query": "q"}
    for _ in range(CALLS // BATCH):
        for _ in range(BATCH):
            await node(state)
        await asyncio.sleep(0)
    return CALLS


def build_graph() -> Any:
    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, Trivial(name=name))
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    return builder.compile()


GRAPH = build_graph()


async def graph_runs() -> int:
    for _ in range(GRAPH_RUNS):
        await GRAPH.ainvoke({})
    return GRAPH_RUNS


async def timed(workload: Callable[[], Awaitable[int]], mode: str) -> float:
    set_block_detection(mode != "off")
    start = time.perf_counter()
    if mode == "explicit":
        async with detect_blocking(threshold=0.1):
            count = await workload()
    else:
        count = await workload()
    return (time.perf_counter() - start) / count


async def compare(workload: Callable[[], Awaitable[int]]) -> tuple[float, float, float]:
    await workload()
    times: dict[str, list[float]] = {"off": [], "default": [], "explicit": []}
    for _ in range(REPEATS):
        for mode, measured in times.items():
            measured.append(await timed(workload, mode))
    set_block_detection(True)
    return min(times["off"]), min(times["default"]), min(times["explicit"])


def main() -> str:
    rows = []
    for label, workload, unit, scale in (
        (f"`await node(state)`, {CALLS:,} calls", node_calls, "us", 1e6),
        (f"`graph.ainvoke`, 3 parallel nodes, {GRAPH_RUNS} runs", graph_runs, "ms", 1e3),
    ):
        off, default, explicit = asyncio.run(compare(workload))
        rows.append(
            f"| {label} | {off * scale:.3f} {unit} | {default * scale:.3f} {unit} "
            f"({(default - off) / off * 100:+.1f}%) | {explicit * scale:.3f} {unit} "
            f"({(explicit - off) / off * 100:+.1f}%) |"
        )
    return "\n".join(
        [
            "## Block detection overhead",
            "",
            "`python -m benchmarks block_detection`: per call/run, best of "
            f"{REPEATS} interleaved rounds: detection off (`set_block_detection(False)`), "
            "on by default, and inside `detect_blocking(threshold=0.1)`.",
            "",
            "| Workload | Off | Default (on) | `detect_blocking` |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(main())
