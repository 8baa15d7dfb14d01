"""The exceptions act-operator-lib raises, and what to catch.

Every exception derives from `ActOperatorError` and also from the builtin a caller
would already catch for that kind of failure, so existing ``except TimeoutError``
or ``except TypeError`` code keeps working::

    ActOperatorError
    ├── NodeDefinitionError (TypeError)   a node class is defined wrongly
    ├── GraphDefinitionError (TypeError)  a BaseGraph's build() or compile options don't fit
    ├── NodeResultError (TypeError)       execute() returned something LangGraph can't merge
    │   └── MissingAwaitError             ... a coroutine: an ``await`` was forgotten
    ├── FunctionNotAsyncError (TypeError) map_concurrent's fn returned no awaitable
    ├── NodeTimeoutError (TimeoutError, langgraph.errors.NodeTimeoutError)
    │                                     an attempt ran past the node's timeout
    ├── ItemTimeoutError (TimeoutError)   one item of map_concurrent/as_completed ran too long
    ├── CallTimeoutError (TimeoutError)   an attempt of call_with_policies ran too long
    ├── ResourceUnavailableError (ConnectionError)  a pooled resource could not connect
    ├── LimiterUnavailableError (ConnectionError)   Redis behind a limiter/cache is down
    ├── LimiterKeyConflictError (ValueError)        a Redis key holds another limiter
    ├── DurableContextError (RuntimeError)          map_durable has no store or thread id
    ├── DuplicateItemKeyError (ValueError)          two items of map_durable share a key
    ├── ResultNotSerializableError (TypeError)      a map_durable result is not JSON data
    ├── RecordedItemError (RuntimeError)            an item's failure, recorded by an earlier run
    ├── ResourceClosedError (RuntimeError)          a resource was used while aclose() ran
    └── BlockingCallError (AssertionError)          testing: a blocking call ran on the event loop

Messages name the node (or class, limiter, argument) and say how to fix it.
"""

from __future__ import annotations

from collections.abc import Sequence

from langgraph.errors import NodeTimeoutError as LangGraphNodeTimeoutError

