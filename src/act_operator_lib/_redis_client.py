"""The Redis connection behind the distributed limiters and the cache.

One place turns a URL (or a ``redis.asyncio.Redis`` client) into a client with
connect/read timeouts, bounds every operation with ``asyncio.timeout``, and turns
"refused, unreachable or silent" into `LimiterUnavailableError`. redis-py is an
optional extra, so it is imported here, inside the constructor, never at package
import time.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from act_operator_lib._errors import LimiterUnavailableError
from act_operator_lib._extras import require

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

__all__ = ["RedisHandle", "ScriptConnection", "check_key"]

T = TypeVar("T")

_URL_SCHEMES = ("redis", "rediss", "unix")
_MAX_KEY_LENGTH = 512
_BAD_KEY_CHARACTERS = re.compile(r"[\x00-\x20\x7f]")
_MAX_CONNECTIONS = 100
"""Connections of a client built from a URL (redis-py's default); callers beyond
that wait for one."""


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

    A client built from a URL sends a command once more, at once, when its
    connection turns out to be dropped (the first use of each pooled connection
    after a server restart), so a restart does not reach callers. Every command
    sent through it is safe to repeat (docs/design.md, "Redis limits and cache").
    Its pool has 100 connections; a command beyond them waits for one (within the
    timeout) rather than failing. A client passed in keeps its own ``retry`` and
    pool settings.
    """

    __slots__ = ("_unavailable", "address", "client", "owned", "timeout")

    def __init__(
        self, redis: str | Redis, *, owner: str, timeout: float, read_slack: float = 0.0
    ) -> None:
        redis_asyncio = require("redis.asyncio", feature=owner, extra="redis")
        import redis.exceptions as redis_exceptions
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.timeout = timeout
        if isinstance(redis, str):
            _check_url(owner, redis)
            try:
                # Blocking: more concurrent commands than connections wait for one
                # (within `call`'s timeout) instead of failing "Too many connections".
                pool = redis_asyncio.BlockingConnectionPool.from_url(
                    redis,
                    max_connections=_MAX_CONNECTIONS,
                    timeout=None,
                    socket_connect_timeout=timeout,
                    socket_timeout=timeout + read_slack,
                    # After a server restart every pooled connection is dead, and
                    # only a command reveals it ("Connection closed by server"):
                    # send it again at once, once, on the same connection, which
                    # reconnects. Only a dropped connection is retried; a timed-out
                    # command may still be running on the server.
                    retry=Retry(
                        NoBackoff(), 1, supported_errors=(redis_exceptions.ConnectionError,)
                    ),
                )
            except ValueError:
                raise ValueError(f"{owner}: malformed Redis URL {_redacted(redis)!r}") from None
            client = redis_asyncio.Redis.from_pool(pool)
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


class ScriptConnection:
    """A Lua script run on a long-lived connection of its own, through the pool when
    that connection is busy.

    Skipping the pool (take and return a connection, check it for stray data) brings
    a script call from ~1.6 to ~1.25 PING round trips. The connection is owned
    here, whoever owns the client: `aclose` closes it.

    Example::

        script = ScriptConnection(handle, LUA)
        reply = await handle.call(script.run(keys, args), key)
    """

    __slots__ = ("_busy", "_client", "_connection", "_no_script", "_script", "_sha")

    def __init__(self, handle: RedisHandle, script: str) -> None:
        import redis.exceptions as redis_exceptions

        self._client = handle.client
        self._script = script
        self._sha = hashlib.sha1(script.encode()).hexdigest()
        self._connection: AbstractConnection | None = None
        self._busy = False
        self._no_script: type[Exception] = redis_exceptions.NoScriptError

    async def run(self, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run the script (EVALSHA, EVAL if the server does not know it yet)."""
        if self._busy:
            try:
                return await self._client.evalsha(self._sha, len(keys), *keys, *args)  # type: ignore[arg-type]
            except self._no_script:
                return await self._client.eval(self._script, len(keys), *keys, *args)  # type: ignore[arg-type]
        self._busy = True
        try:
            return await self._run_on_own_connection([len(keys), *keys, *args])
        finally:
            self._busy = False

    async def _run_on_own_connection(self, arguments: list[object]) -> Any:
        import redis.exceptions as redis_exceptions

        connection = self._connection
        if connection is None:
            pool = self._client.connection_pool
            # No socket timeout: the caller's `RedisHandle.call` bounds every use.
            settings = {**pool.connection_kwargs, "socket_timeout": None}
            connection = self._connection = pool.connection_class(**settings)
        # A dropped connection (say, Redis restarted) is found by the next command:
        # it is sent once more on a fresh one, like the pool's own `Retry`.
        for attempt in (1, 2):
            try:
                try:
                    await connection.send_command("EVALSHA", self._sha, *arguments)
                    return await connection.read_response()
                except self._no_script:
                    await connection.send_command("EVAL", self._script, *arguments)
                    return await connection.read_response()
            except redis_exceptions.ConnectionError:
                # On any failure or cancellation mid-command redis-py has already
                # disconnected it, so no stale reply is left to read.
                await connection.disconnect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the connection."""
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
