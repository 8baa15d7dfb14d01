"""Cache the results of async functions: single-flight, TTL, in memory or in Redis.

The guide's "Cache results" done right::

    from act_operator_lib.cache import cached

    @cached(ttl=300)
    async def lookup(user_id: int) -> dict[str, str]:
        return await api.get_user(user_id)

Concurrent identical calls run the function once and share its result
(single-flight); a failure is not cached and reaches every waiter.
"""

from __future__ import annotations

import asyncio
import copy as copying
import functools
import hashlib
import inspect
import json
import pickle
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, ParamSpec, TypeVar

from act_operator_lib._redis_client import RedisHandle, check_key
from act_operator_lib._validation import positive_integer, positive_number

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["CacheBackend", "MemoryCacheBackend", "RedisCacheBackend", "cached"]

P = ParamSpec("P")
R = TypeVar("R")

_MISSING: Final = object()


class CacheBackend(ABC):
    """Where `cached` keeps results: implement `get` and `set`.

    Example::

        @cached(ttl=60, backend=RedisCacheBackend("redis://127.0.0.1:6379/0"))
        async def lookup(user_id: int) -> dict[str, str]: ...
    """

    __slots__ = ()

    @abstractmethod
    async def get(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, value)`` for a live entry, ``(False, None)`` otherwise."""

    @abstractmethod
    async def set(self, key: str, value: Any, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""


class MemoryCacheBackend(CacheBackend):
    """An in-process cache: at most ``max_entries`` entries, least recently used out first.

    Example::

        @cached(ttl=60, backend=MemoryCacheBackend(max_entries=10_000))
        async def lookup(user_id: int) -> dict[str, str]: ...

    Values are kept as they are (not copied or serialised): callers share the
    cached object, so don't mutate it, or decorate with ``cached(..., copy=True)``
    to give every caller its own deep copy. Expiry uses the running loop's
    ``loop.time()``, so fake clocks (``looptime``) work.
    """

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int = 1024) -> None:
        """Configure the size bound.

        Raises:
            TypeError, ValueError: ``max_entries`` is not an int of at least 1.
        """
        self._max_entries = positive_integer("MemoryCacheBackend", "max_entries", max_entries)
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def __repr__(self) -> str:
        return f"MemoryCacheBackend(max_entries={self._max_entries})"

    def __len__(self) -> int:
        return len(self._entries)

    def get_nowait(self, key: str) -> tuple[bool, Any]:
        """`get` without a suspension point (the cache hit fast path)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        expires, value = entry
        if asyncio.get_running_loop().time() >= expires:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, value

    async def get(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, value)`` for a live entry, ``(False, None)`` otherwise."""
        return self.get_nowait(key)

    async def set(self, key: str, value: Any, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""
        self._entries[key] = (asyncio.get_running_loop().time() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        self._entries.pop(key, None)


class RedisCacheBackend(CacheBackend):
    """A cache shared by every process using the same Redis and ``prefix``.

    Example::

        backend = RedisCacheBackend("redis://127.0.0.1:6379/0", prefix="myapp:cache:")

        @cached(ttl=300, backend=backend)
        async def lookup(user_id: int) -> dict[str, str]: ...

        await backend.aclose()

    Values are stored as JSON, so only JSON types survive (a tuple comes back as
    a list) and a value JSON cannot encode raises `TypeError` naming it. Pickle is
    used only when asked for with ``serializer="pickle"``: unpickling runs code
    chosen by whoever can write to the Redis server, so enable it only for a
    server you trust completely. Expiry is Redis's (``SET ... PX``).

    If Redis is unavailable, the call raises `LimiterUnavailableError` within
    ``timeout``.
    """

    __slots__ = ("_handle", "_prefix", "_serializer")

    def __init__(
        self,
        redis: str | Redis,
        prefix: str = "act_operator_lib:cache:",
        *,
        serializer: Literal["json", "pickle"] = "json",
        timeout: float = 2.0,
    ) -> None:
        """Configure the backend; nothing is sent to Redis until the first call.

        Args:
            redis: A URL or a ``redis.asyncio.Redis`` client (redis-py; a client
                passed in is not closed by `aclose`).
            prefix: Prepended to every cache key.
            serializer: ``"json"`` (default, safe) or ``"pickle"`` (trusted servers only).
            timeout: Seconds each Redis operation may take.

        Raises:
            TypeError, ValueError: a malformed URL, prefix, serializer or timeout.
        """
        owner = "RedisCacheBackend"
        self._prefix = check_key(owner, "prefix", prefix)
        if serializer not in ("json", "pickle"):
            raise ValueError(f"{owner} serializer must be 'json' or 'pickle', got {serializer!r}")
        self._serializer = serializer
        self._handle = RedisHandle(
            redis, owner=owner, timeout=positive_number(owner, "timeout", timeout)
        )

    def __repr__(self) -> str:
        return f"RedisCacheBackend(prefix={self._prefix!r}, serializer={self._serializer!r})"

    def redis_key(self, key: str) -> str:
        """The Redis key an entry is stored under."""
        return self._prefix + key

    async def get(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, value)`` for a live entry, ``(False, None)`` otherwise."""
        full_key = self.redis_key(key)
        raw = await self._handle.call(lambda session: session.client.get(full_key), full_key)
        if raw is None:
            return False, None
        if isinstance(raw, str):  # a client made with decode_responses=True
            raw = raw.encode()
        if self._serializer == "pickle":
            return True, pickle.loads(raw)
        try:
            return True, json.loads(raw)
        except ValueError:
            raise ValueError(
                f"cache entry {full_key!r} is not JSON (another writer, or a pickle); "
                "it is not unpickled: delete it or use another prefix"
            ) from None

    async def set(self, key: str, value: Any, ttl: float) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""
        full_key = self.redis_key(key)
        if self._serializer == "pickle":
            data = pickle.dumps(value)
        else:
            try:
                data = json.dumps(value, separators=(",", ":")).encode()
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"cannot cache a {type(value).__name__} in Redis as JSON ({error}); "
                    "return JSON types (dict, list, str, int, float, bool, None) or use "
                    'RedisCacheBackend(..., serializer="pickle") with a trusted server'
                ) from None
        milliseconds = max(1, round(ttl * 1000))
        await self._handle.call(
            lambda session: session.client.set(full_key, data, px=milliseconds), full_key
        )

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        full_key = self.redis_key(key)
        await self._handle.call(lambda session: session.client.delete(full_key), full_key)

    async def aclose(self) -> None:
        """Close the Redis client if this backend built it from a URL."""
        await self._handle.aclose()


