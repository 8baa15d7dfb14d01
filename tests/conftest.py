"""Shared fixtures: real services on loopback, with the skip-or-fail rule.

A test that needs PostgreSQL or Redis is skipped with a reason when the server is
unreachable, except under ``CI=true``, where it fails instead.

``ACT_TEST_LOOP=uvloop`` runs every async test on uvloop instead (``make
pytest-uvloop``), leaving out the tests on virtual time.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

POSTGRES_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI=true, fail) the calling test when the service is down."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI requires it (see .ci/run)")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    """URL of the real Redis server on 127.0.0.1:6379."""
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL


@pytest.fixture
def postgres_dsn() -> str:
    """DSN of the real PostgreSQL server on 127.0.0.1:5432, database `test`."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    return POSTGRES_DSN


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A plain redis-py client on the test server, to look behind the library's back."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def redis_key(redis_client: Redis) -> AsyncIterator[str]:
    """A Redis key no other test uses; every key that starts with it is deleted afterwards."""
    key = f"test:act_operator_lib:{uuid.uuid4().hex}"
    yield key
    names = [name async for name in redis_client.scan_iter(match=f"{key}*")]
    if names:
        await redis_client.delete(*names)


if os.environ.get("ACT_TEST_LOOP") == "uvloop":

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Any:
        """Run every async test on uvloop, as LangGraph's API server does."""
        import uvloop

        return {"uvloop": uvloop.new_event_loop}

    def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
        """Leave out the tests on virtual time: looptime can only patch asyncio's own loop."""
        kept: list[pytest.Item] = []
        left_out: list[pytest.Item] = []
        for item in items:
            virtual = (
                item.get_closest_marker("looptime") is not None
                or item.get_closest_marker("virtual_clock") is not None
                or item.get_closest_marker("asyncio_loop_only") is not None
                or "virtual_clock" in getattr(item, "fixturenames", ())
            )
            (left_out if virtual else kept).append(item)
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = kept
