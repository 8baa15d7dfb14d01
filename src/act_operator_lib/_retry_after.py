"""How long a failed call asks to be left alone: `retry_after(error)`.

Owned here so the retry engine (node, item and request level) and the limiters'
shared cooldown read a server's wish the same way.
"""

from __future__ import annotations

import math
from datetime import timedelta

__all__ = ["retry_after"]


def retry_after(error: BaseException) -> float | None:
    """Seconds ``error`` asks to wait before the next attempt, or None if it does not say.

    Example::

        try:
            await call_api()
        except ApiError as error:
            delay = retry_after(error)   # e.g. 2.0 from `retry_after = 2`
    """
    value = getattr(error, "retry_after", None)
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not (value >= 0 and math.isfinite(value)):
        return None
    return float(value)
