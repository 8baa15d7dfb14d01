"""Event-loop block detection: on by default where async nodes run, and `detect_blocking`.

By default, the first async node call on an event loop starts a watchdog thread
for that loop (`watch_running_loop`; a process that never runs an async node starts
none). Every ``threshold / 5`` seconds it asks the loop to answer
(``call_soon_threadsafe``); while the answer is overdue it samples the loop
thread's stack, and a late answer past the threshold that caught a node on the
stack becomes an `EventLoopBlockedWarning` naming the node, the duration and the
call site. `set_block_detection` (or the ``ACT_OPERATOR_LIB_BLOCK_DETECTION=off``
environment variable) switches it off. The thread ends when its loop closes.

`detect_blocking` watches one ``async with`` block and reports every block, in a
node or not, with its own threshold. The loop runs a tick every ``threshold / 5``
seconds. A watchdog thread wakes at
the same rate; when the tick is overdue, the loop thread is stuck in some
callback, so the watchdog samples that thread's stack
(``sys._current_frames()``) and keeps the innermost node frame and the innermost
Python frame. When the tick finally runs, it is late by about how long the loop
was held; past the threshold, the tick (on the loop thread) turns the samples
into `LoopBlock` records and `EventLoopBlockedWarning` warnings.

On a node's call path the default detection costs one check that the running
loop is the one last seen; the rest is the watchdog's wake-ups and one callback on
the loop every ``threshold / 5`` seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import linecache
import os
import sys
import threading
import time
import warnings
import weakref
from types import FrameType, TracebackType
from typing import Any, Protocol

from act_operator_lib._validation import boolean, seconds

__all__ = [
    "BlockDetector",
    "EventLoopBlockedWarning",
    "LoopBlock",
    "detect_blocking",
    "set_block_detection",
    "watch_running_loop",
]

DEFAULT_THRESHOLD = 0.1
THREAD_NAME = "act-operator-lib block detector"
DEFAULT_THREAD_NAME = "act-operator-lib default block detector"
ENVIRONMENT_VARIABLE = "ACT_OPERATOR_LIB_BLOCK_DETECTION"
"""Set to ``off`` (or ``0``, ``false``, ``no``) to start with default detection off."""
_TICKS_PER_THRESHOLD = 5


class EventLoopBlockedWarning(RuntimeWarning):
    """Code running on the event loop held it longer than the detection threshold.

    Issued by `detect_blocking`, pointing at the node's line that was running, so
    warning filters by module work as for any warning. Under ``-W error`` (or a
    pytest ``filterwarnings = error``), the first one is raised when the
    ``detect_blocking`` block exits.
    """


@dataclasses.dataclass(frozen=True, slots=True)
class LoopBlock:
    """One stretch of time a node (or other code) held the event loop."""

    node: str | None
    """The blocking node's ``name``; None when no node was on the stack."""
    duration: float
    """Seconds the loop was held, as measured (at most ``threshold / 5`` short)."""
    location: str | None
    """``file:line`` of the innermost Python frame: the blocking call's line."""
    source: str | None
    """The source text at `location`, e.g. ``time.sleep(0.3)``."""
    node_location: str | None = None
    """``file:line`` inside the node, when the blocking call is deeper than it."""

    def describe(self) -> str:
        """One sentence naming the node, the duration and the blocking call."""
        who = f"node {self.node!r}" if self.node is not None else "code outside any node"
        text = f"{who} blocked the event loop for {self.duration * 1000:.0f} ms"
        if self.location is not None:
            text += f" at {self.location}"
            if self.source:
                text += f": {self.source}"
        if self.node_location is not None:
            text += f" (called from {self.node_location})"
        if self.node is not None:
            text += (
                "; use the async form of this call, or move it off the loop with "
                "asyncio.to_thread() or a sync BaseNode"
            )
        return text


@dataclasses.dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    node: str | None
    location: str | None
    source: str | None
    node_location: str | None
    filename: str | None
    lineno: int


