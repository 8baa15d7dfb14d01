"""The Redis connection behind the distributed limiters and the cache.

One place turns a URL (or a redis-py asyncio client: single server, Sentinel-managed
primary, or Redis Cluster) into a client with connect/read timeouts, bounds every
operation with ``asyncio.timeout``, and turns "refused, unreachable, silent or
failing over" into `LimiterUnavailableError`. redis-py is an optional extra, so it
is imported here, inside the constructor, never at package import time.

Connections belong to an event loop. A client built here from a URL is built once
per loop that uses it and closed when that loop finishes (``asyncio.run`` and
pytest close each loop's async generators before closing it), so a limiter or a
cache made at import time works under one ``asyncio.run`` after another.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import unquote, urlsplit

from act_operator_lib._errors import LimiterUnavailableError
from act_operator_lib._extras import require

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import AbstractConnection
    from redis.asyncio.sentinel import Sentinel

    Client: TypeAlias = Redis | RedisCluster

__all__ = ["RedisHandle", "Script", "ScriptConnection", "Session", "check_key", "hash_tagged"]

T = TypeVar("T")

_PLAIN_SCHEMES = ("redis", "rediss", "unix")
_CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
_SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
_URL_SCHEMES = (*_PLAIN_SCHEMES, *_CLUSTER_SCHEMES, *_SENTINEL_SCHEMES)
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


def hash_tagged(key: str) -> str:
    """``key`` with a Redis Cluster hash tag: itself if it has one, else ``{key}``.

    Keys derived by appending to it (``{key}:grants``) then hash to its slot, so one
    script may use them all. Redis's rule: the tag is what lies between the first
    ``{`` and the first ``}`` after it, if that is not empty.

    Example::

        hash_tagged("openai")          # '{openai}'
        hash_tagged("{tenant-1}:api")  # unchanged
    """
    start = key.find("{")
    if start != -1 and key.find("}", start + 1) > start + 1:
        return key
    return f"{{{key}}}"


def _redacted(url: str) -> str:
    """The URL without its credentials, fit for an error message."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}" if rest else "<not a URL>"


def _malformed(owner: str, url: str, why: str) -> ValueError:
    return ValueError(f"{owner}: malformed Redis URL {_redacted(url)!r}: {why}")


def _check_url(owner: str, url: str) -> str:
    """Return the URL's scheme once the URL is known to be usable."""
    shown = _redacted(url)
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in _URL_SCHEMES:
        raise ValueError(
            f"{owner}: malformed Redis URL {shown!r}: the scheme must be one of "
            f"{', '.join(_URL_SCHEMES)} (e.g. 'redis://127.0.0.1:6379/0')"
        )
    if scheme in _SENTINEL_SCHEMES:
        _sentinel_parts(owner, url)
        return scheme
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(f"{owner}: malformed Redis URL {shown!r} (bad port)") from None
    if scheme == "unix" and not parts.path:
        raise _malformed(owner, url, "no socket path")
    if scheme != "unix" and (not parts.hostname or port == 0):
        raise _malformed(owner, url, "no host (or port 0)")
    return scheme


def _sentinel_parts(
    owner: str, url: str
) -> tuple[list[tuple[str, int]], str, int, str | None, str | None]:
    """Sentinels, service name, db, username and password of a ``redis+sentinel://`` URL.

    Form: ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``.
    """
    rest = url.partition("://")[2]
    authority, _, path = rest.partition("/")
    credentials, _, hosts = authority.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    sentinels: list[tuple[str, int]] = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise _malformed(owner, url, "each Sentinel must be host:port")
        sentinels.append((host.strip("[]"), int(port)))
    service, _, db = path.partition("/")
    if not service:
        raise _malformed(owner, url, "no service name (redis+sentinel://host:port/service)")
    if db and not db.isdigit():
        raise _malformed(owner, url, "the database must be a number")
    return (
        sentinels,
        unquote(service),
        int(db or 0),
        unquote(username) or None,
        unquote(password) or None,
    )


class Session:
    """What one event loop uses: the client, and the scripts' own connections.

    Built by `RedisHandle` for each loop that calls it; closed when that loop ends.
    """

    __slots__ = ("client", "closer", "connections", "extra", "owned", "ready")

    def __init__(self, client: Client, *, owned: bool, extra: Sentinel | None = None) -> None:
        self.client = client
        self.owned = owned
        self.extra = extra
        self.connections: dict[str, _OwnConnection] = {}
        self.closer: AsyncGenerator[None, None] | None = None
        self.ready: asyncio.Task[Any] | None = None

    async def aclose(self) -> None:
        connections, self.connections = self.connections, {}
        for own in connections.values():
            await own.connection.disconnect()
        if self.owned:
            await self.client.aclose()
            if self.extra is not None:
                await self.extra.aclose()


