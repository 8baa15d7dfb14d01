"""The Redis connection behind the distributed limiters and the cache.

One place turns a URL (or a ``redis.asyncio.Redis`` client) into a client with
connect/read timeouts, bounds every operation with ``asyncio.timeout``, and turns
"refused, unreachable or silent" into `LimiterUnavailableError`. redis-py is an
optional extra, so it is imported here, inside the constructor, never at package
import time.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from act_operator_lib._errors import LimiterUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisHandle", "check_key"]

T = TypeVar("T")

_URL_SCHEMES = ("redis", "rediss", "unix")
_MAX_KEY_LENGTH = 512
_BAD_KEY_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")


def check_key(owner: str, name: str, key: object) -> str:
    """Return ``key`` if it is a usable Redis key: a non-empty str without whitespace."""
    if not isinstance(key, str):
        raise TypeError(f"{owner} {name} must be a str, got {type(key).__name__}")
    if not key or len(key) > _MAX_KEY_LENGTH or _BAD_KEY_CHARACTERS.search(key):
        raise ValueError(
            f"{owner} {name} must be 1 to {_MAX_KEY_LENGTH} characters without whitespace "
            f"or control characters, got {key!r}"
        )
    return key


def _redacted(url: str) -> str:
    """The URL without its credentials, fit for an error message."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if rest else "<not a URL>"


def _check_url(owner: str, url: str) -> None:
    shown = _redacted(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{owner}: malformed Redis URL {shown!r} (bad port)") from None
    if parts.scheme not in _URL_SCHEMES:
        raise ValueError(
            f"{owner}: malformed Redis URL {shown!r}: the scheme must be one of "
            f"{', '.join(_URL_SCHEMES)} (e.g. 'redis://127.0.0.1:6379/0')"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ValueError(f"{owner}: malformed Redis URL {shown!r}: no socket path")
    if parts.scheme != "unix" and (not parts.hostname or port == 0):
        raise ValueError(f"{owner}: malformed Redis URL {shown!r}: no host (or port 0)")


class RedisHandle:
    """A redis-py asyncio client plus the rules for talking to it.

    ``owned`` is true when the client was built here from a URL, so `aclose`
    closes it; a client passed in stays the caller's to close.
    """

    __slots__ = ("_unavailable", "address", "client", "owned", "timeout")

    def __init__(
        self, redis: str | Redis, *, owner: str, timeout: float, read_slack: float = 0.0
    ) -> None:
        try:
            import redis.asyncio as redis_asyncio
            import redis.exceptions as redis_exceptions
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                f"{owner} needs redis-py: pip install 'act-operator-lib[redis]'"
            ) from error
        self.timeout = timeout
        if isinstance(redis, str):
            _check_url(owner, redis)
            try:
                client = redis_asyncio.Redis.from_url(
                    redis,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout + read_slack,
                )
            except ValueError:
                raise ValueError(f"{owner}: malformed Redis URL {_redacted(redis)!r}") from None
            self.owned = True
        elif isinstance(redis, redis_asyncio.Redis):
            client = redis
            self.owned = False
        else:
            raise TypeError(
                f"{owner} redis must be a URL or a redis.asyncio.Redis client, "
                f"got {type(redis).__name__}"
            )
        self.client: Redis = client
        settings: dict[str, Any] = client.connection_pool.connection_kwargs
        if "path" in settings:
            self.address = str(settings["path"])
        else:
            self.address = f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"
        self._unavailable: tuple[type[BaseException], ...] = (
            redis_exceptions.ConnectionError,
            redis_exceptions.TimeoutError,
            TimeoutError,
            OSError,
        )

    async def call(self, operation: Awaitable[T], key: str, *, extra_time: float = 0.0) -> T:
        """Run one Redis operation within ``timeout`` (+ ``extra_time`` for blocking ones).

        Raises:
            LimiterUnavailableError: refused, unreachable, or no answer in time.
        """
        # redis-py 8.1 swallows a cancellation that lands at some points inside a
        # command: the command completes and CancelledError never reaches us. The
        # request is still counted by `Task.cancelling()`, so a count higher than
        # before the call means a cancellation was lost: raise it here. (This
        # replaces running each operation in its own task, which cost ~30 us.)
        task = asyncio.current_task()
        cancelling = task.cancelling() if task is not None else 0
        try:
            async with asyncio.timeout(self.timeout + extra_time):
                result = await operation
        except self._unavailable as error:
            raise LimiterUnavailableError(self.address, key, self.timeout) from error
        if task is not None and task.cancelling() > cancelling:
            raise asyncio.CancelledError
        return result

    async def aclose(self) -> None:
        """Close the client if it was built here from a URL."""
        if self.owned:
            await self.client.aclose()
