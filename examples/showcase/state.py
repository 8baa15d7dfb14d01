"""The showcase's graph state: the run's settings in, the work and its figures out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict


@dataclass(frozen=True)
class ShowcaseContext:
    """Where the run's API is: deployment settings, given again on every resume."""

    api_url: str = "http://127.0.0.1:8080"
    """Base URL of the API serving ``GET /items/{id}``."""


class ShowcaseInput(TypedDict, total=False):
    """What a run starts from; every field has a default (see `Plan`)."""

    count: int
    """How many items to fetch (default 500)."""
    concurrency: int
    """Requests in flight at most (default 16)."""
    request_timeout: float
    """Seconds one request may take before it is abandoned and retried (default 2)."""
    max_attempts: int
    """Attempts per item before it counts as failed (default 6)."""
    report_dir: str
    """Directory for report.json and report.md (default .demo)."""


class FetchFigures(TypedDict):
    """How the fetch step went, for the final table."""

    total: int
    ok: int
    retried: int
    timed_out: int
    failed: int
    reused: int
    requests: int
    rejected: int
    seconds: float
    rate: float
    latency_p50: float | None
    latency_p95: float | None


class ShowcaseState(ShowcaseInput, total=False):
    """The whole state: the input plus what each node adds."""

    item_ids: list[str]
    """The plan: which items to fetch, in order."""
    documents: dict[str, dict[str, Any]]
    """Fetched documents by item id (failed items are missing)."""
    failures: dict[str, str]
    """Why each failed item failed."""
    fetch: FetchFigures
    """Figures of the fetch step."""
    records: list[dict[str, Any]]
    """Parsed rows, one per fetched document."""
    stored: dict[str, Any]
    """Where the rows went and how many there are."""
    reports: list[str]
    """Paths of the reports written."""
    summary: dict[str, Any]
    """The run's outcome in one dict: the figures of every step, and ``passed``."""
