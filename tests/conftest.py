"""Shared fixtures: real services on loopback, with the skip-or-fail rule.

A test that needs PostgreSQL or Redis is skipped with a reason when the server is
unreachable, except under ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import os
import socket

import pytest

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
