"""Resource descriptors: declared once on a class, opened once per event loop.

The implementation behind `act_operator_lib.resources`. A `Resource` is a class
attribute; reading it on an instance gives that instance's `BoundResource`, which
keeps one opened value per running event loop and closes it with ``aclose()`` or,
at the latest, when the loop shuts down (``asyncio.run`` and ``asyncio.Runner`` call
``loop.shutdown_asyncgens()`` before closing the loop, and that is where it hooks in).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

from act_operator_lib._errors import ResourceClosedError, ResourceUnavailableError

__all__ = [
    "BoundResource",
    "Resource",
    "ResourceStatistics",
    "aclose_resources",
]

T = TypeVar("T")

_STATE_ATTRIBUTE = "_act_operator_resources"
_MISSING: Any = object()


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceStatistics:
    """A snapshot of one instance's resource, from `BoundResource.statistics`."""

    opened: int
    """How many values were opened so far, over every event loop."""
    closed: int
    """How many of them were closed so far."""
    loops: int
    """On how many event loops a value is open (or opening) right now."""


class Resource(ABC, Generic[T]):
    """A pooled resource declared as a class attribute, e.g. an HTTP session.

    Subclass it to pool anything that is expensive to open::

        class ClientResource(Resource[Client]):
            async def open(self) -> Client:
                return await Client.connect()

            async def close(self, value: Client) -> None:
                await value.aclose()

        class Lookup(AsyncBaseNode):
            client = ClientResource()

            async def execute(self, state):
                client = await self.client()
                ...

    ``open`` runs once per event loop, on first use; ``close`` runs on ``aclose()``
    or when that loop shuts down.
    """

    name: str = "resource"
    """The attribute name the resource is declared under."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @abstractmethod
    async def open(self) -> T:
        """Open a new value; called once per event loop, on the first use there."""

    @abstractmethod
    async def close(self, value: T) -> None:
        """Close ``value``, which `open` returned on the running loop."""

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, instance: object, owner: type[Any]) -> BoundResource[T]: ...

    def __get__(self, instance: object | None, owner: type[Any]) -> Self | BoundResource[T]:
        if instance is None:
            return self
        try:
            state: dict[str, BoundResource[Any]] = instance.__dict__.setdefault(
                _STATE_ATTRIBUTE, {}
            )
        except AttributeError:
            raise TypeError(
                f"{type(instance).__qualname__}.{self.name}: a Resource needs instances "
                "with a __dict__; remove __slots__ or add '__dict__' to them."
            ) from None
        bound = state.get(self.name)
        if bound is None:
            bound = state.setdefault(
                self.name, BoundResource(self, _label(instance, self.name), self.name)
            )
        return bound

    def __set__(self, instance: object, value: object) -> None:
        raise AttributeError(
            f"{type(instance).__qualname__}.{self.name} is a declared resource and cannot "
            "be assigned; declare another Resource on the class instead."
        )


class BoundResource(Generic[T]):
    """A resource as seen from one instance: ``await node.http()`` gives its value.

    Example::

        session = await self.http()          # or:
        async with self.http as session:     # same value; the pool stays open
            ...

    The value is opened on first use in the running event loop and reused by every
    later use on that loop; another loop gets its own value. ``aclose()`` closes the
    values on every loop; the next use opens a fresh one. A use on a loop where
    ``aclose()`` is running raises `ResourceClosedError`.
    """

    __slots__ = ("_attribute", "_closed", "_label", "_lock", "_opened", "_resource", "_slots")

    def __init__(self, resource: Resource[T], label: str, attribute: str = "resource") -> None:
        if not isinstance(resource, Resource):
            raise TypeError(
                "BoundResource(resource=...) must be a Resource (HTTPResource, "
                f"SQLiteResource, ...), got {type(resource).__name__}; declare resources "
                "as class attributes of a node instead of binding them by hand"
            )
        self._resource = resource
        self._label = label
        self._attribute = attribute
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slot[T]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._opened = 0
        self._closed = 0

    async def __call__(self) -> T:
        """The value for the running event loop, opened on first use."""
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is not None and slot.closing is None and slot.value is not _MISSING:
            return slot.value
        return await self._slow_get(loop, slot)

    def __getattr__(self, name: str) -> Any:
        # Only reached for a missing attribute: typically the value's method called on
        # the resource itself (``self.http.get(url)``). Private names (and those of
        # copy/pickle probes) keep the plain error, and never recurse on a missing slot.
        if name.startswith("_"):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}", name=name, obj=self
            )
        attribute = self._attribute
        raise AttributeError(
            f"{self._label} has no attribute {name!r}: it is the pooled resource, not its "
            f"value. Get the value first: `value = await self.{attribute}()` or "
            f"`async with self.{attribute} as value:`, then `value.{name}(...)`",
            name=name,
            obj=self,
        )

    async def __aenter__(self) -> T:
        return await self()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def statistics(self) -> ResourceStatistics:
        """How many values were opened and closed, and on how many loops one is open."""
        return ResourceStatistics(opened=self._opened, closed=self._closed, loops=len(self._slots))

    async def aclose(self) -> None:
        """Close the value on every event loop; idempotent.

        The value of the running loop is closed here; one on another running loop is
        closed on that loop (this waits for it); one on a closed loop is forgotten;
        one on a loop that is not running now is left to that loop's shutdown.
        """
        current = asyncio.get_running_loop()
        with self._lock:
            slots = list(self._slots.items())
        waits: list[Awaitable[None]] = []
        for loop, slot in slots:
            if loop is current:
                waits.append(self._close_slot(slot))
            elif loop.is_closed():
                self._forget(slot)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(self._close_slot(slot), loop)
                waits.append(asyncio.wrap_future(future))
        errors = [
            outcome
            for outcome in await asyncio.gather(*waits, return_exceptions=True)
            if isinstance(outcome, BaseException)
        ]
        if errors:
            raise errors[0]

    def __repr__(self) -> str:
        return f"<BoundResource {self._label}: {self._resource!r}>"

    async def _slow_get(self, loop: asyncio.AbstractEventLoop, slot: _Slot[T] | None) -> T:
        if slot is None:
            with self._lock:
                for other in [other for other in self._slots if other.is_closed()]:
                    del self._slots[other]
                slot = self._slots.get(loop)
                if slot is None:
                    slot = _Slot(self, loop)
                    self._slots[loop] = slot
                    created = True
                else:
                    created = False
            if created:
                slot.opening = loop.create_task(self._open(slot), name=f"open {self._label}")
                slot.opening.add_done_callback(functools.partial(self._open_finished, slot))
                await _watch(loop, slot)
        opening = slot.opening
        assert opening is not None
        if slot.closing is None and slot.value is _MISSING:
            # Not a shield: aclose() cancels this opening, and that must reach the
            # waiters as ResourceClosedError, not as a cancellation of their own.
            await asyncio.wait([opening])
        if slot.closing is not None:
            # Also after the wait: a close may have started (and even finished) between
            # the opening's end and this task resuming; its value is not handed out.
            raise ResourceClosedError(
                f"{self._label} is being closed by aclose() on this event loop; a use that "
                "races with the close is refused. Await the close, then use it again to "
                "get a fresh one."
            )
        if slot.value is not _MISSING:
            return slot.value
        return opening.result()

    async def _open(self, slot: _Slot[T]) -> T:
        try:
            value = await self._resource.open()
        except ResourceUnavailableError as error:
            raise type(error)(f"{self._label}: {error}") from error.__cause__
        slot.value = value
        self._opened += 1
        return value

    def _open_finished(self, slot: _Slot[T], task: asyncio.Task[T]) -> None:
        if (task.cancelled() or task.exception() is not None) and slot.closing is None:
            self._forget(slot)

    async def _close_slot(self, slot: _Slot[T]) -> None:
        if slot.closing is None:
            slot.closing = asyncio.get_running_loop().create_task(
                self._close_now(slot), name=f"close {self._label}"
            )
        await asyncio.shield(slot.closing)

    async def _close_now(self, slot: _Slot[T]) -> None:
        try:
            opening = slot.opening
            if opening is not None and not opening.done():
                opening.cancel()
                await asyncio.wait([opening])
            if slot.value is not _MISSING:
                value, slot.value = slot.value, _MISSING
                await self._resource.close(value)
                self._closed += 1
        finally:
            self._forget(slot)

    def _forget(self, slot: _Slot[T]) -> None:
        with self._lock:
            if self._slots.get(slot.loop) is slot:
                del self._slots[slot.loop]
        watcher = _WATCHERS.get(slot.loop)
        if watcher is not None:
            watcher.slots.pop(slot, None)


class _Slot(Generic[T]):
    """The value of one `BoundResource` on one event loop."""

    __slots__ = ("__weakref__", "bound", "closing", "loop", "opening", "value")

    def __init__(self, bound: BoundResource[T], loop: asyncio.AbstractEventLoop) -> None:
        self.bound = bound
        self.loop = loop
        self.value: T = _MISSING
        self.opening: asyncio.Task[T] | None = None
        self.closing: asyncio.Task[None] | None = None


class _LoopWatcher:
    """Closes the resources still open on a loop when the loop shuts down.

    It is an async generator suspended at its ``yield``: the loop tracks it, and
    ``loop.shutdown_asyncgens()`` (run by ``asyncio.run`` / ``asyncio.Runner`` after
    the last task, before ``loop.close()``) resumes its ``finally`` on the loop.
    """

    __slots__ = ("generator", "slots")

    def __init__(self) -> None:
        self.slots: dict[_Slot[Any], None] = {}
        self.generator: AsyncIterator[None] | None = None

    async def watch(self, loop: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
        try:
            yield
        finally:
            with _WATCHERS_LOCK:
                if _WATCHERS.get(loop) is self:
                    del _WATCHERS[loop]
            await self.close_all(loop)

    async def close_all(self, loop: asyncio.AbstractEventLoop) -> None:
        for slot in reversed(list(self.slots)):
            try:
                await slot.bound._close_slot(slot)
            except Exception as error:  # one failure must not skip the rest
                loop.call_exception_handler(
                    {"message": f"closing {slot.bound._label} failed", "exception": error}
                )
        self.slots.clear()


_WATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatcher] = (
    weakref.WeakKeyDictionary()
)
_WATCHERS_LOCK = threading.Lock()


async def _watch(loop: asyncio.AbstractEventLoop, slot: _Slot[Any]) -> None:
    with _WATCHERS_LOCK:
        watcher = _WATCHERS.get(loop)
        new = watcher is None
        if watcher is None:
            watcher = _WATCHERS[loop] = _LoopWatcher()
    watcher.slots[slot] = None
    if new:
        generator = watcher.watch(loop)
        watcher.generator = generator
        await anext(generator)


def _label(instance: object, attribute: str) -> str:
    name = getattr(instance, "name", None)
    owner = name if isinstance(name, str) and name else type(instance).__qualname__
    return f"resource {attribute!r} of {owner!r}"


async def aclose_resources(owner: object) -> None:
    """Close every resource ``owner`` has opened (what ``node.aclose()`` does).

    Example::

        await aclose_resources(my_node)
    """
    state: dict[str, BoundResource[Any]] = getattr(owner, "__dict__", {}).get(_STATE_ATTRIBUTE, {})
    errors = []
    for bound in list(state.values()):
        try:
            await bound.aclose()
        except Exception as error:  # close the others, then report
            errors.append(error)
    if errors:
        raise errors[0]
