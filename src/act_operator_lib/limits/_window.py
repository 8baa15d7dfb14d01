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
_RECOVERY_PER_WINDOW = 1 / 20
"""Adaptive mode gives back this share of the configured rate per quiet window."""
_DECREASE = 0.9
"""Adaptive mode cuts a rate to at most this share of the rate refused."""
_UNREFUNDED = 0.95
"""Adaptive mode learns this share of a window's grants when none was refunded
(the refused calls are still among them)."""
_HOLD_WINDOWS = 10
"""Adaptive mode's recovery holds at the learned rate for this many quiet windows."""
_MOST_DECREASE = 0.5
"""Adaptive mode never slows down to less than this share of the rate at once..."""
_MOST_DECREASE_REFUNDED = 0.25
"""... or this share, when the refused calls were refunded (what was left is what
the server took)."""
_HELD = 0.98
"""After a pause, a rate holds at what it learned only if it took at least this
share of the fullest rate's share."""


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
        "bucket_end",
        "bucket_width",
        "burst",
        "capacity",
        "configured_rate",
        "cut_from",
        "decreased_at",
        "episode",
        "episode_since",
        "episode_units",
        "granted",
        "held",
        "interval",
        "known",
        "log",
        "logged",
        "measuring",
        "paused_until",
        "per",
        "plateau",
        "rate",
        "recovered_from",
        "refunded_at",
        "refusals",
        "resumes_burst",
        "schedule",
        "share",
        "siblings",
        "sliding",
        "tolerance",
    )

    def __init__(
        self,
        rate: float,
        per: float,
        burst: int,
        adaptive: bool = False,
        sliding: bool = False,
        margin: float = 0.0,
    ) -> None:
        self.configured_rate = rate
        self.per = per
        # How long a grant counts in the log: the window plus a safety margin for
        # the spread between a grant and its request's arrival at the server.
        self.held = per + margin
        self.burst = burst
        self.adaptive = adaptive
        self.share = 1.0
        self.recovered_from = 1.0
        self.plateau = 0.0
        self.decreased_at = -math.inf
        # The grants of the window a refusal was blamed on, their units then, and
        # the share cut from: the cut is measured again once the pause is over.
        self.episode: list[Entry] = []
        self.episode_units = 0.0
        self.episode_since = math.inf
        # The grant time of the last grant refunded in part or whole, and the
        # grants refused (by another rate's refund), as (time, units).
        self.refunded_at = -math.inf
        self.refusals: deque[tuple[float, float]] = deque()
        self.cut_from = 1.0
        self.measuring = False
        # The windows of the same limiter (set by `MultiRateLimiter`): the cuts of
        # one refusal are measured together.
        self.siblings: tuple[Window, ...] = (self,)
        # The most units the server took in one window of this rate when it was
        # the cause of a refusal: a window holding no more did not cause the next.
        self.known = 0.0
        self.schedule = -math.inf
        self.paused_until = -math.inf
        # A sliding window paused since its burst was last given back (`pause`).
        self.resumes_burst = False
        self.log: deque[Entry] = deque()
        self.logged = 0.0
        self.granted = 0.0
        # Until when grants join the last log entry (the end of its bucket).
        self.bucket_end = -math.inf
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
        if self.resumes_burst and now >= self.paused_until:
            self.resumes_burst = False
            self.schedule = min(self.schedule, self.paused_until)
        ready = self.schedule - self.tolerance
        keep = self.capacity - units
        if self.logged > keep:
            if keep < 0:
                keep = 0
            # The oldest grants must leave the window until at most `keep` units remain.
            remaining = self.logged
            leaves = -math.inf
            for entry in self.log:
                remaining -= entry[1]
                leaves = entry[0] + self.held
                if remaining <= keep:
                    break
            if leaves > ready:
                return leaves
        return ready

    def grant(self, now: float, units: float, due: float) -> Entry:
        """Record a grant of ``units`` at ``now`` to a caller that was due at ``due``."""
        # A caller resuming less than one interval late keeps the schedule (no
        # drift); a later one restarts it from now.
        interval = self.interval
        start = due if now - due < interval else now
        schedule = self.schedule
        self.schedule = (schedule if schedule > start else start) + units * interval
        self.logged += units
        self.granted += units
        log = self.log
        if now < self.bucket_end:
            entry = log[-1]
            entry[0] = now
            entry[1] += units
            return entry
        entry = [now, units, 1.0]
        log.append(entry)
        self.bucket_end = now + self.bucket_width
        if log[0][0] + self.held <= now:
            self.expire(now)
        return entry

    def expire(self, now: float) -> None:
        """Forget grants that have left the window ending at ``now``."""
        log = self.log
        held = self.held
        while log and log[0][0] + held <= now:
            entry = log.popleft()
            entry[2] = 0.0
            self.logged -= entry[1]
        if not log:
            self.logged = 0.0

    def refresh(self, now: float) -> None:
        """Bring the window up to ``now`` for a snapshot: expire grants, recover the rate."""
        self.expire(now)
        if self.share < 1.0:
            self._recover(now)

    def settle(self, entry: Entry, difference: float) -> None:
        """Add ``difference`` units to a past grant (negative: a refund): the schedule
        moves by as much, and the window counts the grant at its new size."""
        if entry[2]:
            self.logged += difference
        if difference < 0:
            self.refunded_at = entry[0]
        entry[1] += difference
        self.granted += difference
        self.schedule += difference * self.interval

    def refuse(self, entry: Entry, units: float) -> None:
        """Adaptive mode: ``units`` of the grant logged in ``entry`` were refused by
        the server (another rate of the call was refunded in full); the next cut
        leaves them out, as it does a refund."""
        refusals = self.refusals
        while refusals and refusals[0][0] <= entry[0] - 2 * self.per:
            refusals.popleft()
        refusals.append((entry[0], units))

    def pause(self, until: float) -> None:
        """Grant nothing before ``until``; then resume evenly spaced or, for a
        sliding window, with its burst.

        A sliding window (`Rate`) models the server's own window and its log never
        lets more than ``rate`` units into one: when the pause ends, it gives back
        the burst the pause took away (`ready_at`, the first time a caller has to
        look), as before the refusal. Without it, one 429 caused by the spread of
        arrival times turned a bursting limiter into an evenly spaced one for good,
        a window's burst behind (docs/benchmarks.md, LLM (a)). A `RateLimiter`
        window, whose burst comes on top of its rate, resumes evenly spaced.
        """
        if until > self.paused_until:
            self.paused_until = until
        self.schedule = max(self.schedule, until + self.tolerance)
        if self.sliding:
            self.resumes_burst = True

    def used(self, now: float) -> float:
        """Adaptive mode: how full the last window was, as a share of the current rate."""
        self._recover(now)
        self.expire(now)
        return self.logged / self.rate

    def decrease(self, now: float, blamed: bool = True) -> None:
        """Adaptive mode: slow down to what the server took, once per episode.

        The server refused while this window's grants of the last ``per`` seconds
        were in its window, so it allows about what they add up to, once the
        refused calls among them are refunded (a `Reservation` settled at 0): the
        rate drops to that, by at least 10% and at most three quarters; without a
        refund, to 95% of them, by at most a half. The refunds of the calls in
        flight arrive while the pause runs, so the cut is measured again when it
        ends (`_measure`). Recovery then holds at the learned rate for a while
        (`_recover`). Callers already in flight when the server started refusing
        report it too, so a pause while paused, or within one window of the last
        decrease, does not decrease again. A rate not ``blamed`` for the refusal
        (another rate of the limiter was fuller) keeps its rate. A pause that does
        not decrease keeps what has been recovered so far; recovery goes on from
        the end of the pause.
        """
        self._recover(now)
        if not blamed or now < self.paused_until or now < self.decreased_at + self.per:
            self.recovered_from = self.share
            if self.share > self.plateau:
                self.plateau = 0.0
            return
        self.expire(now)
        since = self.episode_since = now - self.per
        self.episode = [entry for entry in self.log if entry[0] > since]
        self.episode_units = sum(entry[1] for entry in self.episode)
        self.cut_from = self.share
        self.decreased_at = now
        self.measuring = True
        self._cut()

    def _accepted(self) -> tuple[float, bool]:
        """What the episode's grants add up to as they stand, and whether refunds
        (or refusals) took the refused calls out of them."""
        since = self.episode_since
        refused = sum(units for at, units in self.refusals if at > since)
        accepted = sum(entry[1] for entry in self.episode) - refused
        refunded = accepted < self.episode_units or self.refunded_at > since or refused > 0
        return (accepted if refunded else _UNREFUNDED * accepted), refunded

    def _cut(self, hold: bool = True) -> None:
        """Set the rate and the plateau (when ``hold``) from the episode's grants."""
        learned, refunded = self._accepted()
        most = _MOST_DECREASE_REFUNDED if refunded else _MOST_DECREASE
        rate = self.configured_rate * self.cut_from
        share = self.cut_from * min(max(learned / rate, most), _DECREASE)
        self.recovered_from = max(share, _MINIMUM_SHARE)
        self.plateau = min(1.0, learned / self.configured_rate) if hold else 0.0
        self._set_share(self.recovered_from)

    def _measure(self) -> None:
        """Cut again once the pause is over, the episode's refunds now counted.

        Every rate cut by the refusal is measured at once. A rate whose window held
        no more than the server once took of it (`known`, the most learned when it
        was the cause) did not cause this one: it gets its rate back. Of the
        others, the one that had taken the most of its rate (and any within 2% of
        it) is the likely cause and holds at what it learned; the rest were cut on
        a guess and climb at once.
        """
        cohort = [window for window in self.siblings if window.measuring]
        learned = [window._accepted()[0] for window in cohort]
        suspects = [units > window.known for window, units in zip(cohort, learned, strict=True)]
        if not any(suspects):
            suspects = [True] * len(cohort)
        shares = [
            units / (window.configured_rate * window.cut_from) if suspect else 0.0
            for window, units, suspect in zip(cohort, learned, suspects, strict=True)
        ]
        fullest = max(shares)
        for window, units, share, suspect in zip(cohort, learned, shares, suspects, strict=True):
            window.measuring = False
            if not suspect:
                window.recovered_from = window.cut_from
                window.plateau = 0.0
                window._set_share(window.cut_from)
            else:
                hold = share >= _HELD * fullest
                window._cut(hold)
                if hold:
                    window.known = max(window.known, units)
            window.episode = []
            # The learned rate's log keeps the server's window within it, so the
            # burst a pause takes away comes back: without it every later grant is
            # one window's burst behind a limiter set at the server's limits.
            window.schedule = min(window.schedule, window.paused_until)

    def _recover(self, now: float) -> None:
        """Adaptive mode: give back a 20th of the configured rate per quiet window.

        From a cut to the plateau (the rate learned from the last refusal), the
        rate holds there for `_HOLD_WINDOWS` quiet windows (the server's limit is
        likely just above), then climbs on towards the configured rate, in case
        the server now allows more. A cut clamped above the plateau (the window
        held less than the server allows) climbs at once.
        """
        if self.measuring and now >= self.paused_until:
            self._measure()
        windows = (now - max(self.decreased_at, self.paused_until)) / self.per
        if windows <= 0:
            return
        share = self.recovered_from + _RECOVERY_PER_WINDOW * windows
        plateau = self.plateau
        if plateau >= self.recovered_from and share > plateau:
            # Windows spent climbing to the plateau, then held there.
            reached = (plateau - self.recovered_from) / _RECOVERY_PER_WINDOW
            beyond = windows - reached - _HOLD_WINDOWS
            share = plateau + _RECOVERY_PER_WINDOW * beyond if beyond > 0 else plateau
        share = min(1.0, share)
        if share != self.share:
            self._set_share(share)

    def _set_share(self, share: float) -> None:
        """Grant at ``share`` of the configured rate (and burst) from now on."""
        self.share = share
        self.rate = self.configured_rate * share
        self.interval = self.per / self.rate
        burst = max(1, round(self.burst * share))
        self.tolerance = (burst - 1) * self.interval
        self.capacity = max(math.ceil(self.rate), 1) + (0 if self.sliding else burst - 1)
