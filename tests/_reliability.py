"""Helpers shared by the reliability tests (tests/test_reliability_*.py).

A fault-injection run drives many operations at once, each with a fate drawn from a
seeded `random.Random` (success, an exception, a timeout, or cancellation of the
caller from outside), and afterwards checks that nothing leaked.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

SEEDS = [20240601, 7, 1234567]
"""Seeds of the fault-injection runs; each one is in the test id (``seed=...``)."""


class Boom(Exception):
    """The exception an operation raises when its fate is "error"."""


def tasks_now() -> set[asyncio.Task[Any]]:
    """Every task of the running loop except the caller."""
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[arg-type]


def assert_no_new_tasks(before: set[asyncio.Task[Any]], seed: object) -> None:
    """Fail, naming the seed and the tasks, if a task started since ``before`` is alive."""
    leftover = {task for task in tasks_now() - before if not task.done()}
    assert not leftover, f"seed={seed}: tasks still pending: {leftover}"


class Inside:
    """Counts callers inside a critical section and remembers the peak."""

    __slots__ = ("entered", "now", "peak")

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.entered = 0

    def enter(self) -> None:
        self.now += 1
        self.entered += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


def most_in_any_window(grants: Iterable[tuple[float, int]], window: float) -> int:
    """The most units granted inside any half-open window ``[t, t + window)``."""
    ordered = sorted(grants)
    most = units = start = 0
    for time, weight in ordered:
        units += weight
        while ordered[start][0] + window <= time:  # the limiters' own comparison
            units -= ordered[start][1]
            start += 1
        most = max(most, units)
    return most


async def drive(
    rng: random.Random,
    operations: int,
    start: Callable[[int], Awaitable[Any]],
    *,
    at_once: int,
    cancel_share: float,
    cancel_within: float,
) -> Driven:
    """Run ``operations`` operations, ``at_once`` at a time; cancel some from outside.

    ``start(n)`` makes operation ``n``'s coroutine. A share ``cancel_share`` of them
    is cancelled by the driver after a random delay (a multiple of 1 ms up to
    ``cancel_within``, 0 included, so cancellations land before the first step, in
    waits and at the same instant as hand-overs). Returns the finished tasks, whose
    outcomes the caller checks (that also marks every exception retrieved), and the
    set of tasks a cancellation reached (``task.cancel()`` returned True): each of
    those must end cancelled, or the cancellation was swallowed.
    """
    loop = asyncio.get_running_loop()
    finished: list[asyncio.Task[Any]] = []
    running: set[asyncio.Task[Any]] = set()
    reached: set[asyncio.Task[Any]] = set()
    steps = max(1, round(cancel_within * 1000))

    def cancel(task: asyncio.Task[Any]) -> None:
        if task.cancel():
            reached.add(task)

    for number in range(operations):
        task = loop.create_task(start(number))
        if rng.random() < cancel_share:
            handle = loop.call_later(rng.randint(0, steps) / 1000, cancel, task)
            task.add_done_callback(lambda _, handle=handle: handle.cancel())  # type: ignore[misc]
        running.add(task)
        if len(running) >= at_once:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            finished.extend(done)
    if running:
        done, _ = await asyncio.wait(running)
        finished.extend(done)
    return Driven(finished, reached)


class Driven:
    """What `drive` ran: the finished tasks and those a cancellation reached."""

    __slots__ = ("finished", "reached")

    def __init__(self, finished: list[asyncio.Task[Any]], reached: set[asyncio.Task[Any]]) -> None:
        self.finished = finished
        self.reached = reached

    def outcomes(self, seed: object) -> list[Any]:
        """Each task's result or exception (retrieving it); cancelled ones are skipped.

        Fails if a task a cancellation reached did not end cancelled.
        """
        results: list[Any] = []
        for task in self.finished:
            if task.cancelled():
                continue
            assert task not in self.reached, (
                f"seed={seed}: a cancelled operation ended with {task.exception() or 'a result'!r}"
                " instead of CancelledError: the cancellation was swallowed"
            )
            error = task.exception()
            results.append(error if error is not None else task.result())
        return results
