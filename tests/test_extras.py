"""A missing optional package fails where the feature is declared, naming the extra to install.

The core needs only langgraph. Each test hides one integration's package (``None`` in
``sys.modules`` makes its import fail as if it were not installed) and builds the
feature that needs it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest

from act_operator_lib import (
    HTTPResource,
    PostgresResource,
    RedisConcurrencyLimiter,
    RedisRateLimiter,
    SQLiteResource,
)
from act_operator_lib.cache import RedisCacheBackend

REDIS = "redis://127.0.0.1:6379/0"

CASES: list[tuple[str, str, str, Callable[[], Any]]] = [
    ("aiohttp", "HTTPResource", "http", lambda: HTTPResource()),
    ("asyncpg", "PostgresResource", "postgres", lambda: PostgresResource()),
    ("aiosqlite", "SQLiteResource", "sqlite", lambda: SQLiteResource("app.sqlite")),
    ("redis.asyncio", "RedisRateLimiter", "redis", lambda: RedisRateLimiter(REDIS, "k", 5)),
    (
        "redis.asyncio",
        "RedisConcurrencyLimiter",
        "redis",
        lambda: RedisConcurrencyLimiter(REDIS, "k", 5),
    ),
    ("redis.asyncio", "RedisCacheBackend", "redis", lambda: RedisCacheBackend(REDIS)),
]


@pytest.mark.parametrize(
    ("module", "feature", "extra", "build"), CASES, ids=[case[1] for case in CASES]
)
def test_a_missing_extra_is_named_when_the_feature_is_built(
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    feature: str,
    extra: str,
    build: Callable[[], Any],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    package = module.split(".", 1)[0]
    expected = (
        f"{feature} needs {package}, which is not installed: "
        f"pip install 'act-operator-lib[{extra}]'"
    )
    with pytest.raises(ImportError) as raised:
        build()
    assert str(raised.value) == expected


@pytest.mark.parametrize(
    ("module", "feature", "extra", "build"), CASES, ids=[case[1] for case in CASES]
)
def test_with_its_extra_installed_the_feature_builds(
    module: str, feature: str, extra: str, build: Callable[[], Any]
) -> None:
    assert type(build()).__name__ == feature
