"""A virtual clock for async tests: sleeps and timeouts take no wall time.

Built on looptime, which replaces the event loop's ``time()`` and lets the loop jump
straight to its next timer when nothing else can run. Order is kept: a 1 s sleep
still ends before a 2 s one, a 5 s timeout still fires before a 10 s sleep ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Stopwatch", "VirtualClock", "virtual_clock"]

TESTING_EXTRA = "pip install 'act-operator-lib[testing]'"
REAL_TIME_FIX = (
    "run the test on real time: drop the `virtual_clock` fixture or marker (or the `with "
    "virtual_clock():` block), or mark the test @pytest.mark.real_time where a module or "
    "class is marked virtual_clock"
)


class Stopwatch:
    """Virtual seconds spent inside a `VirtualClock.measure` block.

    Example::

        with clock.measure() as stopwatch:
            await asyncio.sleep(3)
        assert stopwatch.seconds == 3
    """

    __slots__ = ("_clock", "_end", "_start")

    def __init__(self, clock: VirtualClock) -> None:
        if not isinstance(clock, VirtualClock):
            raise TypeError(
                "Stopwatch(clock=...) must be the VirtualClock of `with virtual_clock() as "
                f"clock:`, got {type(clock).__name__}; or use `clock.measure()`"
            )
        self._clock = clock
        self._start = clock.now
        self._end: float | None = None

    @property
    def seconds(self) -> float:
        """Virtual seconds since the block started (until it ended, once it has)."""
        end = self._clock.now if self._end is None else self._end
        return round(end - self._start, 6)

    def _stop(self) -> None:
        self._end = self._clock.now

    def __repr__(self) -> str:
        return f"Stopwatch(seconds={self.seconds:g})"


class VirtualClock:
    """The running event loop's virtual time; read it inside the test.

    Example::

        async def test_backoff(virtual_clock):
            start = virtual_clock.now
            await asyncio.sleep(30)
            assert virtual_clock.now - start == 30
    """

    __slots__ = ()

    @property
    def now(self) -> float:
        """The loop's virtual time in seconds; fails if the clock is not active."""
        loop = asyncio.get_running_loop()
        if not getattr(loop, "looptime_on", False):
            raise RuntimeError(
                "the virtual clock is not active on this event loop: request the "
                "`virtual_clock` fixture or mark the test @pytest.mark.virtual_clock "
                "(pytest-asyncio), or wrap the code in `with virtual_clock():`. "
                "Is pytest running with --no-looptime?"
            )
        return round(loop.time(), 6)

    @contextlib.contextmanager
    def measure(self) -> Iterator[Stopwatch]:
        """Measure the virtual seconds a block takes (see `Stopwatch`)."""
        stopwatch = Stopwatch(self)
        try:
            yield stopwatch
        finally:
            stopwatch._stop()

    def __repr__(self) -> str:
        try:
            return f"VirtualClock(now={self.now:g})"
        except RuntimeError:
            return "VirtualClock(inactive)"


@contextlib.contextmanager
def virtual_clock() -> Iterator[VirtualClock]:
    """Run a block of async code on virtual time; works under any asyncio test runner.

    Must be entered in a coroutine, on a standard asyncio loop. Virtual time starts
    at the loop's current time, so timers set before the block keep their place.

    Example::

        async def test_timeout_fires():
            with virtual_clock() as clock, clock.measure() as stopwatch:
                run = await run_node(SlowNode(), {"input": "x"})
            assert stopwatch.seconds == 5
    """
    looptime = import_looptime("virtual_clock()")
    loop: Any = asyncio.get_running_loop()
    if getattr(loop, "looptime_on", False):
        yield VirtualClock()
        return
    if not isinstance(loop, asyncio.BaseEventLoop):
        raise RuntimeError(
            "virtual_clock() needs asyncio's own event loop, but this code runs on "
            f"{type(loop).__module__}.{type(loop).__qualname__}: looptime can only patch "
            "asyncio's loop; run the code on virtual time on the default loop"
        )
    now = loop.time()
    loop = looptime.patch_event_loop(loop, _enabled=False)
    loop.setup_looptime(start=now, _enabled=False)
    with loop.looptime_enabled(), explain_waits_on_other_processes(loop):
        yield VirtualClock()


# What the running virtual-clock block connected to or started; None outside one.
# Module-wide rather than a context variable: connections are made from worker threads too.
_outside: list[str] | None = None
_audit_hook_added = False


def _on_audit_event(event: str, args: tuple[Any, ...]) -> None:
    if _outside is None:
        return
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and len(address) >= 2:
            _outside.append(f"{address[0]}:{address[1]}")
        else:
            _outside.append(str(address))
    elif event == "subprocess.Popen":
        _outside.append(f"a subprocess ({args[0]})")


@contextlib.contextmanager
def explain_waits_on_other_processes(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Name the cause when a block on virtual time fails after talking to another process.

    The clock virtualises this loop's time only. A server in a subprocess or thread, or
    a database, answers in real time; while the loop waits for it with nothing else to
    do, looptime jumps to the loop's next timer, so timeouts fire before any answer.
    When the block raises, and it connected a socket or started a subprocess while
    virtual time ran ahead of real time, a note saying so and how to fix it is added to
    the exception (pytest prints it under the traceback).
    """
    global _outside, _audit_hook_added
    if not _audit_hook_added:
        # Audit hooks cannot be removed; it returns at once outside a virtual-clock block.
        sys.addaudithook(_on_audit_event)
        _audit_hook_added = True
    previous, outside = _outside, list[str]()
    _outside = outside
    virtual_start, real_start = loop.time(), time.monotonic()
    try:
        yield
    except Exception as error:
        virtual, real = loop.time() - virtual_start, time.monotonic() - real_start
        if outside and virtual > real:
            error.add_note(_explanation(outside, virtual, real))
        raise
    finally:
        _outside = previous


def _explanation(outside: list[str], virtual: float, real: float) -> str:
    peers = list(dict.fromkeys(outside))
    named = ", ".join(peers[:3]) + (f" and {len(peers) - 3} more" if len(peers) > 3 else "")
    return (
        f"The virtual clock advanced {round(virtual, 6):g} s in {real:.2g} s of real time "
        f"while this test talked to {named}. It virtualises this event loop's time only: "
        "a peer outside the loop (a server in a subprocess or thread, a database) answers "
        "in real time, and while the loop waits for it the clock jumps to the loop's next "
        "timer, so timeouts fire before the answer arrives.\n"
        f"If this test waits on that peer, {REAL_TIME_FIX}."
    )


def import_looptime(feature: str) -> Any:
    """Import looptime, or fail naming the extra that provides it."""
    try:
        import looptime
    except ImportError as error:
        raise ImportError(f"{feature} needs looptime: {TESTING_EXTRA}") from error
    return looptime
