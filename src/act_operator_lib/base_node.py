"""Base classes for LangGraph nodes: `BaseNode` (sync) and `AsyncBaseNode` (async).

A drop-in for Act Operator's scaffolded ``casts/base_node.py``: same names, same
``execute`` signatures, same helpers (``log``, ``get_thread_id``, ``get_tags``).
Add an instance to a graph and LangGraph passes ``config`` and ``runtime``; call it
directly in a test with only the state::

    class Greet(AsyncBaseNode):
        async def execute(self, state):
            return {"greeting": f"hello {state['name']}"}

    builder.add_node("greet", Greet())
    await Greet()({"name": "Ada"})        # -> {"greeting": "hello Ada"}

``execute`` is checked when the class is defined (``async def`` on AsyncBaseNode,
``def`` on BaseNode, parameters ``state`` then optionally ``config`` and/or
``runtime``) and its result on every call (a dict, a ``Command``, a list of
``Command``, or ``None``). A forgotten ``await`` is reported as `MissingAwaitError`
instead of reaching the graph state as a coroutine object.
"""

from __future__ import annotations

import asyncio
import logging
import types
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Optional

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import Command

from act_operator_lib import streaming
from act_operator_lib._errors import MissingAwaitError, NodeResultError
from act_operator_lib._signature import ACCEPTS_CONFIG, ACCEPTS_RUNTIME, check_execute

__all__ = ["AsyncBaseNode", "BaseNode"]

LOGGER = logging.getLogger("act_operator_lib.node")

_NODE_OPTIONS = ("name", "verbose")
_AWAITABLES = (types.CoroutineType, asyncio.Future)


class _Node(ABC):
    """What `BaseNode` and `AsyncBaseNode` share; not meant to be subclassed directly."""

    name: str
    """The node's name: the class name unless ``name=`` is given."""
    verbose: bool = False
    """Whether `log` writes anything."""

    _accepts: ClassVar[int] = 0
    _asynchronous: ClassVar[bool]

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in vars(cls):
            cls.name = cls.__name__
        if cls.__module__ == __name__ or abstract or _declares_other_abstract_methods(cls):
            return
        base = "AsyncBaseNode" if cls._asynchronous else "BaseNode"
        cls._accepts = check_execute(cls, asynchronous=cls._asynchronous, base_name=base)

    def __init__(self, **kwargs: Any) -> None:
        """Configure the node.

        Args:
            name: The node's name in logs and errors (default: the class name).
            verbose: Whether `log` writes debug records (default False).

        Subclasses take their own options and pass the rest on, as the guide does::

            def __init__(self, pool_size=10, **kwargs):
                super().__init__(**kwargs)
        """
        name = kwargs.pop("name", None)
        verbose = kwargs.pop("verbose", False)
        if kwargs:
            unexpected = ", ".join(sorted(kwargs))
            raise TypeError(
                f"{type(self).__qualname__}() got unexpected keyword argument(s): "
                f"{unexpected}. Node options are {', '.join(_NODE_OPTIONS)}; a subclass "
                "option must be taken by the subclass's __init__ before it calls "
                "super().__init__(**kwargs)."
            )
        if name is not None:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"{type(self).__qualname__}(name=...) must be a non-empty string, "
                    f"got {name!r}."
                )
            self.name = name
        else:
            self.name = type(self).name
        if not isinstance(verbose, bool):
            raise TypeError(
                f"{type(self).__qualname__}(verbose=...) must be True or False, got {verbose!r}."
            )
        self.verbose = verbose

    def log(self, message: str, **context: Any) -> None:
        """Log ``message`` at DEBUG level, with ``context``, when the node is verbose.

        Example::

            self.log("fetched", url=url, status=200)
        """
        if not self.verbose:
            return
        LOGGER.debug(
            "[%s] %s%s",
            self.name,
            message,
            "".join(f" {key}={value!r}" for key, value in context.items()),
            extra={"node": self.name, "context": context},
        )

    @staticmethod
    def get_thread_id(config: Mapping[str, Any] | None = None) -> str | None:
        """The ``thread_id`` of the run, from ``config["configurable"]``, or None."""
        if not config:
            return None
        configurable = config.get("configurable")
        if not configurable:
            return None
        thread_id = configurable.get("thread_id")
        return None if thread_id is None else str(thread_id)

    @staticmethod
    def get_tags(config: Mapping[str, Any] | None = None) -> list[str]:
        """The run's tags from ``config``, or an empty list."""
        if not config:
            return []
        return list(config.get("tags") or [])

    @staticmethod
    def emit(data: Any) -> None:
        """Write ``data`` to LangGraph's ``custom`` stream (see `streaming.emit`)."""
        streaming.emit(data)

    @staticmethod
    def heartbeat() -> None:
        """Record progress for the node's idle timeout (see `streaming.heartbeat`)."""
        streaming.heartbeat()

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}(name={self.name!r})"

    def _log_call(self, event: str, config: RunnableConfig | None) -> None:
        self.log(event, thread_id=self.get_thread_id(config))

    def _checked(self, result: Any) -> Any:
        """Return ``result`` if LangGraph can merge it, else raise naming the node."""
        if type(result) is dict:
            for value in result.values():
                if isinstance(value, _AWAITABLES):
                    raise _missing_await(self.name, result)
            return result
        if result is None or isinstance(result, Command):
            return result
        return self._checked_other(result)

    def _checked_other(self, result: Any) -> Any:
        if isinstance(result, dict):
            for value in result.values():
                if isinstance(value, _AWAITABLES):
                    raise _missing_await(self.name, result)
            return result
        if isinstance(result, _AWAITABLES):
            raise _missing_await(self.name, result)
        if (
            isinstance(result, list | tuple)
            and result
            and all(isinstance(item, Command) for item in result)
        ):
            return result
        raise NodeResultError(
            f"node {self.name!r}: execute() must return a dict of state updates, a "
            f"Command, a list of Commands or None; got {type(result).__name__}. "
            "Return a dict of the fields you changed, e.g. {'result': value}."
        )


