"""PostgresResource against the real server on 127.0.0.1:5432 (database `test`)."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from act_operator_lib import AsyncBaseNode, PostgresResource, ResourceUnavailableError

pytestmark = pytest.mark.postgres


def node_with(resource: PostgresResource) -> AsyncBaseNode:
    class Query(AsyncBaseNode):
        db = resource

        async def execute(self, state: Any) -> Any:
            return {}

    return Query()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_pool_runs_queries(postgres_dsn: str) -> None:
    node = node_with(PostgresResource(postgres_dsn, max_size=2))
    try:
        pool = await node.db()  # type: ignore[attr-defined]
        assert await pool.fetchval("SELECT 40 + 2") == 42
    finally:
        await node.aclose()


async def test_pool_is_reused_by_later_calls(postgres_dsn: str) -> None:
    node = node_with(PostgresResource(postgres_dsn))
    try:
        assert await node.db() is await node.db()  # type: ignore[attr-defined]
    finally:
        await node.aclose()


async def test_dsn_defaults_to_database_url(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_dsn)
    node = node_with(PostgresResource())
    try:
        pool = await node.db()  # type: ignore[attr-defined]
        assert await pool.fetchval("SELECT current_database()") == "test"
    finally:
        await node.aclose()


async def test_aclose_closes_the_pool(postgres_dsn: str) -> None:
    node = node_with(PostgresResource(postgres_dsn))
    pool = await node.db()  # type: ignore[attr-defined]
    await node.aclose()
    assert pool.is_closing()


async def test_wrong_database_error_names_host_and_database(postgres_dsn: str) -> None:
    dsn = postgres_dsn.replace("postgres@", "postgres:s3cret-pw@").rsplit("/", 1)[0]
    node = node_with(PostgresResource(dsn + "/no_such_database", connect_timeout=5))
    with pytest.raises(ResourceUnavailableError) as caught:
        await node.db()  # type: ignore[attr-defined]
    assert "127.0.0.1:5432" in str(caught.value)
    assert "no_such_database" in str(caught.value)


async def test_wrong_database_error_never_shows_the_password(postgres_dsn: str) -> None:
    dsn = postgres_dsn.replace("postgres@", "postgres:s3cret-pw@").rsplit("/", 1)[0]
    node = node_with(PostgresResource(dsn + "/no_such_database", connect_timeout=5))
    with pytest.raises(ResourceUnavailableError) as caught:
        await node.db()  # type: ignore[attr-defined]
    chain = [caught.value, caught.value.__cause__, caught.value.__context__]
    assert all("s3cret-pw" not in str(error) for error in chain)
    assert "s3cret-pw" not in repr(type(node).db)  # type: ignore[attr-defined]


async def test_unreachable_port_error_names_host_and_port() -> None:
    port = closed_port()
    node = node_with(PostgresResource(f"postgresql://u:pw@127.0.0.1:{port}/db", connect_timeout=5))
    with pytest.raises(ResourceUnavailableError, match=f"127.0.0.1:{port}"):
        await node.db()  # type: ignore[attr-defined]


async def test_failed_open_is_retried_on_next_use(postgres_dsn: str) -> None:
    node = node_with(PostgresResource(f"postgresql://u@127.0.0.1:{closed_port()}/db"))
    with pytest.raises(ResourceUnavailableError):
        await node.db()  # type: ignore[attr-defined]
    with pytest.raises(ResourceUnavailableError):
        await node.db()  # type: ignore[attr-defined]
    assert node.db.statistics().loops == 0  # type: ignore[attr-defined]


async def test_missing_dsn_says_how_to_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    node = node_with(PostgresResource())
    with pytest.raises(ValueError, match="DATABASE_URL"):
        await node.db()  # type: ignore[attr-defined]