class BlockDetector:
    """Watches the running event loop for code that blocks it; see `detect_blocking`.

    ``blocks`` lists what was found so far; a detector is used once.
    """

    __slots__ = (
        "_blocks",
        "_due",
        "_error",
        "_interval",
        "_lock",
        "_loop",
        "_loop_thread_id",
        "_samples",
        "_stopped",
        "_thread",
        "_tick_handle",
        "threshold",
    )

    def __init__(self, threshold: float | None = None) -> None:
        if threshold is not None:
            _check_threshold(
                "detect_blocking", threshold, hint=f"; the default is {DEFAULT_THRESHOLD}"
            )
        self.threshold: float | None = None if threshold is None else float(threshold)
        self._blocks: list[LoopBlock] = []
        self._samples: list[_Sample] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._interval = 0.0
        self._error: EventLoopBlockedWarning | None = None

    @property
    def blocks(self) -> tuple[LoopBlock, ...]:
        """The blocks detected so far, oldest first."""
        return tuple(self._blocks)

    def __repr__(self) -> str:
        state = "watching" if self._thread is not None else "idle"
        return f"BlockDetector(threshold={self.threshold!r}, blocks={len(self._blocks)}, {state})"

    async def __aenter__(self) -> BlockDetector:
        if self._loop is not None:
            raise RuntimeError("a BlockDetector watches one block; call detect_blocking() again")
        loop = asyncio.get_running_loop()
        if self.threshold is None:
            # In asyncio debug mode, agree with the loop's own slow-callback log.
            self.threshold = loop.slow_callback_duration if loop.get_debug() else DEFAULT_THRESHOLD
        self._loop = loop
        _explicitly_watched[loop] = _explicitly_watched.get(loop, 0) + 1
        self._loop_thread_id = threading.get_ident()
        self._interval = self.threshold / _TICKS_PER_THRESHOLD
        self._schedule_tick(time.monotonic())
        self._thread = threading.Thread(target=self._watch, name=THREAD_NAME, daemon=True)
        self._thread.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A block that ended just before the exit has not been ticked yet.
        self._tick(reschedule=False)
        self._stop()
        if self._error is not None and exc is None:
            error, self._error = self._error, None
            raise error

    def _stop(self) -> None:
        if self._loop is not None and self._loop in _explicitly_watched:
            _explicitly_watched[self._loop] -= 1
            if not _explicitly_watched[self._loop]:
                del _explicitly_watched[self._loop]
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _schedule_tick(self, now: float) -> None:
        assert self._loop is not None
        with self._lock:
            self._due = now + self._interval
        self._tick_handle = self._loop.call_later(self._interval, self._tick)

    def _tick(self, reschedule: bool = True) -> None:
        """Runs on the loop thread: measure how late it is, report a block."""
        now = time.monotonic()
        with self._lock:
            late = now - self._due
            samples, self._samples = self._samples, []
        assert self.threshold is not None
        if late >= self.threshold:
            for block, sample in _blocks_from(samples, late, now, self._interval):
                self._report(block, sample)
        if reschedule:
            self._schedule_tick(now)

    def _watch(self) -> None:
        """Runs on the watchdog thread: sample the loop thread's stack while it is stuck."""
        loop = self._loop
        assert loop is not None
        while not self._stopped.wait(self._interval):
            if loop.is_closed():
                return
            with self._lock:
                overdue = time.monotonic() - self._due > self._interval
            if not overdue or not loop.is_running():
                continue
            frame = sys._current_frames().get(self._loop_thread_id)
            if frame is None:
                continue
            sample = _sample(frame)
            with self._lock:
                self._samples.append(sample)

    def _report(self, block: LoopBlock, sample: _Sample | None) -> None:
        self._blocks.append(block)
        try:
            if sample is not None and sample.filename is not None:
                warnings.warn_explicit(
                    block.describe(), EventLoopBlockedWarning, sample.filename, sample.lineno
                )
            else:
                warnings.warn(block.describe(), EventLoopBlockedWarning, stacklevel=1)
        except EventLoopBlockedWarning as error:
            # Warnings are errors here: raise it from the detector's exit, not
            # inside a loop callback where asyncio would only log it.
            if self._error is None:
                self._error = error


def detect_blocking(threshold: float | None = None) -> BlockDetector:
    """Warn when code on the running event loop blocks it for more than ``threshold`` s.

    An ``async with`` block watches the loop it runs on; each block of the loop past
    the threshold becomes an `EventLoopBlockedWarning` naming the node (its
    ``name``), the duration, and the blocking call's line, and a `LoopBlock` in the
    detector's ``blocks``. The watchdog thread stops when the block exits.

    Example::

        async with detect_blocking(threshold=0.05) as detector:
            await graph.ainvoke(inputs)
        # EventLoopBlockedWarning: node 'Fetch' blocked the event loop for 300 ms
        # at fetch.py:12: time.sleep(0.3)

    Args:
        threshold: Seconds the loop may be held before it is reported. Default:
            ``loop.slow_callback_duration`` in asyncio debug mode, else 0.1.

    Raises:
        ValueError: ``threshold`` is not a positive number.
    """
    return BlockDetector(threshold)


