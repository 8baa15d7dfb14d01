"""Optional dependencies: import one, or fail with the command that installs it.

The core needs only langgraph; each integration's package comes with an extra::

    aiohttp = require("aiohttp", feature="HTTPResource", extra="http")
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, *, feature: str, extra: str) -> ModuleType:
    """Import ``module``; if it is missing, raise an ImportError naming ``feature`` and the fix.

    Called where the feature is declared (e.g. ``HTTPResource()`` as a class
    attribute), so a missing extra fails when the program starts, not on its first
    request.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".", 1)[0]
        raise ImportError(
            f"{feature} needs {package}, which is not installed: "
            f"pip install 'act-operator-lib[{extra}]'"
        ) from error
