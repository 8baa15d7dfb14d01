"""Fan out over many items inside one node, and keep each finished result across a crash.

`map_durable` is `map_concurrent` with a memory: every item's result is recorded in
LangGraph's store (the one the graph was compiled with) under the run's thread, the
running task (one node in one step, or one ``Send``) and the item's key. When that
task runs again (its step resumed after a crash, an error, a timeout or an interrupt,
or the node retried by its ``RetryPolicy``), the recorded items are returned without
calling ``fn``, and only the rest run; any other task starts from nothing::

    class Enrich(AsyncBaseNode):
        async def execute(self, state):
            rows = await map_durable(
                self.enrich, state["rows"], key=lambda row: str(row["id"]), limit=50
            )
            return {"rows": rows}

    graph = builder.compile(checkpointer=saver, store=AsyncSqliteStore(conn))

Writes are batched (``flush_every`` results or ``flush_interval`` seconds, whichever
comes first, one `abatch` each), so durability costs little next to a per-item
checkpoint (LangGraph's ``Send``). `forget_durable` deletes a run's records.
Semantics and guarantees: docs/durable.md.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal, TypeVar, overload

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_config, get_store
from langgraph.store.base import BaseStore, GetOp, Item, PutOp
from langgraph.types import RetryPolicy

from act_operator_lib._engine import Run
from act_operator_lib._errors import (
    DuplicateItemKeyError,
    DurableContextError,
    RecordedItemError,
    ResultNotSerializableError,
)
from act_operator_lib._validation import positive_integer, seconds
from act_operator_lib.limits import SupportsAcquire

__all__ = ["NAMESPACE_ROOT", "forget_durable", "map_durable"]

T = TypeVar("T")
R = TypeVar("R")

NAMESPACE_ROOT: Final = ("act_operator_lib", "durable")
"""The first labels of every store namespace `map_durable` records under."""

DEFAULT_FLUSH_EVERY: Final = 500
"""Results buffered before a write is started (see ``flush_every``)."""

DEFAULT_FLUSH_INTERVAL: Final = 1.0
"""Seconds (loop time) a finished result may wait in the buffer (``flush_interval``)."""

_READ_CHUNK: Final = 1000
"""Keys per `GetOp` batch when prior records are read (SQLite binds one parameter each)."""

_DELETE_PAGE: Final = 1000
"""Records listed and deleted per round by `forget_durable`."""

_INT_RANGE: Final = range(-(2**63), 2**64)
"""Integers every store accepts (orjson, used by the SQLite store, stops at 64 bits)."""

_NUL: Final = "which the PostgreSQL store cannot hold (remove it or encode the text)"


@overload
async def map_durable(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    key: Callable[[T], str],
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: Literal[False] = False,
    progress: bool = False,
    store: BaseStore | None = None,
    namespace: str | tuple[str, ...] | None = None,
    flush_every: int = DEFAULT_FLUSH_EVERY,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
) -> list[R]: ...


@overload
async def map_durable(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T] | AsyncIterable[T],
    *,
    key: Callable[[T], str],
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: bool,
    progress: bool = False,
    store: BaseStore | None = None,
    namespace: str | tuple[str, ...] | None = None,
    flush_every: int = DEFAULT_FLUSH_EVERY,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
) -> list[R | Exception]: ...


async def map_durable(
    fn: Callable[[Any], Awaitable[Any]],
    items: Iterable[Any] | AsyncIterable[Any],
    *,
    key: Callable[[Any], str],
    limit: int,
    timeout: float | None = None,  # noqa: ASYNC109 - per item, not for the whole call
    rate_limiter: SupportsAcquire | None = None,
    retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    return_exceptions: bool = False,
    progress: bool = False,
    store: BaseStore | None = None,
    namespace: str | tuple[str, ...] | None = None,
    flush_every: int = DEFAULT_FLUSH_EVERY,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
) -> list[Any]:
    """Like `map_concurrent`, but each result is recorded, and a rerun skips recorded items.

    Example::

        pages = await map_durable(fetch, urls, key=str, limit=20, timeout=10)

    Before any call, ``items`` is read to the end (a list is built), every key is
    computed and checked, and the records of an earlier run are read in batches.
    ``fn``, ``limit``, ``timeout``, ``rate_limiter``, ``retry``, ``return_exceptions``
    and ``progress`` are as for `map_concurrent`; only an item's final result (after
    its retries) is recorded, and progress counts recorded items as done at once.

    Args:
        items: An iterable or async iterable; it is materialised first.
        key: ``key(item) -> str``, unique among the items and stable across runs
            (a database id, a URL, a content hash; not ``id()`` or a position in a
            list that may change).
        store: Where to record; default: the graph's store (``compile(store=...)``).
        namespace: Record under ``NAMESPACE_ROOT + namespace`` instead of the
            current thread and task, to share records on purpose (needed outside a
            graph; labels may not contain ".").
        flush_every: Results gathered before a batched write starts (at least 1).
        flush_interval: Seconds a result may wait for its write (more than 0).

    Returns:
        The results in input order. A recorded result comes back as the store
        decodes it (JSON: a tuple becomes a list); a recorded failure (only with
        ``return_exceptions=True``) comes back as `RecordedItemError`.

    Raises:
        DurableContextError: no store, or no thread id or running task and no
            ``namespace``.
        DuplicateItemKeyError: two items have the same key.
        ResultNotSerializableError: a result is not JSON data or holds a NUL
            character (the run stops, as for a failed item; what finished before is
            recorded).
        TypeError, ValueError: a bad argument, as for `map_concurrent`; ``key`` not
            callable, returning something other than a ``str``, or a ``str`` with a
            NUL character.
    """
    if not callable(key):
        raise TypeError(
            "map_durable(key=...) must be a function item -> str that names each item "
            f"stably across runs (e.g. `key=lambda row: str(row['id'])`), got {key!r}"
        )
    _check_flush_every(flush_every)
    _check_flush_interval(flush_interval)
    target = _resolve_store(store, "map_durable")
    prefix = _resolve_namespace(namespace, "map_durable")
    if isinstance(items, AsyncIterable):
        materialised = [item async for item in items]
    elif isinstance(items, Iterable):
        materialised = list(items)
    else:
        raise TypeError(
            f"map_durable(items=...) must be an iterable or async iterable, "
            f"got {type(items).__name__}"
        )
    run = Run(
        fn,
        materialised,
        limit=limit,
        timeout=timeout,
        rate_limiter=rate_limiter,
        retry=retry,
        return_exceptions=return_exceptions,
        progress=progress,
        caller="map_durable",
    )
    keys = _item_keys(key, materialised)
    recorded = await _read_records(target, prefix, keys, return_exceptions)
    if len(recorded) == len(materialised):
        return await run.collect(recorded=recorded)
    recorder = _Recorder(target, prefix, keys, run, flush_every, flush_interval)
    recorder.start()
    try:
        results = await run.collect(recorded=recorded, on_result=recorder.record)
    except BaseException:
        await recorder.close(raise_errors=False)
        raise
    await recorder.close(raise_errors=True)
    return results


async def forget_durable(
    *,
    store: BaseStore | None = None,
    namespace: str | tuple[str, ...] | None = None,
    thread_id: str | None = None,
    node: str | None = None,
) -> int:
    """Delete records made by `map_durable`; return how many were deleted.

    Example (inside a node, once the results are safely in the state)::

        await forget_durable()                      # this task's records

    Outside a graph, name what to forget::

        await forget_durable(store=store, thread_id="job-42")               # every node
        await forget_durable(store=store, thread_id="job-42", node="fetch")
        await forget_durable(store=store, namespace="nightly")

    Args:
        store: The store; default: the graph's store.
        namespace: The ``namespace`` given to `map_durable`.
        thread_id: A thread whose records to delete (every node, or ``node`` only).
        node: With ``thread_id``: the node's path, as recorded (the node name; for
            a node in a subgraph, ``"subgraph|node"``).

    With none of ``namespace`` / ``thread_id``, the running task's records are deleted.

    Raises:
        DurableContextError: no store, or nothing names the records.
    """
    target = _resolve_store(store, "forget_durable")
    if namespace is not None or thread_id is None:
        if node is not None:
            raise ValueError("forget_durable(node=...) needs thread_id=...")
        prefix = _resolve_namespace(namespace, "forget_durable")
    else:
        prefix = (*NAMESPACE_ROOT, _label(str(thread_id)))
        if node is not None:
            prefix = (*prefix, _label(node))
    deleted = 0
    while True:
        # Deleting what was listed makes the next page start at offset 0 again.
        page = await target.asearch(prefix, limit=_DELETE_PAGE)
        if not page:
            return deleted
        await target.abatch([PutOp(item.namespace, item.key, None) for item in page])
        deleted += len(page)


class _Recorder:
    """Buffers finished results and writes them in batches from one background task."""

    __slots__ = (
        "_buffer",
        "_closing",
        "_failure",
        "_flush_every",
        "_interval",
        "_keys",
        "_namespace",
        "_run",
        "_store",
        "_taken",
        "_task",
        "_wake",
    )

    def __init__(
        self,
        store: BaseStore,
        namespace: tuple[str, ...],
        keys: list[str],
        run: Run,
        flush_every: int,
        flush_interval: float,
    ) -> None:
        self._store = store
        self._namespace = namespace
        self._keys = keys
        self._run = run
        self._flush_every = flush_every
        self._interval = flush_interval
        self._buffer: list[PutOp] = []
        self._closing = False
        self._failure: Exception | None = None
        self._wake = asyncio.Event()
        self._taken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flush_forever())

    def record(self, index: int, value: Any) -> Awaitable[object] | None:
        """Buffer one finished item; return something to wait on when too much is unwritten."""
        key = self._keys[index]
        if isinstance(value, BaseException):
            error_type = type(value)
            record: dict[str, Any] = {
                "error": {
                    "type": f"{error_type.__module__}.{error_type.__qualname__}",
                    # PostgreSQL cannot store NUL in text or jsonb; a message is
                    # for reading, so it is escaped rather than refused.
                    "message": str(value).replace("\x00", "\\x00"),
                }
            }
        else:
            problem = _json_problem(value, "result")
            if problem is not None:
                raise ResultNotSerializableError(key, problem)
            record = {"result": value}
        buffer = self._buffer
        buffer.append(PutOp(self._namespace, key, record, index=False))
        if len(buffer) >= self._flush_every:
            # A full batch: the worker waits until the writer has taken it, which
            # bounds what a crash can lose (docs/durable.md) even if fn never yields.
            self._wake.set()
            return self._taken.wait()
        return None

    async def close(self, *, raise_errors: bool) -> None:
        """Write what is buffered and stop, even if the caller is cancelled meanwhile."""
        self._closing = True
        self._wake.set()
        task = self._task
        assert task is not None
        interrupted = False
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                interrupted = True
        task.result()
        if interrupted:
            raise asyncio.CancelledError
        if raise_errors and self._failure is not None:
            raise self._failure

    async def _flush_forever(self) -> None:
        try:
            while True:
                if len(self._buffer) < self._flush_every and not self._closing:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self._interval):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                if self._buffer:
                    await self._write()
                elif self._closing:
                    return
        except Exception as error:
            # The store failed: stop the run (its error is raised by map_durable).
            self._failure = error
            self._run.abort(error)
            self._release_waiters()

    async def _write(self) -> None:
        batch, self._buffer = self._buffer, []
        self._release_waiters()
        await self._store.abatch(batch)

    def _release_waiters(self) -> None:
        # set() resolves every current waiter; clearing at once re-arms the event.
        self._taken.set()
        self._taken.clear()


def _item_keys(key: Callable[[Any], str], items: list[Any]) -> list[str]:
    keys: list[str] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        item_key = key(item)
        if type(item_key) is not str:
            raise TypeError(
                f"map_durable(key=...) must return a str; for item {index} it returned "
                f"{type(item_key).__name__} {item_key!r}"
            )
        if "\x00" in item_key:
            raise ValueError(
                f"map_durable(key=...) must return a str without NUL characters (\\x00), "
                f"which the PostgreSQL store cannot hold; for item {index} it returned "
                f"{item_key!r}"
            )
        seen = first_index.setdefault(item_key, index)
        if seen != index:
            raise DuplicateItemKeyError(item_key, seen, index)
        keys.append(item_key)
    return keys


async def _read_records(
    store: BaseStore, namespace: tuple[str, ...], keys: list[str], return_exceptions: bool
) -> dict[int, Any]:
    """The results recorded by earlier runs, by item index."""
    recorded: dict[int, Any] = {}
    for start in range(0, len(keys), _READ_CHUNK):
        chunk = keys[start : start + _READ_CHUNK]
        found = await store.abatch(
            [GetOp(namespace, item_key, refresh_ttl=False) for item_key in chunk]
        )
        for offset, item in enumerate(found):
            if isinstance(item, Item):
                value = item.value
                if "result" in value:
                    recorded[start + offset] = value["result"]
                elif return_exceptions and "error" in value:
                    error = value["error"]
                    recorded[start + offset] = RecordedItemError(
                        item.key, str(error.get("type")), str(error.get("message"))
                    )
    return recorded


def _resolve_store(store: BaseStore | None, caller: str) -> BaseStore:
    if store is None:
        try:
            store = get_store()
        except RuntimeError:
            store = None
    if store is None:
        raise DurableContextError(
            f"{caller}() needs a LangGraph store to record results in, and none was "
            "found: compile the graph with one (`builder.compile(checkpointer=..., "
            "store=AsyncSqliteStore(...))`; InMemoryStore, SQLite and PostgreSQL stores "
            f"work) or pass `{caller}(..., store=...)`"
        )
    if not isinstance(store, BaseStore):
        raise TypeError(
            f"{caller}(store=...) must be a langgraph BaseStore (InMemoryStore, "
            f"AsyncSqliteStore, AsyncPostgresStore, ...), got {type(store).__name__}"
        )
    return store


def _resolve_namespace(namespace: str | tuple[str, ...] | None, caller: str) -> tuple[str, ...]:
    if namespace is not None:
        if not isinstance(namespace, str | tuple | list):
            raise TypeError(
                f"{caller}(namespace=...) takes a str or a tuple of str, e.g. "
                f"('nightly', 'run-42'), got {type(namespace).__name__}"
            )
        labels = (namespace,) if isinstance(namespace, str) else tuple(namespace)
        for label in labels:
            if type(label) is not str or not label or "." in label or "\x00" in label:
                raise ValueError(
                    f"{caller}(namespace=...) takes a str or a tuple of str, each non-empty "
                    f"and without '.', got {namespace!r}"
                )
        if not labels:
            raise ValueError(f"{caller}(namespace=...) must not be empty")
        return (*NAMESPACE_ROOT, *labels)
    config = _current_config()
    if config is None:
        raise DurableContextError(
            f"{caller}() outside a LangGraph node needs `namespace=...` to know where "
            "its records are (inside a node, the thread id and the task are used)"
        )
    thread_id = config.get("configurable", {}).get("thread_id")
    if thread_id is None or thread_id == "":
        raise DurableContextError(
            f"{caller}() records results per thread, and this run has no thread id: "
            "invoke the graph with `config={'configurable': {'thread_id': ...}}` (and a "
            f"checkpointer, so the run can be resumed), or pass `{caller}(..., "
            "namespace=...)`"
        )
    node_path, task_id = _task(config)
    if not task_id:
        raise DurableContextError(
            f"{caller}() records results per LangGraph task, and this call is not inside "
            "one (the config has no task id in its checkpoint_ns): call it from a node "
            f"or a @task, or pass `{caller}(..., namespace=...)`"
        )
    return (*NAMESPACE_ROOT, _label(str(thread_id)), _label(node_path), _label(task_id))


def _current_config() -> RunnableConfig | None:
    try:
        return get_config()
    except RuntimeError:
        return None


def _task(config: RunnableConfig) -> tuple[str, str]:
    """The node path and the task id of the running task, from its checkpoint namespace.

    ``"fan:<task id>"`` gives ``("fan", "<task id>")``; inside a subgraph,
    ``"sub:<id>|fan:<task id>"`` gives ``("sub|fan", "<task id>")``. LangGraph derives
    a task id from the step's checkpoint (and a ``Send``'s position), so it is the same
    when that step is resumed or the task retried, and new for every other task.
    """
    checkpoint_ns = str(config.get("configurable", {}).get("checkpoint_ns") or "")
    parts = [part.partition(":") for part in checkpoint_ns.split("|") if part]
    if not parts:
        return "", ""
    return "|".join(name for name, _, _ in parts), parts[-1][2]


def _label(text: str) -> str:
    """``text`` as one namespace label: store labels may not contain "." or be empty."""
    escaped = text.replace("%", "%25").replace(".", "%2E").replace("\x00", "%00")
    return escaped or "%"


def _json_problem(value: Any, path: str) -> str | None:
    """What keeps ``value`` from being stored as JSON by every store, or None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return f"{path} is a str with a NUL character (\\x00), {_NUL}"
        return None
    if isinstance(value, int):
        if value in _INT_RANGE:
            return None
        return f"{path} is an int too large for the store ({value})"
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{path} is {value!r}, which JSON cannot hold"
    if isinstance(value, Mapping):
        for name, element in value.items():
            if not isinstance(name, str):
                return f"{path} has a {type(name).__name__} key {name!r} (JSON keys are str)"
            if "\x00" in name:
                return f"{path} has a key {name!r} with a NUL character (\\x00), {_NUL}"
            problem = _json_problem(element, f"{path}[{name!r}]")
            if problem is not None:
                return problem
        return None
    if isinstance(value, list | tuple):
        for position, element in enumerate(value):
            problem = _json_problem(element, f"{path}[{position}]")
            if problem is not None:
                return problem
        return None
    return f"{path} is a {type(value).__name__}"


def _check_flush_every(flush_every: int) -> None:
    positive_integer(
        "map_durable",
        "flush_every",
        flush_every,
        hint="; it is how many results are written to the store in one batch",
    )


def _check_flush_interval(flush_interval: float) -> None:
    seconds("map_durable", "flush_interval", flush_interval)
