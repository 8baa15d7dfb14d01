"""Run the showcase: start the API, run the cast with a live progress bar, print the table.

``make demo ARGS="..."`` (or ``python -m examples.showcase ...``)::

    --items N            how many items to fetch (default 500)
    --resume THREAD_ID   continue an interrupted run; finished items are not fetched again
    --api-url URL        use a running API instead of starting the local one
    --rate R, --concurrency N, --request-timeout S   the budget (all above 0)

Checkpoints, the durable item records and the rows go to SQLite files under .demo/,
or to PostgreSQL when ``DATABASE_URL`` is set. Ctrl-C stops cleanly (no half-written
rows, every session and pool closed) and prints the command that resumes the run.
Exit status: 0 when every item was fetched and the API never answered 429; 1
otherwise; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from examples.showcase.graph import DEFAULT_RATE, ShowcaseGraph
from examples.showcase.nodes import DATA_DIR
from examples.showcase.server import ApiServer, ServerProfile, ServerStatistics
from examples.showcase.state import ShowcaseContext, ShowcaseInput

__all__ = ["Options", "Outcome", "main", "parse_arguments", "run_showcase"]

INTERRUPTED = 130
"""Exit status after Ctrl-C, as a shell reports a SIGINT."""


@dataclass(frozen=True)
class Options:
    """What one run does; the command line's flags."""

    items: int = 500
    resume: str | None = None
    api_url: str | None = None
    rate: float = DEFAULT_RATE
    concurrency: int = 16
    request_timeout: float = 2.0


@dataclass
class Outcome:
    """How a run ended: its thread, final state and exit status."""

    thread_id: str
    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)
    server: ServerStatistics | None = None
    wall_seconds: float = 0.0
    interrupted: bool = False
    retry_reasons: dict[str, int] = field(default_factory=dict)
    """Retries this run made, by reason: an HTTP status ("429", "500"...) or "timeout"."""


MAKE_DEMO = "make demo"
"""The program name `make demo` runs this as (its flags go in ``ARGS="..."``)."""