class _OwnConnection:
    __slots__ = ("busy", "connection")

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.busy = False


class RedisHandle:
    """A redis-py asyncio client (one per event loop) plus the rules for talking to it.

    ``owned`` is true when the client was built here from a URL, so `aclose`
    closes it; a client passed in stays the caller's to close (and, like any
    redis-py client, belongs to the loop it is used on). ``cluster`` is true for a
    Redis Cluster, whose multi-key scripts need their keys in one hash slot.

    URLs: ``redis://``, ``rediss://``, ``unix://`` (one server),
    ``redis+cluster://host:port`` (any node of a cluster; the others are
    discovered), ``redis+sentinel://host:port[,host:port...]/service[/db]``
    (the primary Sentinel names for ``service``, found again after a failover).

    A client built from a URL sends a command once more, at once, when its
    connection turns out to be dropped (the first use of each pooled connection
    after a server restart or a failover), so a restart does not reach callers.
    Every command sent through it is safe to repeat (docs/design.md, "Redis limits
    and cache"). Its pool has 100 connections; a command beyond them waits for one
    (within the timeout) rather than failing. A client passed in keeps its own
    ``retry`` and pool settings.
    """

    __slots__ = (
        "__weakref__",
        "_build",
        "_given",
        "_last",
        "_parked",
        "_response_error",
        "_sessions",
        "_unavailable",
        "address",
        "cluster",
        "owned",
        "timeout",
    )

    def __init__(
        self, redis: str | Client, *, owner: str, timeout: float, read_slack: float = 0.0
    ) -> None:
        redis_asyncio = require("redis.asyncio", feature=owner, extra="redis")
        import redis.exceptions as redis_exceptions
        from redis.asyncio.cluster import RedisCluster

        self.timeout = timeout
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Session] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[asyncio.AbstractEventLoop | None, Session | None] = (None, None)
        self._given: Client | None = None
        if isinstance(redis, str):
            scheme = _check_url(owner, redis)
            self._build = _builder(owner, redis, scheme, timeout, read_slack)
            # Built once now so a URL redis-py cannot use fails here, not at the
            # first call; no connection is opened until then.
            first = self._build()
            self.cluster = isinstance(first.client, RedisCluster)
            self.address = _address(first.client, redis)
            self._parked: Session | None = first
            self.owned = True
        elif isinstance(redis, (redis_asyncio.Redis, RedisCluster)):
            self._given = redis
            self._parked = None
            self.cluster = isinstance(redis, RedisCluster)
            self.address = _address(redis, None)
            self.owned = False
        else:
            raise TypeError(
                f"{owner} redis must be a URL or a redis.asyncio.Redis client (or a "
                f"redis.asyncio.cluster.RedisCluster), got {type(redis).__name__}"
            )
        self._response_error: type[Exception] = redis_exceptions.ResponseError
        self._unavailable: tuple[type[BaseException], ...] = (
            redis_exceptions.ConnectionError,
            redis_exceptions.TimeoutError,
            # A cluster resharding or failing over, a slot with no primary yet, or
            # a primary demoted under a plain client: the data is not reachable now.
            redis_exceptions.ClusterDownError,
            redis_exceptions.TryAgainError,
            redis_exceptions.SlotNotCoveredError,
            redis_exceptions.ReadOnlyError,
            TimeoutError,
            OSError,
        )

    async def _enter(self, loop: asyncio.AbstractEventLoop) -> Session:
        session = self._sessions.get(loop)
        if session is None:
            if self._given is not None:
                session = Session(self._given, owned=False)
            else:
                session, self._parked = self._parked or self._build(), None
            self._sessions[loop] = session
            session.closer = self._close_when_loop_ends(weakref.ref(loop), session)
            await anext(session.closer)
            if self.cluster:
                # Learn the slot map before the first commands: redis-py's cluster
                # client fails some of a burst of commands sent while it does so.
                session.ready = loop.create_task(session.client.initialize())
                # Seen here even if every caller waiting for it has timed out.
                session.ready.add_done_callback(
                    lambda ready: ready.cancelled() or ready.exception()
                )
        if session.ready is not None:
            try:
                await asyncio.shield(session.ready)
            finally:
                if session.ready is not None and session.ready.done():
                    session.ready = None  # failed: the next call tries again
        self._last = (loop, session)
        return session

    async def _close_when_loop_ends(
        self, loop: weakref.ref[asyncio.AbstractEventLoop], session: Session
    ) -> AsyncGenerator[None, None]:
        """Suspended until the loop finalizes its async generators (or `aclose`)."""
        try:
            yield
        finally:
            if self._last[1] is session:
                self._last = (None, None)
            if (ended := loop()) is not None:
                self._sessions.pop(ended, None)
            await session.aclose()

    async def call(
        self,
        operation: Callable[[Session], Awaitable[T]],
        key: str,
        *,
        extra_time: float = 0.0,
    ) -> T:
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
        loop = asyncio.get_running_loop()
        last_loop, session = self._last
        try:
            async with asyncio.timeout(self.timeout + extra_time):
                if last_loop is not loop or session is None:
                    session = await self._enter(loop)
                result = await operation(session)
        except self._unavailable as error:
            raise LimiterUnavailableError(self.address, key, self.timeout) from error
        except self._response_error as error:
            # A primary with `min-replicas-to-write` and too few replicas refuses
            # writes until they are back: unavailable, not a bug of the caller's.
            if str(error).startswith("NOREPLICAS"):
                raise LimiterUnavailableError(self.address, key, self.timeout) from error
            raise
        if task is not None and task.cancelling() > cancelling:
            raise asyncio.CancelledError
        return result

    async def aclose(self) -> None:
        """Close this loop's connections, and the client if it was built from a URL."""
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and session.closer is not None:
            await session.closer.aclose()
        parked, self._parked = self._parked, None
        if parked is not None:
            await parked.aclose()


