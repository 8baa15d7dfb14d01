"""The exceptions act-operator-lib raises, and what to catch.

Every exception derives from `ActOperatorError` and also from the builtin a caller
would already catch for that kind of failure, so existing ``except TimeoutError``
or ``except TypeError`` code keeps working::

    ActOperatorError
    ├── NodeDefinitionError (TypeError)   a node class is defined wrongly
    ├── NodeResultError (TypeError)       execute() returned something LangGraph can't merge
    │   └── MissingAwaitError             ... a coroutine: an ``await`` was forgotten
    ├── NodeTimeoutError (TimeoutError)   an attempt ran past the node's timeout
    ├── ItemTimeoutError (TimeoutError)   one item of map_concurrent/as_completed ran too long
    ├── ResourceUnavailableError (ConnectionError)  a pooled resource could not connect
    ├── LimiterUnavailableError (ConnectionError)   Redis behind a limiter/cache is down
    ├── LimiterKeyConflictError (ValueError)        a Redis key holds another limiter
    └── ResourceClosedError (RuntimeError)          a resource was used while aclose() ran

Messages name the node (or class, limiter, argument) and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ActOperatorError",
    "ItemTimeoutError",
    "LimiterKeyConflictError",
    "LimiterUnavailableError",
    "MissingAwaitError",
    "NodeDefinitionError",
    "NodeResultError",
    "NodeTimeoutError",
    "ResourceClosedError",
    "ResourceUnavailableError",
]


class ActOperatorError(Exception):
    """Base class of every exception raised by act-operator-lib."""


class NodeDefinitionError(ActOperatorError, TypeError):
    """A node class is defined in a way the library cannot run.

    Raised when the class statement runs, not at the first call, so the mistake
    surfaces at import time::

        class Broken(AsyncBaseNode):
            def execute(self, state):  # NodeDefinitionError: use 'async def'
                ...
    """


class NodeResultError(ActOperatorError, TypeError):
    """A node's execute() returned a value LangGraph cannot merge into the state."""


class MissingAwaitError(NodeResultError):
    """A node returned a coroutine (or a dict holding one): an ``await`` is missing.

    The coroutine is closed before this is raised, so no "coroutine was never
    awaited" RuntimeWarning follows the error.
    """


class NodeTimeoutError(ActOperatorError, TimeoutError):
    """A node attempt ran longer than its ``timeout`` and was cancelled.

    Attributes:
        node: The node's name.
        timeout: The limit, in seconds.
    """

    def __init__(self, node: str, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        super().__init__(
            f"node {node!r} timed out after {timeout:g}s; raise its `timeout` "
            "or make the work faster"
        )

    def __reduce__(self) -> tuple[type[NodeTimeoutError], tuple[str, float]]:
        return (type(self), (self.node, self.timeout))


class ItemTimeoutError(ActOperatorError, TimeoutError):
    """One item of `map_concurrent` / `as_completed` ran past the per-item ``timeout``.

    Attributes:
        index: The item's position in the input.
        timeout: The limit, in seconds.
    """

    def __init__(self, index: int, timeout: float) -> None:
        self.index = index
        self.timeout = timeout
        super().__init__(
            f"item {index} timed out after {timeout:g}s (the per-item `timeout`); "
            "raise `timeout` or make the call faster"
        )

    def __reduce__(self) -> tuple[type[ItemTimeoutError], tuple[int, float]]:
        return (type(self), (self.index, self.timeout))


class ResourceUnavailableError(ActOperatorError, ConnectionError):
    """A pooled resource could not reach its server or open its file.

    The message names the resource and the host, port and database (or path), never
    a password; it is raised within the resource's connect timeout::

        try:
            pool = await self.db()
        except ResourceUnavailableError as error:
            return {"error": str(error)}
    """


class ResourceClosedError(ActOperatorError, RuntimeError):
    """A resource was used on an event loop where its ``aclose()`` was still running.

    Once the close has finished, the next use opens a fresh resource; a use that
    races with the close (typically a run still in flight during shutdown) gets this
    error instead of a half-closed session or a new one nobody will close.
    """


class LimiterUnavailableError(ActOperatorError, ConnectionError):
    """The Redis server behind a distributed limiter or cache did not answer in time.

    Raised within the limiter's ``timeout`` when the server refuses the connection,
    is unreachable, or accepts it and never answers. The message names the server
    (``host:port``, never the password) and the key.

    Attributes:
        address: ``host:port`` (or the unix socket path) of the server.
        key: The limiter's (or cache entry's) Redis key.
        timeout: The limit on each Redis operation, in seconds.
    """

    def __init__(self, address: str, key: str, timeout: float) -> None:
        self.address = address
        self.key = key
        self.timeout = timeout
        super().__init__(
            f"Redis at {address} is unavailable for key {key!r} (refused, unreachable "
            f"or no answer within {timeout:g}s); start or fix the server, raise "
            "`timeout`, or choose on_unavailable='allow' or 'local'"
        )

    def __reduce__(self) -> tuple[type[LimiterUnavailableError], tuple[str, str, float]]:
        return (type(self), (self.address, self.key, self.timeout))


class LimiterKeyConflictError(ActOperatorError, ValueError):
    """A Redis key is already used by another kind of limiter (or by other data).

    Checked atomically inside the limiter's Lua script, so two kinds of limiter can
    never silently share, and corrupt, one key.

    Attributes:
        key: The Redis key.
        expected: The kind of the limiter that tried to use it (``"rate"``, ...).
        found: What the key holds now.
    """

    def __init__(self, key: str, expected: str, found: str) -> None:
        self.key = key
        self.expected = expected
        self.found = found
        super().__init__(
            f"Redis key {key!r} already holds {found}; a {expected} limiter cannot "
            "share it: give this limiter another key"
        )

    def __reduce__(self) -> tuple[type[LimiterKeyConflictError], tuple[str, str, str]]:
        return (type(self), (self.key, self.expected, self.found))