_explicitly_watched: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = (
    weakref.WeakKeyDictionary()
)
"""Loops inside a `detect_blocking` block, which then reports instead of the default."""


class _LoopWatch:
    """The default detector of one event loop: a watchdog thread that pings the loop."""

    __slots__ = (
        "_interval",
        "_lock",
        "_loop",
        "_loop_thread_id",
        "_samples",
        "_sent",
        "_stopped",
        "alive",
        "loop_closed",
        "threshold",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, threshold: float) -> None:
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        self.threshold = threshold
        self._interval = threshold / _TICKS_PER_THRESHOLD
        self._lock = threading.Lock()
        self._sent: float | None = None
        self._samples: list[_Sample] = []
        self._stopped = threading.Event()
        self.alive = True
        """False once the loop closed or detection was switched off."""
        self.loop_closed = loop.is_closed
        """Whether a node call on this thread must look for its loop's watch again: the
        next ``asyncio.run`` in a thread makes a new loop once this one closed."""

    def start(self) -> _LoopWatch:
        threading.Thread(target=self._watch, name=DEFAULT_THREAD_NAME, daemon=True).start()
        return self

    def stop(self) -> None:
        self.alive = False
        self._stopped.set()

    def _watch(self) -> None:
        """Runs on the watchdog thread until the loop closes or detection is switched off."""
        try:
            self._ping_and_sample()
        finally:
            self.alive = False

    def _ping_and_sample(self) -> None:
        loop = self._loop
        while not self._stopped.wait(self._interval):
            if loop.is_closed():
                return
            if not loop.is_running():
                continue
            with self._lock:
                sent = self._sent
            now = time.monotonic()
            if sent is None:
                with self._lock:
                    self._sent = now
                try:
                    loop.call_soon_threadsafe(self._answer)
                except RuntimeError:  # closed in between
                    return
            elif now - sent > self._interval:
                frame = sys._current_frames().get(self._loop_thread_id)
                if frame is not None:
                    sample = _sample(frame)
                    with self._lock:
                        self._samples.append(sample)

    def _answer(self) -> None:
        """Runs on the loop: how late the answer is is how long the loop was held."""
        now = time.monotonic()
        with self._lock:
            sent, self._sent = self._sent, None
            samples, self._samples = self._samples, []
        if sent is None or now - sent < self.threshold or not samples:
            return
        in_nodes = [sample for sample in samples if sample.node is not None]
        if not in_nodes or self._loop in _explicitly_watched:
            return
        # One warning per stall, for the node seen most; its first sample is the site.
        culprit = max({sample.node for sample in in_nodes}, key=[s.node for s in in_nodes].count)
        sample = next(sample for sample in in_nodes if sample.node == culprit)
        block = LoopBlock(
            node=culprit,
            duration=now - sent,
            location=sample.location,
            source=sample.source,
            node_location=sample.node_location,
        )
        warnings.warn_explicit(
            block.describe(), EventLoopBlockedWarning, sample.filename or "", sample.lineno
        )


class _Off:
    """Stands for the watch of a thread while detection is off: nothing to start."""

    __slots__ = ()

    @staticmethod
    def loop_closed() -> bool:
        return False


class _DefaultDetection:
    """Whether async node calls start a watchdog for their loop, and the loops watched."""

    __slots__ = ("by_thread", "enabled", "threshold", "watches")

    def __init__(self) -> None:
        setting = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
        self.enabled = setting not in ("off", "0", "false", "no")
        self.threshold = DEFAULT_THRESHOLD
        self.watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatch] = (
            weakref.WeakKeyDictionary()
        )
        self.by_thread: dict[int, _LoopWatch | _Off] = {}
        """The watch of the loop each thread last ran a node on. Found by thread id,
        because asking for the running loop costs a system call (getpid) per node call."""


default_detection = _DefaultDetection()
_OFF = _Off()


def watch_running_loop() -> None:
    """Start the default detector of the running loop (once per loop), if it is on.

    Called by an async node call when its thread has no watch, or one whose loop closed
    (e.g. the next ``asyncio.run`` in that thread).
    """
    loop = asyncio.get_running_loop()
    thread = threading.get_ident()
    if not default_detection.enabled:
        default_detection.by_thread[thread] = _OFF
        return
    watch = default_detection.watches.get(loop)
    if watch is None or not watch.alive:
        watch = default_detection.watches[loop] = _LoopWatch(
            loop, default_detection.threshold
        ).start()
    default_detection.by_thread[thread] = watch


