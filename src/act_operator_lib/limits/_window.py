"""The accounting of one rate: when the next grant may go, and what the window holds.

`RateLimiter` has one `Window`, `MultiRateLimiter` one per rate. A window knows
nothing of waiters, loops or threads: the limiter calls it under its lock with the
time of its running loop.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["Entry", "Window"]

Entry = list[float]
"""One grant in a window's log: ``[time, units, in_log]`` (``in_log`` is 1.0 or 0.0).

A list, so a reservation can settle the grant's units in place while it is logged.
"""

_ENTRIES_PER_WINDOW = 10_000
"""Grants closer than ``per / _ENTRIES_PER_WINDOW`` share one log entry."""
_MINIMUM_SHARE = 1 / 64
"""Adaptive mode never slows a rate below this share of the configured one."""
_RECOVERY_PER_WINDOW = 1 / 10
"""Adaptive mode gives back this share of the configured rate per quiet window."""


class Window:
    """One rate: a GCRA schedule plus a log of the grants of the last ``per`` seconds.

    The schedule (virtual scheduling) spaces grants ``per / rate`` apart per unit and
    lets ``burst`` units go at once after a quiet spell; the log makes the window
    bound exact even when callers resume late: with a grant of ``units`` more, the
    units granted in the last ``per`` seconds stay within ``capacity``. One log entry
    per grant, whatever its units, so memory follows grants, not units; grants less
    than ``per / 10,000`` apart share an entry stamped with the latest of them (the
    units then leave the window a little late, never early), so a window holds at
    most about 10,000 entries however busy it is.
    """

    __slots__ = (
        "adaptive",
        "bucket_start",
        "bucket_width",
        "burst",
        "capacity",
        "configured_rate",
        "decreased_at",
        "interval",
        "log",
        "logged",
        "paused_until",
        "per",
        "rate",
        "schedule",
        "share",
        "share_at_decrease",
        "sliding",
        "tolerance",
    )

    def __init__(
        self, rate: float, per: float, burst: int, adaptive: bool = False, sliding: bool = False
    ) -> None:
        self.configured_rate = rate
        self.per = per
        self.burst = burst
        self.adaptive = adaptive
        self.share = 1.0
        self.share_at_decrease = 1.0
        self.decreased_at = -math.inf
        self.schedule = -math.inf
        self.paused_until = -math.inf
        self.log: deque[Entry] = deque()
        self.logged = 0.0
        self.bucket_start = -math.inf
        self.bucket_width = per / _ENTRIES_PER_WINDOW
        self.rate = rate
        self.interval = per / rate
        self.tolerance = (burst - 1) * self.interval
        # `RateLimiter`'s bound lets a burst come on top of a window's rate; a
        # sliding window (`Rate`) holds ``rate`` units whatever the burst.
        self.sliding = sliding
        self.capacity = math.ceil(rate) + (0 if sliding else burst - 1)

    def ready_at(self, now: float, units: float) -> float:
        """The earliest time ``units`` more may be granted, given the grants so far."""
        if self.share < 1.0:
            self._recover(now)
        ready = self.schedule - self.tolerance
        keep = max(self.capacity - units, 0)
        if self.logged > keep:
            # The oldest grants must leave the window until at most `keep` units remain.
            remaining = self.logged
            leaves = -math.inf
            for entry in self.log:
                remaining -= entry[1]
                leaves = entry[0] + self.per
                if remaining <= keep:
                    break
            if leaves > ready:
                return leaves
        return ready

    def grant(self, now: float, units: float, due: float) -> Entry:
        """Record a grant of ``units`` at ``now`` to a caller that was due at ``due``."""
        # A caller resuming less than one interval late keeps the schedule (no
        # drift); a later one restarts it from now.
        start = due if now - due < self.interval else now
        schedule = self.schedule
        self.schedule = (schedule if schedule > start else start) + units * self.interval
        log = self.log
        if log and now < self.bucket_start + self.bucket_width:
            entry = log[-1]
            entry[0] = now
            entry[1] += units
        else:
            entry = [now, units, 1.0]
            log.append(entry)
            self.bucket_start = now
        self.logged += units
        if log[0][0] + self.per <= now:
            self.expire(now)
        return entry

    def expire(self, now: float) -> None:
        """Forget grants that have left the window ending at ``now``."""
        log = self.log
        per = self.per
        while log and log[0][0] + per <= now:
            entry = log.popleft()
            entry[2] = 0.0
            self.logged -= entry[1]
        if not log:
            self.logged = 0.0

    def settle(self, entry: Entry, difference: float) -> None:
        """Add ``difference`` units to a past grant (negative: a refund): the schedule
        moves by as much, and the window counts the grant at its new size."""
        if entry[2]:
            self.logged += difference
        entry[1] += difference
        self.schedule += difference * self.interval

    def pause(self, until: float) -> None:
        """Grant nothing before ``until``; grants then resume evenly spaced."""
        if until > self.paused_until:
            self.paused_until = until
        self.schedule = max(self.schedule, until + self.tolerance)

    def decrease(self, now: float) -> None:
        """Adaptive mode: halve the rate (a server refused what this window allowed)."""
        self._recover(now)
        self.share_at_decrease = max(self.share / 2, _MINIMUM_SHARE)
        self.decreased_at = now
        self._set_share(self.share_at_decrease)

    def _recover(self, now: float) -> None:
        """Adaptive mode: add back a tenth of the configured rate per quiet window."""
        windows = (now - max(self.decreased_at, self.paused_until)) / self.per
        if windows > 0:
            share = min(1.0, self.share_at_decrease + _RECOVERY_PER_WINDOW * windows)
            if share != self.share:
                self._set_share(share)

    def _set_share(self, share: float) -> None:
        self.share = share
        self.rate = self.configured_rate * share
        self.interval = self.per / self.rate
        self.capacity = max(math.ceil(self.rate), 1) + (0 if self.sliding else self.burst - 1)
        # Keep the schedule's position: a slower rate starts after the pause.
        self.tolerance = (self.burst - 1) * self.interval * share
