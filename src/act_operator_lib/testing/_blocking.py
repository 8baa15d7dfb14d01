"""Fail a test when async code makes a blocking call on the event loop (via blockbuster)."""

from __future__ import annotations

import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from types import ModuleType, TracebackType
from typing import Any, TypeVar

from act_operator_lib._errors import BlockingCallError

__all__ = ["BlockingCallError", "assert_no_blocking_calls"]

_F = TypeVar("_F", bound=Callable[..., Any])

# blockbuster patches functions process-wide, so only one detector may be active.
_ACTIVE = threading.Lock()


class assert_no_blocking_calls:
    """Raise `BlockingCallError` naming each blocking call made on the event loop.

    A context manager, or a decorator for sync and async functions. Calls made in
    worker threads (``asyncio.to_thread``, LangGraph's sync nodes) are allowed. A
    call is reported even if the node caught blockbuster's error and carried on.

    Example::

        async def test_fetch_does_not_block():
            with assert_no_blocking_calls():
                await run_node(Fetch(), {"url": url})

    Args:
        modules: Only report calls made from these modules (names or module
            objects); default: calls from anywhere.
        excluded_modules: Sub-modules of ``modules`` not to report from.
    """

    __slots__ = ("_blockbuster", "_calls", "_excluded_modules", "_modules", "_restore")

    def __init__(
        self,
        modules: str | Sequence[Any] | None = None,
        *,
        excluded_modules: Sequence[Any] | None = None,
    ) -> None:
        for name, value in (("modules", modules), ("excluded_modules", excluded_modules)):
            if not _is_module_list(value):
                raise TypeError(
                    f"assert_no_blocking_calls({name}=...) takes a module name, a module, or "
                    f"a list of them, e.g. ['my_cast'], got {type(value).__name__}"
                )
        self._modules = modules
        self._excluded_modules = excluded_modules
        self._blockbuster: Any = None
        self._calls: list[str] = []
        self._restore: Any = None

    def __enter__(self) -> assert_no_blocking_calls:
        try:
            from blockbuster import BlockBuster, BlockingError
            from blockbuster import blockbuster as blockbuster_module
        except ImportError as error:
            raise ImportError(
                "assert_no_blocking_calls() needs blockbuster: "
                "pip install 'act-operator-lib[testing]'"
            ) from error
        if not _ACTIVE.acquire(blocking=False):
            raise RuntimeError(
                "assert_no_blocking_calls() is already active; blockbuster patches "
                "process-wide, so don't nest it or run two at once."
            )
        calls = self._calls
        calls.clear()

        class RecordedBlockingError(BlockingError):
            def __init__(self, func: str) -> None:
                calls.append(func)
                super().__init__(func)

        # blockbuster raises by its module-global name: swap in a subclass that also
        # records, so a call the node swallowed with `except Exception` still fails.
        module: Any = blockbuster_module
        self._restore = module.BlockingError
        module.BlockingError = RecordedBlockingError
        try:
            self._blockbuster = BlockBuster(self._modules, excluded_modules=self._excluded_modules)
            self._blockbuster.activate()
        except BaseException:
            module.BlockingError = self._restore
            _ACTIVE.release()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        from blockbuster import blockbuster as blockbuster_module

        module: Any = blockbuster_module
        try:
            self._blockbuster.deactivate()
        finally:
            module.BlockingError = self._restore
            self._blockbuster = None
            _ACTIVE.release()
        if self._calls:
            calls = list(dict.fromkeys(self._calls))
            raise BlockingCallError(calls) from exc

    def __call__(self, function: _F) -> _F:
        """Use as a decorator: the whole function runs under the assertion."""
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with type(self)(self._modules, excluded_modules=self._excluded_modules):
                    return await function(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)(self._modules, excluded_modules=self._excluded_modules):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"assert_no_blocking_calls(modules={self._modules!r})"


def _is_module_list(value: object) -> bool:
    if value is None or isinstance(value, str | ModuleType):
        return True
    return isinstance(value, Sequence) and all(
        isinstance(module, str | ModuleType) for module in value
    )
