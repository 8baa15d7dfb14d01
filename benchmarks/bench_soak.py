"""Soak: the showcase's load in a loop for 10 minutes; does resident memory stay flat?

Opt-in, because it takes minutes: ``python -m benchmarks soak`` runs it for 600 s,
``SOAK_SECONDS=120 python -m benchmarks soak`` (or ``SOAK_SECONDS`` set with any
other invocation, e.g. ``make bench``) for that many seconds. Without either,
``make bench`` prints only a note on how to run it.

One local flaky, rate-limited API server (the showcase's `ApiServer`) runs for the
whole soak; each iteration runs the whole showcase graph (plan -> fetch -> parse ->
store -> report -> summarize) over ``SOAK_ITEMS`` items (default 200) with a fresh
thread id, against SQLite checkpoints, store and rows in a temporary directory.
After each iteration the garbage is collected and VmRSS read from
/proc/self/status. The goal: RSS grows less than 5% from the first sample after
the first minute (after half the run, for runs shorter than 2 minutes) to the end.

``SOAK_TRACEMALLOC=1`` also traces allocations from that first minute on and adds
the ten source lines whose allocations grew most (slower; for hunting a leak).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from examples.showcase.cli import persistence
from examples.showcase.graph import ShowcaseGraph
from examples.showcase.server import ApiServer
from examples.showcase.state import ShowcaseContext
from langchain_core.runnables import RunnableConfig

DEFAULT_SECONDS = 600.0
"""The soak's length when run explicitly (``python -m benchmarks soak``)."""

DEFAULT_ITEMS = 200
"""Items fetched per iteration: about 5 s of the API's budget at the cast's 45/s."""

BASELINE_SECONDS = 60.0
"""RSS growth is measured from the first sample after this many seconds."""

GOAL_GROWTH = 0.05
"""The goal: RSS at the end is less than 5% above the baseline."""


@dataclass
class SoakResult:
    """What one soak measured."""

    seconds: float
    items_per_iteration: int
    iterations: int = 0
    items: int = 0
    failed_items: int = 0
    failed_runs: int = 0
    errors: list[str] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, RSS in KiB) after each iteration."""
    baseline: tuple[float, int] | None = None
    top_growth: list[str] = field(default_factory=list)


def resident_kib() -> int:
    """This process's resident set size (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (the soak needs Linux)")


async def soak(seconds: float, items: int, trace: bool = False) -> SoakResult:
    """Run the showcase graph over ``items`` items again and again for ``seconds``."""
    result = SoakResult(seconds=seconds, items_per_iteration=items)
    baseline_after = min(BASELINE_SECONDS, seconds / 2)
    snapshot: tracemalloc.Snapshot | None = None
    async with (
        ApiServer() as server,
        persistence() as (saver, store, _),
        ShowcaseGraph(store=store) as cast,
    ):
        graph = cast(checkpointer=saver)
        context = ShowcaseContext(api_url=server.url)
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            config: RunnableConfig = {
                "configurable": {"thread_id": f"soak-{uuid.uuid4().hex[:12]}"}
            }
            try:
                final = await graph.ainvoke({"count": items}, config, context=context)
                fetch = final["summary"]["fetch"]
                result.items += int(fetch["ok"])
                result.failed_items += int(fetch["failed"])
            except Exception as error:
                result.failed_runs += 1
                if len(result.errors) < 5:
                    result.errors.append(f"{type(error).__name__}: {error}")
            result.iterations += 1
            gc.collect()
            sample = (time.perf_counter() - started, resident_kib())
            result.samples.append(sample)
            if result.baseline is None and sample[0] >= baseline_after:
                result.baseline = sample
                if trace:
                    tracemalloc.start(5)
                    snapshot = tracemalloc.take_snapshot()
    if snapshot is not None:
        gc.collect()
        growth = tracemalloc.take_snapshot().compare_to(snapshot, "lineno")
        tracemalloc.stop()
        result.top_growth = [str(stat) for stat in growth[:10]]
    return result


def _markdown(result: SoakResult, command: str) -> str:
    lines = [
        f"Soak: the showcase graph over {result.items_per_iteration} items per iteration, "
        f"fresh thread id each, one local API server, for {result.seconds:g} s "
        f"(`{command}`):",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    if result.baseline is None or not result.samples:
        lines.append("| iterations | too few to measure |")
        return "\n".join(lines) + "\n"
    (base_at, base_kib), (end_at, end_kib) = result.baseline, result.samples[-1]
    growth = (end_kib - base_kib) / base_kib
    first_at, first_kib = result.samples[0]
    verdict = "met" if growth < GOAL_GROWTH else "NOT met"
    lines += [
        f"| RSS after first iteration | {first_kib / 1024:.1f} MiB at {first_at:.0f} s |",
        f"| RSS at ~1 min (baseline) | {base_kib / 1024:.1f} MiB at {base_at:.0f} s |",
        f"| RSS at end | {end_kib / 1024:.1f} MiB at {end_at:.0f} s |",
        f"| RSS peak after baseline | "
        f"{max(kib for at, kib in result.samples if at >= base_at) / 1024:.1f} MiB |",
        f"| growth, baseline to end | {growth:+.1%} (goal < {GOAL_GROWTH:.0%}: {verdict}) |",
        f"| RSS each minute (MiB) | {_by_minute(result.samples)} |",
        f"| iterations | {result.iterations} |",
        f"| items processed (fetched, parsed, stored) | {result.items} |",
        f"| items failed after every retry | {result.failed_items} |",
        f"| runs that raised | {result.failed_runs} |",
    ]
    lines += [f"| error | {error} |" for error in result.errors]
    if result.top_growth:
        lines += ["", "Allocations that grew most after the baseline (tracemalloc):", ""]
        lines += [f"    {line}" for line in result.top_growth]
    return "\n".join(lines) + "\n"


def _by_minute(samples: list[tuple[float, int]]) -> str:
    """The RSS of the first sample after each whole minute, to show the trend."""
    figures: list[str] = []
    minute = 1
    for at, kib in samples:
        if at >= minute * 60:
            figures.append(f"{kib / 1024:.1f}")
            minute = int(at // 60) + 1
    return ", ".join(figures) or "-"


def _requested_seconds() -> float | None:
    """The soak's length if it was asked for, else None (see the module docstring)."""
    if "SOAK_SECONDS" in os.environ:
        return float(os.environ["SOAK_SECONDS"])
    if "soak" in sys.argv[1:] or "bench_soak" in sys.argv[1:]:
        return DEFAULT_SECONDS
    return None


def main() -> str:
    seconds = _requested_seconds()
    if seconds is None:
        return (
            "Soak: skipped (it takes 10 minutes). Run `python -m benchmarks soak`, or "
            "set `SOAK_SECONDS` (e.g. `SOAK_SECONDS=120 make bench`).\n"
        )
    items = int(os.environ.get("SOAK_ITEMS", DEFAULT_ITEMS))
    trace = os.environ.get("SOAK_TRACEMALLOC") == "1"
    command = "python -m benchmarks soak"
    if "SOAK_SECONDS" in os.environ:
        command = f"SOAK_SECONDS={seconds:g} {command}"
    home = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="act-operator-soak-") as directory:
        # The showcase keeps its SQLite files and reports under .demo/ of the cwd.
        os.chdir(directory)
        try:
            result = asyncio.run(soak(seconds, items, trace))
        finally:
            os.chdir(home)
    return _markdown(result, command)


if __name__ == "__main__":
    print(main())
