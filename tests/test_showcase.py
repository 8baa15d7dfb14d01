"""The showcase (`make demo`) end to end: real API server, real graph, real databases."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest
from examples.showcase.cli import INTERRUPTED, Options, Outcome, run_showcase
from examples.showcase.nodes import _markdown
from examples.showcase.server import ApiServer, ServerProfile
from rich.console import Console

REPOSITORY = Path(__file__).resolve().parent.parent
UNROUNDED = re.compile(r"\d\.\d{3,}")
"""A float printed with more than two decimals (report.md rounds every figure)."""

# Quick, but still misbehaving: with this seed the first 60 answers include 500s,
# 503s with Retry-After and a hang, whatever the order the requests arrive in.
FAST = ServerProfile(
    latency_median=0.002,
    latency_p99=0.020,
    error_rate=0.10,
    unavailable_rate=0.05,
    retry_after=0.05,
    hang_rate=0.03,
    limit=200,
    seed=7,
)
FAST_OPTIONS = Options(items=60, rate=180, concurrency=8, request_timeout=0.5)


async def run_quietly(
    options: Options, profile: ServerProfile | None = FAST
) -> tuple[Outcome, str]:
    output = io.StringIO()
    outcome = await run_showcase(options, profile=profile, console=Console(file=output, width=120))
    return outcome, output.getvalue()


def stored_rows(thread_id: str, directory: Path) -> int:
    with closing(sqlite3.connect(directory / ".demo" / "showcase.sqlite")) as db:
        tables = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'showcase_items'"
        ).fetchone()[0]
        if not tables:
            return 0
        (count,) = db.execute(
            "SELECT count(*) FROM showcase_items WHERE thread_id = ?", (thread_id,)
        ).fetchone()
    db.close()
    return int(count)


async def test_showcase_fetches_stores_and_reports_every_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)

    outcome, output = await run_quietly(FAST_OPTIONS)

    assert outcome.exit_code == 0, output
    fetch = outcome.summary["fetch"]
    assert fetch["ok"] == 60
    assert fetch["failed"] == 0
    assert fetch["ok"] + fetch["failed"] == fetch["total"] == 60
    server = outcome.server
    assert server is not None
    assert server.rejected == 0
    assert server.statuses.get(500, 0) > 0
    assert server.statuses.get(503, 0) > 0
    assert server.hangs > 0
    assert fetch["timed_out"] >= server.hangs
    assert server.early_retries == 0  # Retry-After was honoured every time
    assert set(server.fetches) == {f"item-{index:05d}" for index in range(60)}
    assert stored_rows(outcome.thread_id, tmp_path) == 60
    report = json.loads((tmp_path / ".demo" / "report.json").read_text())
    assert report["thread_id"] == outcome.thread_id
    assert report["fetch"]["ok"] == 60
    markdown = (tmp_path / ".demo" / "report.md").read_text()
    assert markdown.startswith("# Showcase report")
    assert not UNROUNDED.search(markdown), markdown
    assert "Showcase PASS" in output


async def test_showcase_exits_non_zero_when_the_api_answers_429(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    strict = ServerProfile(
        latency_median=0.001,
        latency_p99=0.005,
        error_rate=0,
        unavailable_rate=0,
        hang_rate=0,
        limit=5,
        window=0.2,
    )

    outcome, output = await run_quietly(Options(items=20, rate=200, concurrency=8), strict)

    assert outcome.server is not None
    assert outcome.server.rejected > 0
    assert outcome.server.early_retries == 0  # every 429's Retry-After was honoured
    assert outcome.summary["fetch"]["failed"] == 0
    assert outcome.exit_code == 1
    assert "Showcase FAIL" in output


async def read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str]) -> re.Match[str]:
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError("the showcase ended before: " + pattern + "\n" + "".join(seen))
        text = line.decode()
        seen.append(text)
        match = re.search(pattern, text)
        if match:
            return match


async def run_cli(directory: Path, *arguments: str) -> asyncio.subprocess.Process:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    environment.pop("DATABASE_URL", None)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.showcase",
        *arguments,
        cwd=directory,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def test_ctrl_c_stops_cleanly_and_resume_skips_finished_items(tmp_path: Path) -> None:
    profile = ServerProfile(latency_median=0.005, latency_p99=0.050, hang_rate=0, seed=3)
    items = 150
    async with ApiServer(profile) as server:
        arguments = ("--items", str(items), "--api-url", server.url, "--rate", "45")
        first = await run_cli(tmp_path, *arguments)
        assert first.stdout is not None
        seen: list[str] = []
        thread_id = (await read_until(first.stdout, r"thread id: (\S+)", seen)).group(1)
        await read_until(first.stdout, r"fetch [4-9]\d/150", seen)
        first.send_signal(signal.SIGINT)
        rest, _ = await first.communicate()
        output = "".join(seen) + rest.decode()

        assert first.returncode == INTERRUPTED, output
        assert "Interrupted" in output
        assert thread_id in output
        assert stored_rows(thread_id, tmp_path) == 0
        before = server.statistics().fetches

        second = await run_cli(tmp_path, *arguments, "--resume", thread_id)
        resumed, _ = await second.communicate()
        after = server.statistics().fetches

    output = resumed.decode()
    assert second.returncode == 0, output
    report = json.loads((tmp_path / ".demo" / "report.json").read_text())
    reused = report["fetch"]["reused"]
    assert reused > 0
    assert report["fetch"]["ok"] == items
    fetched_again = {item for item, count in after.items() if count > before.get(item, 0)}
    assert len(fetched_again) == items - reused
    assert stored_rows(thread_id, tmp_path) == items


@pytest.mark.postgres
async def test_showcase_stores_rows_and_checkpoints_in_postgresql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_dsn: str
) -> None:
    import asyncpg

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)

    outcome, output = await run_quietly(
        Options(items=30, rate=180, concurrency=8, request_timeout=0.5)
    )

    assert outcome.exit_code == 0, output
    assert outcome.summary["stored"]["backend"].startswith("postgresql")
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetchval(
            "SELECT count(*) FROM showcase_items WHERE thread_id = $1", outcome.thread_id
        )
        checkpoints = await connection.fetchval(
            "SELECT count(*) FROM checkpoints WHERE thread_id = $1", outcome.thread_id
        )
    finally:
        await connection.close()
    assert rows == 30
    assert checkpoints > 0
    assert not (tmp_path / ".demo" / "showcase.sqlite").exists()


def test_the_markdown_report_rounds_every_figure_as_the_console_summary_does() -> None:
    figures = {
        "total": 3,
        "ok": 3,
        "seconds": 1.2345678901234,
        "rate": 48.61111111111111,
        "latency_p50": 0.012345678,
        "latency_p95": None,
    }
    content = {
        "thread_id": "t",
        "fetch": figures,
        "stored": {"rows": 3, "backend": "sqlite"},
        "failures": {},
        "top_words": [],
    }

    markdown = _markdown(content)

    assert not UNROUNDED.search(markdown), markdown
    assert "| seconds | 1.2 s |" in markdown
    assert "| rate | 48.6/s |" in markdown
    assert "| latency_p50 | 12 ms |" in markdown
    assert "| latency_p95 | - |" in markdown
    assert "| total | 3 |" in markdown
