"""The showcase's nodes: plan -> fetch -> parse -> store -> report -> summarize.

Each step uses the library the way the guide's section on it asks for:

- `Plan` and `Summarize` are sync `BaseNode` s: simple transforms, no I/O.
- `Fetch` pulls every item through one pooled aiohttp session (`HTTPResource`),
  at most ``concurrency`` at a time with `map_durable`, which records each finished
  item in the graph's store so a rerun of the node skips it. Each request goes
  through `call_with_policies`: a token from the shared `RateLimiter` per attempt,
  a per-attempt timeout, and LangGraph's `RetryPolicy`, which waits out the API's
  ``Retry-After`` (pausing the shared limiter for everyone); progress goes to the
  custom stream.
- `Parse` is CPU work, run in worker threads with `run_sync`, so the event loop
  keeps serving.
- `Store` writes every row in one transaction, to SQLite (`SQLiteResource`) or,
  when ``DATABASE_URL`` is set, PostgreSQL (`PostgresResource`).
- `Report` writes JSON and Markdown with the async file helpers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
from langgraph.types import RetryPolicy

from act_operator_lib import (
    AsyncBaseNode,
    BaseNode,
    HTTPResource,
    NodeRuntime,
    PostgresResource,
    RateLimiter,
    SQLiteResource,
    call_with_policies,
    emit,
    map_concurrent,
    run_sync,
)
from act_operator_lib.durable import map_durable
from act_operator_lib.resources import write_text
from examples.showcase.state import FetchFigures, ShowcaseContext, ShowcaseState

__all__ = [
    "DATA_DIR",
    "Fetch",
    "Parse",
    "Plan",
    "Report",
    "Store",
    "Summarize",
]

DATA_DIR = Path(".demo")
"""Where the embedded defaults live: SQLite databases and reports (relative to cwd)."""

DEFAULTS: dict[str, Any] = {
    "count": 500,
    "concurrency": 16,
    "request_timeout": 2.0,
    "max_attempts": 6,
    "report_dir": str(DATA_DIR),
}


class Plan(BaseNode):
    """Fill in the defaults and decide which items to fetch."""

    def execute(self, state: ShowcaseState) -> dict[str, Any]:
        settings: dict[str, Any] = {
            key: state.get(key, default) for key, default in DEFAULTS.items()
        }
        count = int(settings["count"])
        if count < 1:
            raise ValueError(f"Plan: 'count' must be at least 1, got {count}")
        return {**settings, "item_ids": [f"item-{index:05d}" for index in range(count)]}


class Fetch(AsyncBaseNode):
    """Fetch every planned item: rate limited, retried, timed out per request, durable."""

    http = HTTPResource(limit=64, timeout=60.0, connect_timeout=5.0)
    # One fetch at a time per process: runs share the API's rate budget anyway.
    max_concurrency = 1

    def __init__(self, request_budget: RateLimiter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Not the node's `rate_limiter` policy, which takes one token per attempt of the
        # whole node: here each request attempt of the fan-out below takes its own.
        self.request_budget = request_budget

    async def execute(
        self, state: ShowcaseState, runtime: NodeRuntime[ShowcaseContext]
    ) -> dict[str, Any]:
        session = await self.http()
        loop = asyncio.get_running_loop()
        api_url = runtime.context.api_url.rstrip("/")
        # Each attempt takes its own token and has its own timeout; a 503's or 429's
        # Retry-After pauses the shared limiter for every request, then the retry
        # queues for its token like the others.
        retry = RetryPolicy(
            max_attempts=int(state["max_attempts"]),
            initial_interval=0.1,
            max_interval=2.0,
            retry_on=_transient,
        )
        latencies: list[float] = []
        requests = Counter[str]()
        attempts: dict[str, int] = {}

        async def get(item_id: str) -> str:
            requests["sent"] += 1
            started = loop.time()
            try:
                async with session.get(f"{api_url}/items/{item_id}") as response:
                    body = await response.text()
            except aiohttp.ClientError:
                requests["connection"] += 1
                raise
            requests["answered"] += 1
            if response.status != 200:
                requests[str(response.status)] += 1
                response.raise_for_status()
            latencies.append(loop.time() - started)
            return body

        async def fetch_one(item_id: str) -> dict[str, Any]:
            retries = _StreamRetries(item_id)
            try:
                body = await call_with_policies(
                    lambda: get(item_id),
                    timeout=float(state["request_timeout"]),
                    retry=retry,
                    rate_limiter=self.request_budget,
                    observer=retries,
                )
            finally:
                attempts[item_id] = retries.attempts
            return {"body": body, "attempts": retries.attempts}

        ids = state["item_ids"]
        started = loop.time()
        # Each finished item is recorded in the graph's store as it completes; when
        # this node runs again for the thread (resumed after Ctrl-C), they are reused.
        results = await map_durable(
            fetch_one,
            ids,
            key=str,
            limit=int(state["concurrency"]),
            return_exceptions=True,
            progress=True,
        )
        seconds = loop.time() - started
        documents: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        for item_id, result in zip(ids, results, strict=True):
            if isinstance(result, BaseException):
                failures[item_id] = f"{type(result).__name__}: {result}"
            else:
                documents[item_id] = result
        fresh = [documents[item_id] for item_id in documents if item_id in attempts]
        figures: FetchFigures = {
            "total": len(ids),
            "ok": len(documents),
            "retried": sum(1 for document in fresh if document["attempts"] > 1),
            "timed_out": requests["sent"] - requests["answered"] - requests["connection"],
            "failed": len(failures),
            "reused": len(ids) - len(attempts),
            "requests": requests["sent"],
            "rejected": requests["429"],
            "seconds": seconds,
            "rate": requests["sent"] / seconds if seconds > 0 else 0.0,
            "latency_p50": _percentile(latencies, 50),
            "latency_p95": _percentile(latencies, 95),
        }
        return {"documents": documents, "failures": failures, "fetch": figures}


class Parse(AsyncBaseNode):
    """Turn raw documents into rows: CPU work, in worker threads via `run_sync`."""

    batch_size = 64

    async def execute(self, state: ShowcaseState) -> dict[str, Any]:
        documents = state.get("documents", {})
        items = list(documents.items())
        batches = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        # Two at a time: this machine's cores; the loop stays free for the stream.
        parsed = await map_concurrent(lambda batch: run_sync(_parse_batch, batch), batches, limit=2)
        records = [record for batch in parsed for record in batch]
        emit({"stage": "parse", "records": len(records)})
        return {"records": records}


_TABLE = "showcase_items"
_COLUMNS = ("thread_id", "item_id", "title", "words", "top_word", "score", "digest", "attempts")


class Store(AsyncBaseNode):
    """Write every row in one transaction: all rows of the run, or none of them.

    SQLite under .demo/ by default; PostgreSQL when ``DATABASE_URL`` is set.
    Reruns of the same thread replace their rows (upsert on thread and item).
    """

    sqlite = SQLiteResource(DATA_DIR / "showcase.sqlite")
    postgres = PostgresResource(min_size=1, max_size=2)
    timeout = 60
    retry = RetryPolicy(max_attempts=3, retry_on=(OSError, TimeoutError))

    async def execute(self, state: ShowcaseState, config: Any) -> dict[str, Any]:
        thread_id = self.get_thread_id(config) or "no-thread"
        rows = [
            (thread_id, *(record[column] for column in _COLUMNS[1:]))
            for record in state.get("records", [])
        ]
        if os.environ.get("DATABASE_URL"):
            where = await self._to_postgres(rows)
        else:
            where = await self._to_sqlite(rows)
        emit({"stage": "store", "rows": len(rows)})
        return {"stored": {"backend": where, "table": _TABLE, "rows": len(rows)}}

    async def _to_sqlite(self, rows: Sequence[tuple[Any, ...]]) -> str:
        await asyncio.to_thread(DATA_DIR.mkdir, exist_ok=True)
        db = await self.sqlite()
        await db.execute(
            f"CREATE TABLE IF NOT EXISTS {_TABLE} (thread_id TEXT, item_id TEXT, title TEXT, "
            "words INTEGER, top_word TEXT, score REAL, digest TEXT, attempts INTEGER, "
            "PRIMARY KEY (thread_id, item_id))"
        )
        await db.commit()
        placeholders = ", ".join("?" for _ in _COLUMNS)
        try:
            await db.execute("BEGIN")
            await db.executemany(
                f"INSERT OR REPLACE INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                rows,
            )
            await db.commit()
        except BaseException:
            # Cancelled (Ctrl-C) or failed: nothing of this run's rows stays.
            await db.rollback()
            raise
        return f"sqlite:{DATA_DIR / 'showcase.sqlite'}"

    async def _to_postgres(self, rows: Sequence[tuple[Any, ...]]) -> str:
        pool = await self.postgres()
        placeholders = ", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
        updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in _COLUMNS[2:])
        async with pool.acquire() as connection:
            await connection.execute(
                f"CREATE TABLE IF NOT EXISTS {_TABLE} (thread_id TEXT, item_id TEXT, "
                "title TEXT, words INTEGER, top_word TEXT, score DOUBLE PRECISION, "
                "digest TEXT, attempts INTEGER, PRIMARY KEY (thread_id, item_id))"
            )
            async with connection.transaction():
                await connection.executemany(
                    f"INSERT INTO {_TABLE} ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
                    f"ON CONFLICT (thread_id, item_id) DO UPDATE SET {updates}",
                    rows,
                )
        return "postgresql:$DATABASE_URL"


class Report(AsyncBaseNode):
    """Write report.json and report.md, concurrently, without blocking the loop."""

    timeout = 30

    async def execute(self, state: ShowcaseState, config: Any) -> dict[str, Any]:
        directory = Path(state.get("report_dir", str(DATA_DIR)))
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        content = {
            "thread_id": self.get_thread_id(config),
            "fetch": state.get("fetch"),
            "stored": state.get("stored"),
            "failures": state.get("failures", {}),
            "top_words": Counter(r["top_word"] for r in state.get("records", [])).most_common(5),
        }
        json_path, markdown_path = directory / "report.json", directory / "report.md"
        await asyncio.gather(
            write_text(json_path, json.dumps(content, indent=2, sort_keys=True)),
            write_text(markdown_path, _markdown(content)),
        )
        emit({"stage": "report", "paths": [str(json_path), str(markdown_path)]})
        return {"reports": [str(json_path), str(markdown_path)]}


class Summarize(BaseNode):
    """Put the figures of every step in one dict, with the verdict."""

    def execute(self, state: ShowcaseState) -> dict[str, Any]:
        fetch = state["fetch"]
        passed = fetch["failed"] == 0 and fetch["rejected"] == 0
        return {
            "summary": {
                "fetch": fetch,
                "stored": state.get("stored"),
                "reports": state.get("reports", []),
                "passed": passed,
            }
        }


def _parse_batch(batch: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Parse and digest documents; pure CPU, run in a worker thread."""
    records = []
    for item_id, fetched in batch:
        document = json.loads(fetched["body"])
        words = document["body"].split()
        counts = Counter(words)
        top_word, _ = counts.most_common(1)[0]
        digest = hashlib.sha256(document["body"].encode()).hexdigest()
        records.append(
            {
                "item_id": item_id,
                "title": document["title"],
                "words": len(words),
                "top_word": top_word,
                "score": float(document["score"]),
                "digest": digest,
                "attempts": int(fetched["attempts"]),
            }
        )
    return records


