"""The showcase's nodes: plan -> fetch -> parse -> store -> report -> summarize.

Each step uses the library the way the guide's section on it asks for:

- `Plan` and `Summarize` are sync `BaseNode` s: simple transforms, no I/O.
- `Fetch` pulls every item through one pooled aiohttp session (`HTTPResource`),
  at most ``concurrency`` at a time with `map_durable`, which records each finished
  item in the graph's store so a rerun of the node skips it, each request
  under a shared `RateLimiter`, a per-request timeout and a retry that honours the
  API's ``Retry-After``; progress goes to the custom stream.
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
from typing import Any

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
    emit,
    map_concurrent,
    run_sync,
)
from act_operator_lib.durable import map_durable
from act_operator_lib.resources import write_text
from examples.showcase.state import FetchFigures, ShowcaseContext, ShowcaseState

__all__ = [
    "DATA_DIR",
    "ApiError",
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


class ApiError(Exception):
    """The API answered with an error status; ``retry_after`` is its Retry-After, if any."""

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        self.status = status
        self.retry_after = retry_after
        suffix = "" if retry_after is None else f", retry after {retry_after:g}s"
        super().__init__(f"HTTP {status}{suffix}")


class GaveUpError(Exception):
    """An item still failed after its last attempt."""


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

    def __init__(self, rate_limiter: RateLimiter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate_limiter = rate_limiter

    async def execute(
        self, state: ShowcaseState, runtime: NodeRuntime[ShowcaseContext]
    ) -> dict[str, Any]:
        session = await self.http()
        loop = asyncio.get_running_loop()
        api_url = runtime.context.api_url.rstrip("/")
        request_timeout = float(state["request_timeout"])
        max_attempts = int(state["max_attempts"])
        latencies: list[float] = []
        requests = Counter[str]()
        fetched_now: set[str] = set()

        async def fetch_one(item_id: str) -> dict[str, Any]:
            fetched_now.add(item_id)
            timeouts = 0
            for attempt in range(1, max_attempts + 1):
                await self.rate_limiter.acquire()
                requests["sent"] += 1
                started = loop.time()
                try:
                    async with (
                        asyncio.timeout(request_timeout),
                        session.get(f"{api_url}/items/{item_id}") as response,
                    ):
                        body = await response.text()
                        if response.status == 200:
                            latencies.append(loop.time() - started)
                            return {"body": body, "attempts": attempt, "timeouts": timeouts}
                        requests[str(response.status)] += 1
                        raise ApiError(response.status, _retry_after(response.headers))
                except TimeoutError:
                    timeouts += 1
                    requests["timeout"] += 1
                    reason, delay = "timeout", _backoff(attempt)
                except ApiError as error:
                    reason = str(error.status)
                    delay = (
                        error.retry_after if error.retry_after is not None else _backoff(attempt)
                    )
                except aiohttp.ClientError as error:
                    requests["connection"] += 1
                    reason, delay = type(error).__name__, _backoff(attempt)
                if attempt == max_attempts:
                    raise GaveUpError(f"{item_id}: {reason} on attempt {attempt}, giving up")
                emit({"retry": {"item": item_id, "reason": reason, "attempt": attempt}})
                await asyncio.sleep(delay)
            raise AssertionError("unreachable")

        # A whole item may take every attempt's timeout and backoff, plus its waits.
        item_budget = max_attempts * (request_timeout + 2.0) + 30.0
        ids = state["item_ids"]
        started = loop.time()
        # Each finished item is recorded in the graph's store as it completes; when
        # this node runs again for the thread (resumed after Ctrl-C), they are reused.
        results = await map_durable(
            fetch_one,
            ids,
            key=str,
            limit=int(state["concurrency"]),
            timeout=item_budget,
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
        fresh = [documents[item_id] for item_id in documents if item_id in fetched_now]
        figures: FetchFigures = {
            "total": len(ids),
            "ok": len(documents),
            "retried": sum(1 for document in fresh if document["attempts"] > 1),
            "timed_out": requests["timeout"],
            "failed": len(failures),
            "reused": len(ids) - len(fetched_now),
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


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _backoff(attempt: int) -> float:
    """Seconds before the next attempt after ``attempt`` failed: 0.1, 0.2, 0.4, ... 2."""
    return min(2.0, 0.1 * 2.0 ** (attempt - 1))


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


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
    lines += [f"| {key} | {value} |" for key, value in fetch.items()]
    stored = content["stored"] or {}
    lines += ["", f"Rows stored: {stored.get('rows', 0)} in {stored.get('backend', '-')}", ""]
    if content["failures"]:
        lines += ["## Failures", ""]
        lines += [f"- `{item}`: {why}" for item, why in sorted(content["failures"].items())]
    lines += ["## Top words", ""]
    lines += [f"- {word}: {count}" for word, count in content["top_words"]]
    return "\n".join(lines) + "\n"
