"""Checks a node class's ``execute`` when the class is defined.

The result is a small bitmask (`ACCEPTS_CONFIG`, `ACCEPTS_RUNTIME`) stored on the
class, so a call never inspects a signature: that is what keeps the per-call cost
of the base classes near a plain function call.
"""

from __future__ import annotations

import inspect
from typing import Any

from act_operator_lib._errors import NodeDefinitionError

__all__ = ["ACCEPTS_CONFIG", "ACCEPTS_RUNTIME", "check_execute"]

ACCEPTS_CONFIG = 1
ACCEPTS_RUNTIME = 2

_OPTIONAL_PARAMETERS = {"config": ACCEPTS_CONFIG, "runtime": ACCEPTS_RUNTIME}
_SIGNATURES = (
    "execute(self, state), execute(self, state, config), "
    "execute(self, state, runtime) or execute(self, state, config, runtime)"
)


def check_execute(cls: type, *, asynchronous: bool, base_name: str) -> int:
    """Validate ``cls.execute`` and return which optional arguments it takes.

    Raises:
        NodeDefinitionError: naming the class, what is wrong and the fix.
    """
    name = cls.__qualname__
    keyword = "async def" if asynchronous else "def"
    try:
        execute = inspect.getattr_static(cls, "execute")
    except AttributeError:  # pragma: no cover - the base classes always define one
        execute = None
    if execute is None or getattr(execute, "__isabstractmethod__", False):
        raise NodeDefinitionError(
            f"{name} does not implement execute(). Add `{keyword} execute(self, state)` "
            f"returning a dict of state updates; for a base class meant to be subclassed, "
            f"declare it with `class {name}({base_name}, abstract=True)`."
        )
    if isinstance(execute, staticmethod | classmethod):
        kind = type(execute).__name__
        raise NodeDefinitionError(
            f"{name}.execute() is a {kind}; it must be a plain instance method: "
            f"`{keyword} execute(self, state)`."
        )
    if not inspect.isfunction(execute):
        raise NodeDefinitionError(
            f"{name}.execute must be a method defined with `{keyword}`, "
            f"got {type(execute).__name__}."
        )
    _check_kind(name, execute, asynchronous=asynchronous)
    return _check_parameters(name, execute)


def _check_kind(name: str, execute: Any, *, asynchronous: bool) -> None:
    if inspect.isasyncgenfunction(execute) or inspect.isgeneratorfunction(execute):
        raise NodeDefinitionError(
            f"{name}.execute() is a generator (it uses `yield`). A node returns one dict "
            "of updates: collect the items and return them, and send progress with "
            "self.emit(item) or runtime.stream.send(item)."
        )
    is_async = inspect.iscoroutinefunction(execute)
    if asynchronous and not is_async:
        raise NodeDefinitionError(
            f"{name}.execute() must be defined with `async def` because {name} derives "
            "from AsyncBaseNode; for blocking code derive from BaseNode instead."
        )
    if not asynchronous and is_async:
        raise NodeDefinitionError(
            f"{name}.execute() is `async def` but {name} derives from BaseNode, which "
            "calls it synchronously; derive from AsyncBaseNode instead."
        )


def _check_parameters(name: str, execute: Any) -> int:
    parameters = list(inspect.signature(execute).parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise NodeDefinitionError(
            f"{name}.execute() must take `self` first; valid forms: {_SIGNATURES}."
        )
    rest = parameters[1:]
    if not rest or rest[0].name != "state" or rest[0].kind is inspect.Parameter.KEYWORD_ONLY:
        got = rest[0].name if rest else "nothing"
        raise NodeDefinitionError(
            f"{name}.execute() must take `state` as its first argument after self "
            f"(got {got}); valid forms: {_SIGNATURES}."
        )
    accepts = 0
    for parameter in rest[1:]:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            # The older Act scaffold documented `execute(self, state, **kwargs)`:
            # such a method receives both config and runtime as keywords.
            accepts |= ACCEPTS_CONFIG | ACCEPTS_RUNTIME
            continue
        flag = _OPTIONAL_PARAMETERS.get(parameter.name)
        if flag is None or parameter.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            raise NodeDefinitionError(
                f"{name}.execute() has an unsupported parameter {parameter}; besides "
                f"`state` it may only take `config` and/or `runtime`: {_SIGNATURES}. "
                "Pass other settings to __init__ and keep them on self."
            )
        accepts |= flag
    return accepts