def _builder(
    owner: str, url: str, scheme: str, timeout: float, read_slack: float
) -> Callable[[], Session]:
    """A function building a fresh client (and session) for ``url``."""
    import redis.asyncio as redis_asyncio
    import redis.exceptions as redis_exceptions
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    settings: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout + read_slack,
    }

    def resend_once() -> Retry:
        # After a server restart or failover every pooled connection is dead, and
        # only a command reveals it ("Connection closed by server"): send it again
        # at once, once, on the same connection, which reconnects. Only a dropped
        # connection is retried; a timed-out command may still be running.
        return Retry(NoBackoff(), 1, supported_errors=(redis_exceptions.ConnectionError,))

    def plain() -> Session:
        try:
            # Blocking: more concurrent commands than connections wait for one
            # (within `call`'s timeout) instead of failing "Too many connections".
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                url, max_connections=_MAX_CONNECTIONS, timeout=None, retry=resend_once(), **settings
            )
        except ValueError:
            raise ValueError(f"{owner}: malformed Redis URL {_redacted(url)!r}") from None
        return Session(redis_asyncio.Redis.from_pool(pool), owned=True)

    def cluster() -> Session:
        plain_url = url.replace("+cluster", "", 1)
        try:
            # The cluster client follows MOVED/ASK itself and, on a dropped
            # connection or a failover, refreshes the slot map and tries again
            # (its own retry, bounded by `call`'s timeout).
            client = RedisCluster.from_url(plain_url, max_connections=_MAX_CONNECTIONS, **settings)
        except ValueError:
            raise ValueError(f"{owner}: malformed Redis URL {_redacted(url)!r}") from None
        return Session(client, owned=True)

    def sentinel() -> Session:
        sentinels, service, db, username, password = _sentinel_parts(owner, url)
        manager = Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
            sentinels,
            sentinel_kwargs=dict(settings),
            ssl=scheme.startswith("rediss"),
            username=username,
            password=password,
            db=db,
            retry=resend_once(),
            **settings,
        )
        return Session(manager.master_for(service), owned=True, extra=manager)

    if scheme in _CLUSTER_SCHEMES:
        return cluster
    if scheme in _SENTINEL_SCHEMES:
        return sentinel
    return plain


def _address(client: Client, url: str | None) -> str:
    """Where the client talks to, for error messages (never with credentials)."""
    from redis.asyncio.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        nodes = ",".join(node.name for node in client.nodes_manager.startup_nodes.values())
        return f"Redis Cluster {nodes}"
    pool = client.connection_pool
    service = getattr(pool, "service_name", None)
    if service is not None:
        if url is not None:
            hosts = _redacted(url).partition("://")[2].partition("/")[0]
            return f"Sentinel service {service!r} via {hosts}"
        return f"Sentinel service {service!r}"
    settings: dict[str, Any] = pool.connection_kwargs
    if "path" in settings:
        return str(settings["path"])
    return f"{settings.get('host', 'localhost')}:{settings.get('port', 6379)}"