def parse_arguments(
    argv: Sequence[str] | None = None, prog: str = "python -m examples.showcase"
) -> Options:
    """The `Options` of a command line; ``prog`` is the name ``--help`` and errors show."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Fetch, parse and store N items from a rate-limited, flaky API, durably.",
    )
    parser.add_argument(
        "--items",
        type=_above_zero(int),
        default=500,
        metavar="N",
        help="items to fetch (default 500)",
    )
    parser.add_argument("--resume", metavar="THREAD_ID", help="continue an interrupted run")
    parser.add_argument(
        "--api-url", metavar="URL", help="use this API instead of starting the local one"
    )
    parser.add_argument(
        "--rate",
        type=_above_zero(float),
        default=DEFAULT_RATE,
        metavar="R",
        help="requests/s (default 45; API allows 50)",
    )
    parser.add_argument(
        "--concurrency",
        type=_above_zero(int),
        default=16,
        metavar="N",
        help="requests in flight (default 16)",
    )
    parser.add_argument(
        "--request-timeout",
        type=_above_zero(float),
        default=2.0,
        metavar="S",
        help="seconds per request (default 2)",
    )
    if prog == MAKE_DEMO:
        # make passes its ARGS variable on: show the flags the way they are given.
        flags = parser.format_usage().removeprefix(f"usage: {prog}").strip()
        parser.usage = f'{prog} ARGS="{flags}"'
    arguments = parser.parse_args(argv)
    return Options(
        items=arguments.items,
        resume=arguments.resume,
        api_url=arguments.api_url,
        rate=arguments.rate,
        concurrency=arguments.concurrency,
        request_timeout=arguments.request_timeout,
    )


def _above_zero(kind: type[int] | type[float]) -> Any:
    """An argparse ``type=`` taking a finite number of ``kind`` above 0."""
    wanted = "a whole number" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be {wanted} above 0, got {text!r}")
        return value

    return parse


@contextlib.asynccontextmanager
async def persistence() -> AsyncIterator[tuple[BaseCheckpointSaver[Any], BaseStore, str]]:
    """The checkpointer and the store: PostgreSQL with ``DATABASE_URL``, else SQLite files."""
    dsn = os.environ.get("DATABASE_URL")
    if dsn:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from langgraph.store.postgres.aio import AsyncPostgresStore

        async with (
            AsyncPostgresSaver.from_conn_string(dsn) as saver,
            AsyncPostgresStore.from_conn_string(dsn) as store,
        ):
            await saver.setup()
            await store.setup()
            yield saver, store, "PostgreSQL ($DATABASE_URL)"
        return
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.store.sqlite.aio import AsyncSqliteStore

    await asyncio.to_thread(DATA_DIR.mkdir, exist_ok=True)
    async with (
        AsyncSqliteSaver.from_conn_string(str(DATA_DIR / "checkpoints.sqlite")) as saver,
        AsyncSqliteStore.from_conn_string(str(DATA_DIR / "store.sqlite")) as store,
    ):
        await saver.setup()
        await store.setup()
        yield saver, store, f"SQLite ({DATA_DIR}/)"


class Display:
    """The live view: a rich progress bar on a terminal, plain lines in logs."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.live = console.is_terminal
        self.retries = 0
        self.reasons: dict[str, int] = {}
        self._last_line = 0.0
        self._last_done = -1
        self._progress: Progress | None = None
        self._task: Any = None
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task("fetch", total=total, note="")
            self._progress.start()

    def custom(self, chunk: Any) -> None:
        """One custom-stream event from a node."""
        if not isinstance(chunk, dict):
            return
        if "done" in chunk:
            self._fetch_progress(int(chunk["done"]), chunk.get("total"))
        elif "retry" in chunk:
            self.retries += 1
            reason = str(chunk["retry"]["reason"])
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
        elif "stage" in chunk:
            details = ", ".join(f"{k}={v}" for k, v in chunk.items() if k != "stage")
            self.console.print(f"  {chunk['stage']}: {details}")

    def update(self, chunk: Any) -> None:
        """One ``updates`` event: a node finished."""
        if isinstance(chunk, dict):
            for node in chunk:
                if not node.startswith("__"):
                    self.console.print(f"[green]done[/green] {node}")

    def _fetch_progress(self, done: int, total: Any) -> None:
        note = self._note()
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total, note=note)
            return
        now = time.monotonic()
        if done == self._last_done:
            return
        if done == total or now - self._last_line >= 1.0:
            self._last_line, self._last_done = now, done
            self.console.print(f"fetch {done}/{total} {note}".rstrip())

    def _note(self) -> str:
        if not self.retries:
            return ""
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.reasons.items()))
        return f"retries {self.retries} ({reasons})"

    def close(self) -> None:
        """Stop the live bar (leaving its last state on screen)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


async def run_showcase(
    options: Options,
    *,
    profile: ServerProfile | None = None,
    console: Console | None = None,
) -> Outcome:
    """Run the showcase once; Ctrl-C (or cancelling this) stops it cleanly.

    ``profile`` configures the local API (ignored with ``options.api_url``).
    """
    console = console or Console()
    thread_id = options.resume or f"showcase-{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    outcome = Outcome(thread_id=thread_id, exit_code=1)
    server: ApiServer | None = None
    display: Display | None = None
    try:
        async with contextlib.AsyncExitStack() as stack:
            if options.api_url is None:
                server = await stack.enter_async_context(ApiServer(profile))
            api_url = options.api_url or (server.url if server else "")
            saver, store, where = await stack.enter_async_context(persistence())
            cast = await stack.enter_async_context(ShowcaseGraph(options.rate, store=store))
            graph = cast(checkpointer=saver)
            config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
            inputs: ShowcaseInput | None = {
                "count": options.items,
                "concurrency": options.concurrency,
                "request_timeout": options.request_timeout,
            }
            if options.resume:
                snapshot = await graph.aget_state(config)
                if not snapshot.values:
                    console.print(f"[red]No run with thread id {thread_id!r} in {where}.[/red]")
                    outcome.exit_code = 2
                    return outcome
                inputs = None
                console.print(f"Resuming thread [bold]{thread_id}[/bold]")
            console.print(f"thread id: {thread_id}\nAPI: {api_url}  checkpoints: {where}")
            display = Display(console, options.items)
            async for stream_mode, chunk in graph.astream(
                inputs,
                config,
                context=ShowcaseContext(api_url=api_url),
                stream_mode=["custom", "updates"],
            ):
                if stream_mode == "custom":
                    display.custom(chunk)
                else:
                    display.update(chunk)
            display.close()
            outcome.retry_reasons = dict(display.reasons)
            final = await graph.aget_state(config)
            outcome.summary = dict(final.values.get("summary", {}))
    except asyncio.CancelledError:
        outcome.interrupted = True
        outcome.exit_code = INTERRUPTED
    finally:
        if display is not None:
            display.close()
        outcome.wall_seconds = time.perf_counter() - started
        if server is not None:
            outcome.server = server.statistics()
    if outcome.interrupted:
        console.print(
            f"\n[yellow]Interrupted.[/yellow] Resources closed, no partial rows written. "
            f'thread id: {thread_id}\nResume with:  make demo ARGS="--resume {thread_id}"',
            soft_wrap=True,
        )
        return outcome
    outcome.exit_code = 0 if _passed(outcome) else 1
    console.print(_table(outcome, options))
    return outcome


def _rejected(outcome: Outcome) -> int:
    fetch = outcome.summary.get("fetch", {})
    seen_by_server = outcome.server.rejected if outcome.server else 0
    return max(int(fetch.get("rejected", 0)), seen_by_server)


def _passed(outcome: Outcome) -> bool:
    fetch = outcome.summary.get("fetch")
    return fetch is not None and fetch["failed"] == 0 and _rejected(outcome) == 0


def _table(outcome: Outcome, options: Options) -> Table:
    fetch = outcome.summary.get("fetch", {})
    stored = outcome.summary.get("stored") or {}
    verdict = "[green]PASS[/green]" if _passed(outcome) else "[red]FAIL[/red]"
    table = Table(title=f"Showcase {verdict}  (thread {outcome.thread_id})")
    table.add_column("Figure")
    table.add_column("Value", justify="right")
    table.add_column("Note")
    fetched = fetch.get("total", 0) - fetch.get("reused", 0)
    ideal = fetched / options.rate if options.rate else 0.0

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    rows = [
        ("items", str(fetch.get("total", 0)), ""),
        ("  ok", str(fetch.get("ok", 0)), "fetched and parsed"),
        ("  retried", str(fetch.get("retried", 0)), _retried_note(outcome.retry_reasons)),
        ("  reused", str(fetch.get("reused", 0)), "recorded by an earlier run, not fetched"),
        ("  failed", str(fetch.get("failed", 0)), "must be 0"),
        ("requests sent", str(fetch.get("requests", 0)), ""),
        ("  timed out", str(fetch.get("timed_out", 0)), f"> {options.request_timeout:g} s"),
        ("  answered 429", str(_rejected(outcome)), "counted by the API; must be 0"),
        ("request rate", f"{fetch.get('rate', 0.0):.1f}/s", f"limiter {options.rate:g}/s"),
        ("latency p50", ms(fetch.get("latency_p50")), "successful requests"),
        ("latency p95", ms(fetch.get("latency_p95")), ""),
        ("fetch time", f"{fetch.get('seconds', 0.0):.1f} s", f"ideal {ideal:.1f} s (N / rate)"),
        ("rows stored", str(stored.get("rows", 0)), str(stored.get("backend", ""))),
        ("wall time", f"{outcome.wall_seconds:.1f} s", "server, graph and storage"),
    ]
    if outcome.server is not None:
        rows.insert(
            8,
            (
                "  server peak",
                f"{outcome.server.peak_window}/s",
                f"most in any window, measured by the API; limit {outcome.server.limit}",
            ),
        )
    for row in rows:
        table.add_row(*row)
    return table


def _retried_note(reasons: dict[str, int]) -> str:
    """What the retries were for, from this run's counts: "ok after a 500 (4) or timeout (1)"."""
    if not reasons:
        return "no request needed a retry"
    named = [f"{reason} ({count})" for reason, count in sorted(reasons.items())]
    listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} or {named[-1]}"
    return f"ok after a {listed}"


async def _main(options: Options) -> int:
    console = Console()
    run = asyncio.ensure_future(run_showcase(options, console=console))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, run.cancel)
    try:
        outcome = await run
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGINT)
    return outcome.exit_code


def main(argv: Sequence[str] | None = None, prog: str = "python -m examples.showcase") -> int:
    """The command line: run, and return the exit status."""
    return asyncio.run(_main(parse_arguments(argv, prog)))


if __name__ == "__main__":
    sys.exit(main())
