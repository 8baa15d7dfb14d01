"""Shared fixtures: real services on loopback, with the skip-or-fail rule.

A test that needs PostgreSQL or Redis is skipped with a reason when the server is
unreachable, except under ``CI=true``, where it fails instead.
"""

from __future__ import annotations

import inspect
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


@pytest.hookimpl(tryfirst=True, wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> object:
    """Keep looptime's plugin from creating (and leaking) an event loop for sync tests.

    looptime 0.9 asks the ``event_loop_policy`` fixture for the current loop before
    every test; for a sync test that call creates a new loop nobody closes, which
    ``-W error`` reports as ResourceWarning. A sync test has no loop to patch.
    """
    requested = pyfuncitem._fixtureinfo.argnames
    # pytest-asyncio replaces an async test's obj with a sync wrapper; look beneath it.
    test = getattr(pyfuncitem.obj, "__wrapped__", pyfuncitem.obj)
    if not inspect.iscoroutinefunction(test) and "event_loop_policy" not in requested:
        pyfuncitem.funcargs.pop("event_loop_policy", None)
    return (yield)