class Script:
    """A Lua script run through the client (EVALSHA, EVAL if the server lacks it).

    On a cluster the client sends it to the node owning the keys' slot.

    Example::

        script = Script(LUA)
        reply = await handle.call(lambda session: script.run(session, keys, args), key)
    """

    __slots__ = ("_no_script", "lua", "sha")

    def __init__(self, lua: str) -> None:
        import redis.exceptions as redis_exceptions

        self.lua = lua
        self.sha = hashlib.sha1(lua.encode()).hexdigest()
        self._no_script: type[Exception] = redis_exceptions.NoScriptError

    async def run(self, session: Session, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run the script with ``keys`` and ``args`` on the session's client."""
        client = session.client
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[arg-type]
        except self._no_script:
            return await client.eval(self.lua, len(keys), *keys, *args)  # type: ignore[arg-type]


class ScriptConnection(Script):
    """A Lua script run on a long-lived connection of its own (on a cluster, one per
    primary), through the pool when that connection is busy.

    Skipping the pool (take and return a connection, check it for stray data) brings
    a script call from ~1.6 to ~1.25 PING round trips. The connection belongs to
    the loop's session and is closed with it.

    Example::

        script = ScriptConnection(LUA)
        reply = await handle.call(lambda session: script.run(session, keys, args), key)
    """

    __slots__ = ()

    async def run(self, session: Session, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run the script (EVALSHA, EVAL if the server does not know it yet)."""
        from redis.asyncio.cluster import RedisCluster

        client = session.client
        if isinstance(client, RedisCluster):
            return await self._run_on_cluster(session, client, keys, args)
        own = session.connections.get(self.sha)
        if own is None:
            pool = client.connection_pool
            # No socket timeout: the caller's `RedisHandle.call` bounds every use.
            settings = {**pool.connection_kwargs, "socket_timeout": None}
            own = session.connections[self.sha] = _OwnConnection(pool.connection_class(**settings))
        if own.busy:
            return await super().run(session, keys, args)
        own.busy = True
        try:
            return await self._run_on(own.connection, [len(keys), *keys, *args])
        finally:
            own.busy = False

    async def _run_on_cluster(
        self,
        session: Session,
        client: RedisCluster,
        keys: Sequence[str],
        args: Sequence[object],
    ) -> Any:
        """On a cluster: a connection of its own to the primary that owns the keys'
        slot, as the client's slot map says; anything unusual (a redirection after a
        resharding or failover, a dropped node) goes through the client, which
        follows it and updates its map."""
        import redis.exceptions as redis_exceptions

        node = client.get_node_from_key(keys[0])
        if node is None:
            return await super().run(session, keys, args)
        name = f"{self.sha}@{node.name}"
        own = session.connections.get(name)
        if own is None:
            settings = {**node.connection_kwargs, "socket_timeout": None}
            own = session.connections[name] = _OwnConnection(node.connection_class(**settings))
        if own.busy:
            return await super().run(session, keys, args)
        own.busy = True
        try:
            return await self._run_on(own.connection, [len(keys), *keys, *args])
        except (redis_exceptions.AskError, redis_exceptions.ConnectionError):
            # MOVED is an AskError too. The script did not run (a redirection) or
            # the connection is gone: the cluster client takes it from here.
            await own.connection.disconnect()
            del session.connections[name]
            return await super().run(session, keys, args)
        finally:
            own.busy = False

    async def _run_on(self, connection: AbstractConnection, arguments: list[object]) -> Any:
        import redis.exceptions as redis_exceptions

        # A dropped connection (say, Redis restarted or failed over) is found by the
        # next command: it is sent once more on a fresh one, like the pool's `Retry`.
        for attempt in (1, 2):
            try:
                if not connection.is_connected:
                    # Explicitly, as the pool does: a Sentinel-managed connection
                    # finds the current primary in `connect`, which sending a
                    # command on a closed connection would skip.
                    await connection.connect()  # type: ignore[no-untyped-call]
                try:
                    await connection.send_command("EVALSHA", self.sha, *arguments)
                    return await connection.read_response()
                except self._no_script:
                    await connection.send_command("EVAL", self.lua, *arguments)
                    return await connection.read_response()
            except redis_exceptions.ConnectionError:
                # On any failure or cancellation mid-command redis-py has already
                # disconnected it, so no stale reply is left to read.
                await connection.disconnect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
