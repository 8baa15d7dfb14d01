"""Gives each public name its public home, as httpx does.

A class or function defined in a private module (``act_operator_lib.limits._rate``)
and listed in a public package's ``__all__`` gets that package as its ``__module__``,
so reprs, tracebacks, the docs and pickles name ``act_operator_lib.limits.RateLimiter``.
A name whose ``__module__`` is already public keeps it: its home is where it was
defined, and the package root only re-exports it::

    publish(__name__, globals())   # last line of a public package's __init__
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["is_private", "publish"]


def is_private(module: str) -> bool:
    """Whether a dotted module path has a ``_``-prefixed part (``__main__`` aside)."""
    return any(part.startswith("_") and not part.endswith("__") for part in module.split("."))


def publish(module: str, namespace: dict[str, Any]) -> None:
    """Make ``module`` the ``__module__`` of the ``__all__`` names defined in private modules."""
    for name in namespace["__all__"]:
        value = namespace[name]
        if (inspect.isclass(value) or inspect.isfunction(value)) and is_private(value.__module__):
            value.__module__ = module