def set_block_detection(enabled: bool, *, threshold: float = DEFAULT_THRESHOLD) -> None:
    """Switch the default block detection of async nodes on or off, for the whole process.

    On by default (unless ``ACT_OPERATOR_LIB_BLOCK_DETECTION=off`` is set): the first
    async node call on an event loop starts a watchdog for it, and a node that holds
    the loop longer than ``threshold`` seconds gets an `EventLoopBlockedWarning`
    naming it, the duration and the blocking line. Off stops the running watchdogs.

    Example::

        from act_operator_lib.diagnostics import set_block_detection

        set_block_detection(False)                   # e.g. in production
        set_block_detection(True, threshold=0.05)    # stricter, e.g. in tests
    """
    boolean("set_block_detection", "enabled", enabled, show_value=False)
    _check_threshold("set_block_detection", threshold)
    for watch in list(default_detection.watches.values()):
        watch.stop()
    default_detection.watches.clear()
    default_detection.by_thread.clear()
    default_detection.enabled = enabled
    default_detection.threshold = float(threshold)


class _Node(Protocol):
    @property
    def observed_name(self) -> str: ...


def _check_threshold(owner: str, threshold: object, *, hint: str = "") -> None:
    # A non-number is a ValueError here (TypeError elsewhere): the contract these
    # functions were published with.
    seconds(
        owner,
        "threshold",
        threshold,
        expected="a positive number of seconds",
        kind="a positive number of seconds",
        hint=hint,
        not_a_number=ValueError,
    )


NODE_CLASSES: tuple[type[_Node], ...] = ()
"""The node base classes, given by `recognise_nodes` (base_node imports this module)."""


def recognise_nodes(*classes: type[_Node]) -> None:
    """Name the node base classes whose frames a block is blamed on."""
    global NODE_CLASSES
    NODE_CLASSES = classes


def _sample(top: FrameType) -> _Sample:
    node: str | None = None
    node_frame: FrameType | None = None
    frame: FrameType | None = top
    while frame is not None:
        code = frame.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            owner: Any = frame.f_locals.get("self")
            if isinstance(owner, NODE_CLASSES):
                node, node_frame = owner.observed_name, frame
                break
        frame = frame.f_back
    filename = top.f_code.co_filename
    # f_lineno is None while a frame runs code with no line (e.g. its prologue).
    lineno = top.f_lineno or top.f_code.co_firstlineno
    node_location = None
    if node_frame is not None and node_frame is not top:
        node_line = node_frame.f_lineno or node_frame.f_code.co_firstlineno
        node_location = f"{node_frame.f_code.co_filename}:{node_line}"
    warn_at = node_frame if node_frame is not None else top
    return _Sample(
        at=time.monotonic(),
        node=node,
        location=f"{filename}:{lineno}",
        source=linecache.getline(filename, lineno).strip() or None,
        node_location=node_location,
        filename=warn_at.f_code.co_filename,
        lineno=warn_at.f_lineno or warn_at.f_code.co_firstlineno,
    )


def _blocks_from(
    samples: list[_Sample], late: float, now: float, interval: float
) -> list[tuple[LoopBlock, _Sample | None]]:
    """Group a stall's samples by culprit; each run of samples is one block."""
    if not samples:
        return [(LoopBlock(node=None, duration=late, location=None, source=None), None)]
    runs: list[list[_Sample]] = []
    for sample in samples:
        if runs and _culprit(runs[-1][0]) == _culprit(sample):
            runs[-1].append(sample)
        else:
            runs.append([sample])
    found: list[tuple[LoopBlock, _Sample | None]] = []
    for index, run in enumerate(runs):
        first = run[0]
        if len(runs) == 1:
            duration = late
        elif index + 1 < len(runs):
            duration = runs[index + 1][0].at - first.at
        else:
            duration = now - first.at
        block = LoopBlock(
            node=first.node,
            duration=max(duration, interval),
            location=first.location,
            source=first.source,
            node_location=first.node_location,
        )
        found.append((block, first))
    return found


def _culprit(sample: _Sample) -> tuple[str | None, str | None]:
    return (sample.node, sample.location)
