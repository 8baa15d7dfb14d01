"""Every example of examples/guide/ runs, and returns what its section promises.

Each example's ``main()`` is run as ``python -m examples.guide.<name>`` would run it
(``asyncio.run`` for an async main), with its HTTP API on 127.0.0.1 and its database
in a temporary SQLite file (PostgreSQL when the server is up, in its own test).
Assertions are on results and counts, never on timings.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import examples.guide
import pytest

EXAMPLES = sorted(
    module.name
    for module in pkgutil.iter_modules(examples.guide.__path__)
    if not module.name.startswith("_")
)


def run_example(name: str) -> Any:
    main = importlib.import_module(f"examples.guide.{name}").main
    if inspect.iscoroutinefunction(main):
        return asyncio.run(main())
    return main()


def check_single_operation(result: Any) -> None:
    assert result == {"id": 1, "name": "Alice"}


def check_sequential_operations(result: Any) -> None:
    assert result["user"] == {"id": 2, "name": "Bob"}
    assert result["posts"] == [{"id": 21, "title": "Post by 2"}]
    assert result["comments"][0]["post"] == 21  # fetched with the post's id


def check_concurrent_operations(result: Any) -> None:
    assert result["user"] == {"id": 1, "name": "Alice"}
    assert result["weather"] == {"city": "Paris", "temp": 21}
    assert result["news"] == {"topic": "python", "articles": 2}
    assert result["connections"] == 3  # the three requests overlapped


def check_context_managers(result: Any) -> None:
    assert [run["result"] for run in result["results"]] == [
        f"rows for 'SELECT {n}'" for n in range(3)
    ]
    events = result["events"]
    # one pooled connection for the three runs plus one per-call connection per run,
    # and the pooled one closed only when the graph's block exits
    assert events.count("connect") == 4
    assert events.count("disconnect") == 4
    assert events[-2:] == ["graph done", "disconnect"]


def check_async_generators(result: Any) -> None:
    assert [item["item"] for item in result["processed"]] == [0, 1, 2, 3, 4]
    assert all(item["processed"] for item in result["processed"])
    assert sorted(chunk["index"] for chunk in result["streamed"]) == [0, 1, 2, 3, 4]


def check_timeouts(result: Any) -> None:
    assert result["fast"] == "done"
    assert result["timed_out"] == "node 'SlowOperation' timed out after 0.1s"
    assert result["results"] == ["took 0.01s", None, "took 0.02s"]


def check_rate_limiting(result: Any) -> None:
    assert sorted(result["results"]) == sorted(f"result for {c}" for c in "abcde" * 2)
    assert result["granted"] == 10  # fanned-out calls and map_concurrent share one budget


def check_connection_pooling(result: Any) -> None:
    assert [item["item"] for item in result["results"]] == list(range(10))
    assert result["requests"] == 30
    assert result["connections"] <= 4  # HTTPResource(limit=4), reused across runs
    assert (result["sessions"].opened, result["sessions"].closed) == (1, 1)


def check_llm_streaming(result: Any) -> None:
    assert "".join(result["tokens"]) == "Paris is the capital of France."
    assert len(result["tokens"]) > 1  # streamed token by token
    assert result["reply"].content == "Paris is the capital of France."
    assert result["reply"].id == "answer-1"  # kept by merging chunks, lost by joining text


def check_error_handling(result: Any) -> None:
    assert result["1"] == {"id": 1, "name": "Alice"}
    assert result["42"] == "not found"
    assert result["not-a-number"].startswith("raised ValueError")


def check_retries(result: Any) -> None:
    assert result["data"] == {"key": "report", "ok": True}
    assert result["retries"] == 2
    assert result["gave_up"].startswith("gave up after 4 attempts")


def check_timeout_errors(result: Any) -> None:
    assert result["results"] == {"quick": "quick done", "op1": "op1 done"}
    assert result["errors"] == {"op2": "ConnectionError('op2 lost its connection')"}
    assert result["unfinished"] == ["op3"]


def check_cancellation(result: Any) -> None:
    assert result["progress"] == [{"processed": n} for n in range(3)]
    cleaned_up = result["cleaned_up"]
    assert cleaned_up[:3] == [0, 1, 2]  # the cleanup ran, and was awaited
    assert len(cleaned_up) < 100  # the run stopped early


def check_gather(result: Any) -> None:
    assert result["user"] == {"id": 7}
    assert result["posts"] == ["posts of 7"]
    assert result["widgets"] == {"friends": ["friends of 7"], "events": ["events of 7"]}
    assert result["failed_widgets"] == {"photos": "photos service is down"}


def check_wait(result: Any) -> None:
    assert result == {"first_result": "fast answered", "cancelled": ["slow"]}


def check_semaphores(result: Any) -> None:
    assert result["processed"] == [f"processed {n}" for n in range(10)]
    assert result["results"] == sorted(f"processed {n}" for n in range(10))
    assert result["peak_in_node"] == 3
    assert result["peak_across_calls"] == 2


def check_task_groups(result: Any) -> None:
    assert result["ThreeOperations, fail=False"] == ["first done", "second done", "third done"]
    assert result["ThreeOperations, fail=True"] == "second found nothing"
    assert result["ManyOperations, fail=False"] == [f"item{n} done" for n in range(6)]
    assert result["ManyOperations, fail=True"] == "item4 found nothing"


def check_http_clients(result: Any) -> None:
    assert result["data"] == {"id": 1, "name": "Alice"}
    assert result["result"] == {"received": {"query": "async nodes"}}
    assert result["down"].startswith("cannot connect to HTTP host 127.0.0.1:")


def check_database(result: Any) -> None:
    assert result["users"] == [
        [{"id": 1, "name": "Alice"}, {"id": 2, "name": "Bob"}],
        [{"id": 3, "name": "Carol"}],
        [{"id": 2, "name": "Bob"}],
    ]
    assert (result["pools"].opened, result["pools"].closed) == (1, 1)  # three runs, one pool


def check_file_io(result: Any) -> None:
    assert result["outputs"] == [{"file": f"note{n}.txt", "length": 20} for n in range(3)]
    assert result["first"] == "NOTE 0: ASYNC FILES\n"


def check_mixed_sync_async(result: Any) -> None:
    assert result["sync"]["translations"] == ["[fr] hello", "[de] hello"]
    assert result["async"]["checksum"] == "2cf24dba5fb0"  # sha256("hello")
    assert result["async"]["translations"] == ["[fr] hello", "[de] hello"]
    assert result["custom"] == [{"checksum": "computed in a worker thread"}]  # from a thread


def check_caching(result: Any) -> None:
    assert len(result["forecasts"]) == 6
    assert {forecast["city"] for forecast in result["forecasts"]} == {"paris", "oslo"}
    assert result["requests"] == 2  # five concurrent lookups, one more later: two requests


def check_batching(result: Any) -> None:
    assert result["squares"] == [n * n for n in range(40)]
    assert result["progress"][0] == {"done": 0, "total": 40}
    assert result["progress"][-1] == {"done": 40, "total": 40}


CHECKS: dict[str, Callable[[Any], None]] = {
    name.removeprefix("check_"): check
    for name, check in dict(globals()).items()
    if name.startswith("check_")
}


def test_every_example_has_a_check() -> None:
    assert sorted(CHECKS) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_and_returns_its_result(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the database example on SQLite
    result = run_example(name)
    CHECKS[name](result)
    assert capsys.readouterr().out  # it printed something for the reader


def test_database_example_uses_postgres_when_database_url_is_set(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    result = run_example("database")
    assert result["backend"] == "PostgresUsers"
    check_database(result)