class _StreamRetries:
    """Counts one request's attempts and streams each retry (an `AttemptObserver`)."""

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        self.attempts = 1

    def waited(self, kind: Literal["concurrency", "rate"], seconds: float) -> None:
        pass

    def retrying(self, attempt: int, error: Exception, delay: float) -> None:
        self.attempts = attempt + 1
        emit({"retry": {"item": self.item_id, "reason": _reason(error), "attempt": attempt}})

    def timed_out(self, attempt: int, timeout: float) -> None:
        pass


def _reason(error: Exception) -> str:
    """A failed attempt in a word: ``timeout``, the HTTP status, or the error's type."""
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, aiohttp.ClientResponseError):
        return str(error.status)
    return type(error).__name__


def _transient(error: Exception) -> bool:
    """Worth another attempt: a timeout, a dropped connection, or a 429/5xx answer."""
    if isinstance(error, aiohttp.ClientResponseError):
        return error.status == 429 or error.status >= 500
    return isinstance(error, TimeoutError | aiohttp.ClientError)


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def _figure(key: str, value: object) -> str:
    """A fetch figure as the console summary shows it: no float with 16 digits."""
    if value is None:
        return "-"
    if not isinstance(value, float):
        return str(value)
    if key.startswith("latency_"):
        return f"{value * 1000:.0f} ms"
    if key == "seconds":
        return f"{value:.1f} s"
    if key == "rate":
        return f"{value:.1f}/s"
    return f"{value:.2f}"


def _markdown(content: dict[str, Any]) -> str:
    fetch = content["fetch"] or {}
    lines = [
        "# Showcase report",
        "",
        f"Thread: `{content['thread_id']}`",
        "",
        "| Figure | Value |",
        "|---|---|",
    ]
    lines += [f"| {key} | {_figure(key, value)} |" for key, value in fetch.items()]
    stored = content["stored"] or {}
    lines += ["", f"Rows stored: {stored.get('rows', 0)} in {stored.get('backend', '-')}", ""]
    if content["failures"]:
        lines += ["## Failures", ""]
        lines += [f"- `{item}`: {why}" for item, why in sorted(content["failures"].items())]
    lines += ["## Top words", ""]
    lines += [f"- {word}: {count}" for word, count in content["top_words"]]
    return "\n".join(lines) + "\n"
