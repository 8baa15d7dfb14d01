"""The observable state of a limiter (``limiter.statistics()``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LimiterStatistics"]


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of a limiter, returned by ``statistics()``.

    Example::

        stats = limiter.statistics()
        print(stats.waiting, stats.total_wait)
    """

    in_use: int
    """Permits held right now (concurrency limiters); units in the current window (rate)."""
    waiting: int
    """Callers blocked in ``acquire`` right now."""
    granted: int
    """Total grants since the limiter was created (units, for a rate limiter)."""
    total_wait: float
    """Seconds all callers have spent waiting, summed."""
    pauses: int = 0
    """Calls of ``pause()`` so far (rate limiters)."""
    paused_for: float = 0.0
    """Seconds the current pause has left; 0.0 when not paused (rate limiters)."""