def _declares_other_abstract_methods(cls: type) -> bool:
    for klass in cls.__mro__:
        for attribute, value in vars(klass).items():
            if attribute != "execute" and getattr(value, "__isabstractmethod__", False):
                overridden = getattr(cls, attribute, None)
                if getattr(overridden, "__isabstractmethod__", False):
                    return True
    return False


def _missing_await(node: str, result: Any) -> MissingAwaitError:
    """Close the stray coroutine(s) in ``result`` and build the error naming them."""
    if isinstance(result, dict):
        keys = [key for key, value in result.items() if isinstance(value, _AWAITABLES)]
        for key in keys:
            _discard(result[key])
        where = f"the value of {', '.join(repr(key) for key in keys)} is"
    else:
        _discard(result)
        where = "it returned"
    return MissingAwaitError(
        f"node {node!r}: {where} an un-awaited coroutine; did you forget await? "
        "Write `result = await operation()` and return the result."
    )


def _discard(awaitable: Any) -> None:
    if isinstance(awaitable, types.CoroutineType):
        awaitable.close()
    else:
        awaitable.cancel()


class BaseNode(_Node):
    """Base class for synchronous nodes: CPU work, simple transforms, sync libraries.

    Example::

        class Uppercase(BaseNode):
            def execute(self, state):
                return {"text": state["text"].upper()}

    LangGraph runs a sync node in a worker thread under ``ainvoke``, so it never
    blocks the event loop.
    """

    _asynchronous = False

    @abstractmethod
    def execute(self, state: Any) -> Any:
        """Process ``state`` and return a dict of updates; may also take config, runtime."""

    def __call__(
        self,
        state: Any,
        config: Optional[RunnableConfig] = None,  # noqa: UP045 - LangGraph matches this annotation
        runtime: Runtime[Any] | None = None,
    ) -> Any:
        """Run ``execute`` with the arguments it declares and check its result."""
        if self.verbose:
            self._log_call("Executing", config)
        accepts = self._accepts
        if accepts == 0:
            result = self.execute(state)
        elif accepts == ACCEPTS_CONFIG:
            result = self.execute(state, config=config)
        elif accepts == ACCEPTS_RUNTIME:
            result = self.execute(state, runtime=streaming.to_node_runtime(runtime))
        else:
            result = self.execute(
                state, config=config, runtime=streaming.to_node_runtime(runtime)
            )
        result = self._checked(result)
        if self.verbose:
            self._log_call("Completed", config)
        return result


class AsyncBaseNode(_Node):
    """Base class for asynchronous nodes: HTTP and database calls, concurrent I/O.

    Example::

        class Fetch(AsyncBaseNode):
            async def execute(self, state):
                data = await fetch_json(state["url"])
                return {"data": data}
    """

    _asynchronous = True

    @abstractmethod
    async def execute(self, state: Any) -> Any:
        """Process ``state`` and return a dict of updates; may also take config, runtime."""

    async def __call__(
        self,
        state: Any,
        config: Optional[RunnableConfig] = None,  # noqa: UP045 - LangGraph matches this annotation
        runtime: Runtime[Any] | None = None,
    ) -> Any:
        """Await ``execute`` with the arguments it declares and check its result."""
        if self.verbose:
            self._log_call("Executing", config)
        accepts = self._accepts
        if accepts == 0:
            result = await self.execute(state)
        elif accepts == ACCEPTS_CONFIG:
            result = await self.execute(state, config=config)
        elif accepts == ACCEPTS_RUNTIME:
            result = await self.execute(state, runtime=streaming.to_node_runtime(runtime))
        else:
            result = await self.execute(
                state, config=config, runtime=streaming.to_node_runtime(runtime)
            )
        result = self._checked(result)
        if self.verbose:
            self._log_call("Completed", config)
        return result