class _Flight:
    """One running computation and how many callers are waiting for it."""

    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.waiters = 0


class _CachedFunction(Generic[P, R]):
    """The state behind one `cached` function: its key rule, backend and flights."""

    def __init__(
        self,
        function: Callable[P, Awaitable[R]],
        ttl: float,
        key: Callable[..., str] | None,
        backend: CacheBackend,
        copy: bool,
    ) -> None:
        self.function = function
        self.ttl = ttl
        self.key = key
        self.backend = backend
        self.copy = copy
        self.name = f"{function.__module__}.{function.__qualname__}"
        self.signature = inspect.signature(function)
        parameters = list(self.signature.parameters)
        self.skip_first = bool(parameters) and parameters[0] in ("self", "cls")
        self.flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Flight]]
        self.flights = weakref.WeakKeyDictionary()

    def make_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self.key is not None:
            custom = self.key(*args, **kwargs)
            if not isinstance(custom, str):
                raise TypeError(
                    f"the key function of cached {self.name} must return a str, "
                    f"got {type(custom).__name__}"
                )
            return f"{self.name}:{custom}"
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arguments = list(bound.arguments.items())
        if self.skip_first:
            arguments = arguments[1:]
        try:
            text = json.dumps(arguments, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            raise TypeError(
                f"cached {self.name}: the default key needs JSON-encodable arguments; "
                "pass key=lambda *args, **kwargs: ... returning a str"
            ) from None
        return f"{self.name}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    async def compute(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        hit, value = await self.backend.get(key)
        if hit:
            return value  # type: ignore[no-any-return]
        result = await self.function(*args, **kwargs)
        await self.backend.set(key, result, self.ttl)
        return result

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.make_key(args, kwargs)
        if isinstance(self.backend, MemoryCacheBackend):
            hit, value = self.backend.get_nowait(key)
            if hit:
                return copying.deepcopy(value) if self.copy else value  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        flights = self.flights.setdefault(loop, {})
        flight = flights.get(key)
        if flight is None:
            flight = _Flight(loop.create_task(self.compute(key, args, kwargs)))
            flights[key] = flight
            flight.task.add_done_callback(functools.partial(_land, flights, key, flight))
        flight.waiters += 1
        try:
            result: R = await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # The last waiter left (cancelled): nobody wants the result any more.
                # The cancelled task may take a while to end; a caller arriving
                # meanwhile must start a new computation, not wait for this one.
                flight.task.cancel()
                if flights.get(key) is flight:
                    del flights[key]
        # Every caller, the one whose call computed it included, gets a copy: the
        # object kept in the backend is never handed out.
        return copying.deepcopy(result) if self.copy else result


def _land(flights: dict[str, _Flight], key: str, flight: _Flight, task: asyncio.Task[Any]) -> None:
    """Forget a finished flight; retrieve its exception so none goes unreported."""
    if flights.get(key) is flight:
        del flights[key]
    if not task.cancelled():
        task.exception()


def cached(
    *,
    ttl: float,
    key: Callable[..., str] | None = None,
    backend: CacheBackend | None = None,
    copy: bool = False,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Cache an async function's (or method's) results for ``ttl`` seconds.

    Example::

        @cached(ttl=60)
        async def lookup(user_id: int) -> dict[str, str]: ...

        class Weather(AsyncBaseNode):
            @cached(ttl=600, key=lambda self, city: city.lower())
            async def forecast(self, city: str) -> dict[str, float]: ...

    - Single-flight: concurrent calls with the same key run the function once and
      all get its result. A failure is not cached and is raised to every waiter.
      Cancelling one waiter leaves the computation running for the others; when
      the last waiter leaves, the computation is cancelled, and a later caller
      starts a new one (even while the cancelled one is still winding down).
    - Key: by default the function's module and qualified name plus its arguments
      (bound to the signature, defaults applied, JSON-encoded and hashed), so
      ``f(1)`` and ``f(x=1)`` share an entry. A first parameter named ``self`` or
      ``cls`` is left out: every instance of a class shares the entries, the same
      in every process. If the result depends on the instance, or an argument is
      not JSON-encodable, pass ``key(*args, **kwargs) -> str`` (it receives
      ``self`` too); it is prefixed with the function's name.
    - Backend: a `MemoryCacheBackend` of 1024 entries per function by default;
      `RedisCacheBackend` to share across processes.
    - Copies: by default every caller gets the same object (a memory hit costs no
      copy), so a caller that mutates its result changes it for all later callers.
      ``copy=True`` gives each caller, concurrent waiters included, its own
      ``copy.deepcopy`` of the result. A Redis hit is always a fresh object.

    Raises:
        TypeError, ValueError: ``ttl`` is not a number above 0, or ``copy`` is not
            a bool.
    """
    ttl = positive_number("cached", "ttl", ttl)
    if key is not None and not callable(key):
        raise TypeError(
            "cached key must be a function (*args, **kwargs) -> str, e.g. "
            f"key=lambda self, city: city.lower(), got {type(key).__name__}"
        )
    if not isinstance(copy, bool):
        raise TypeError(
            f"cached copy must be True or False, got {type(copy).__name__}; "
            "copy=True gives every caller its own deep copy of the cached result"
        )
    if backend is not None and not isinstance(backend, CacheBackend):
        raise TypeError(
            "cached backend must be a CacheBackend (MemoryCacheBackend(), "
            f"RedisCacheBackend(url), or a subclass), got {type(backend).__name__}"
        )

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        if not inspect.iscoroutinefunction(function):
            raise TypeError(f"cached needs an async function, got {function!r}")
        store = backend if backend is not None else MemoryCacheBackend()
        state = _CachedFunction(function, ttl, key, store, copy)

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return await state(*args, **kwargs)

        return wrapper

    return decorate
