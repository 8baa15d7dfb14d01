"""Find what slows a graph run down: code that blocks the event loop.

An async node that calls ``time.sleep``, ``requests.get`` or any other blocking
function holds the event loop: every other node, timer and connection waits. Wrap
a run in `detect_blocking` to be told which node did it, for how long, and where::

    from act_operator_lib.diagnostics import detect_blocking

    async with detect_blocking(threshold=0.1) as detector:
        await graph.ainvoke(inputs)
    # EventLoopBlockedWarning: node 'Fetch' blocked the event loop for 300 ms
    # at casts/fetch.py:12: time.sleep(0.3); use the async form of this call, ...

    detector.blocks   # (LoopBlock(node='Fetch', duration=0.3, ...),)

Detection is also on by default wherever async nodes run: a node that holds the
loop for more than 0.1 s gets the same warning, with no code. Switch it off with
``set_block_detection(False)`` or the environment variable
``ACT_OPERATOR_LIB_BLOCK_DETECTION=off``. A watchdog thread per event loop samples
the loop thread's stack only while the loop is stuck; a process that never runs an
async node starts none. In asyncio debug mode its default threshold is the loop's
``slow_callback_duration``, so it agrees with asyncio's own "Executing ... took"
log, and adds the node name and the blocking line. To route the warnings into
logging, call ``logging.captureWarnings(True)``.
"""

from act_operator_lib._blocking import (
    ENVIRONMENT_VARIABLE,
    BlockDetector,
    EventLoopBlockedWarning,
    LoopBlock,
    detect_blocking,
    set_block_detection,
)
from act_operator_lib._public import publish

__all__ = [
    "ENVIRONMENT_VARIABLE",
    "BlockDetector",
    "EventLoopBlockedWarning",
    "LoopBlock",
    "detect_blocking",
    "set_block_detection",
]

publish(__name__, globals())