__all__ = [
    "ActOperatorError",
    "BlockingCallError",
    "CallTimeoutError",
    "DuplicateItemKeyError",
    "DurableContextError",
    "FunctionNotAsyncError",
    "GraphDefinitionError",
    "ItemTimeoutError",
    "LimiterKeyConflictError",
    "LimiterUnavailableError",
    "MissingAwaitError",
    "NodeDefinitionError",
    "NodeResultError",
    "NodeTimeoutError",
    "RecordedItemError",
    "ResourceClosedError",
    "ResourceUnavailableError",
    "ResultNotSerializableError",
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


class GraphDefinitionError(ActOperatorError, TypeError):
    """A `BaseGraph` cannot produce its graph as asked.

    ``build()`` returned something that is not a LangGraph graph, or a compile option
    given to the call conflicts with one ``build()`` already compiled in.
    """


class NodeResultError(ActOperatorError, TypeError):
    """A node's execute() returned a value LangGraph cannot merge into the state."""


class MissingAwaitError(NodeResultError):
    """A node returned a coroutine (or a dict holding one): an ``await`` is missing.

    The coroutine is closed before this is raised, so no "coroutine was never
    awaited" RuntimeWarning follows the error.
    """


class FunctionNotAsyncError(ActOperatorError, TypeError):
    """The ``fn`` given to `map_concurrent` (or `as_completed`, `map_durable`) is not async.

    Raised by the first call whose result cannot be awaited, and it ends the run
    even with ``return_exceptions=True``: every item would fail the same way::

        await map_concurrent(requests.get, urls, limit=10)  # FunctionNotAsyncError

    Make ``fn`` an ``async def`` function, or run a blocking one in a thread with
    ``lambda item: run_sync(function, item)``.
    """


class NodeTimeoutError(ActOperatorError, TimeoutError, ConnectionError, LangGraphNodeTimeoutError):
    """A node attempt ran longer than its ``timeout`` and was cancelled.

    One timeout story with LangGraph: it is a ``langgraph.errors.NodeTimeoutError``
    (``kind="run"``), so code catching LangGraph's catches it, and it is retried
    where LangGraph's is, by the default ``RetryPolicy()`` of ``add_node`` and of the
    node's own ``retry``. It is also a builtin ``TimeoutError``, so ``except
    TimeoutError`` works; and a ``ConnectionError`` because LangGraph's default
    ``retry_on`` treats every other ``OSError`` (``TimeoutError`` included) as
    permanent and retries a ``ConnectionError``.

    Attributes:
        node: The node's name.
        timeout: The limit, in seconds (also ``run_timeout``, as LangGraph's).
        elapsed: Seconds the attempt ran (the limit).
        kind: ``"run"``: a per-attempt limit on the whole run of ``execute``.
    """

    def __init__(self, node: str, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        self.run_timeout = timeout
        self.idle_timeout = None
        self.elapsed = timeout
        self.kind = "run"
        # The builtin's __init__, not LangGraph's (which builds its own message).
        TimeoutError.__init__(
            self,
            f"node {node!r} timed out after {timeout:g}s; raise its `timeout` "
            "or make the work faster",
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


class CallTimeoutError(ActOperatorError, TimeoutError):
    """An attempt of `call_with_policies` ran longer than its ``timeout`` and was cancelled.

    Attributes:
        timeout: The limit, in seconds.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"the call timed out after {timeout:g}s (call_with_policies(timeout=...)); "
            "raise `timeout` or make the call faster"
        )

    def __reduce__(self) -> tuple[type[CallTimeoutError], tuple[float]]:
        return (type(self), (self.timeout,))


class DurableContextError(ActOperatorError, RuntimeError):
    """`map_durable` / `forget_durable` cannot tell where to record results.

    Raised before any work starts when no store is given and the graph has none
    (compile it with ``graph.compile(checkpointer=..., store=...)`` or pass
    ``store=``), or when there is no thread id to record under (invoke the graph with
    ``config={"configurable": {"thread_id": ...}}`` or pass ``namespace=``).
    """


class DuplicateItemKeyError(ActOperatorError, ValueError):
    """Two items given to `map_durable` have the same key, so their records would clash.

    Raised before any work starts.

    Attributes:
        key: The shared key.
        first: The index of the first item with that key.
        second: The index of the second one.
    """

    def __init__(self, key: str, first: int, second: int) -> None:
        self.key = key
        self.first = first
        self.second = second
        super().__init__(
            f"items {first} and {second} have the same key {key!r}; map_durable records "
            "each result under its item's key, so `key(item)` must be unique and stable "
            "(e.g. a database id, or a hash of the item's content)"
        )

    def __reduce__(self) -> tuple[type[DuplicateItemKeyError], tuple[str, int, int]]:
        return (type(self), (self.key, self.first, self.second))


class ResultNotSerializableError(ActOperatorError, TypeError):
    """A result returned to `map_durable` cannot be recorded in the store as JSON.

    Attributes:
        key: The key of the item whose result it is.
        problem: What is wrong, with the path inside the result.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(
            f"the result of item {key!r} cannot be recorded: {problem}; map_durable "
            "records JSON data (dict with str keys, list, tuple, str, int, finite float, "
            "bool, None): convert it first, e.g. model.model_dump(mode='json')"
        )

    def __reduce__(self) -> tuple[type[ResultNotSerializableError], tuple[str, str]]:
        return (type(self), (self.key, self.problem))


class RecordedItemError(ActOperatorError, RuntimeError):
    """An item's failure recorded by an earlier run of `map_durable` (return_exceptions=True).

    The rerun returns it in the item's place instead of calling the function again;
    forget the run's records (`forget_durable`) to retry failed items.

    Attributes:
        key: The item's key.
        error_type: The qualified name of the original exception's class.
        message: ``str()`` of the original exception.
    """

    def __init__(self, key: str, error_type: str, message: str) -> None:
        self.key = key
        self.error_type = error_type
        self.message = message
        super().__init__(f"item {key!r} failed in an earlier run: {error_type}: {message}")

    def __reduce__(self) -> tuple[type[RecordedItemError], tuple[str, str, str]]:
        return (type(self), (self.key, self.error_type, self.message))


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


class BlockingCallError(ActOperatorError, AssertionError):
    """Code running on the event loop made a blocking call (``time.sleep``, sync I/O).

    Attributes:
        calls: The blocking functions called, e.g. ``("time.sleep",)``.
    """

    def __init__(self, calls: Sequence[str]) -> None:
        self.calls = tuple(calls)
        super().__init__(
            f"blocking call(s) on the event loop: {', '.join(self.calls)}. Use the async "
            "equivalent (asyncio.sleep, aiofiles, aiohttp, ...) or move the call to a "
            "thread with `await asyncio.to_thread(...)`."
        )

    def __reduce__(self) -> tuple[type[BlockingCallError], tuple[tuple[str, ...]]]:
        return (type(self), (self.calls,))
