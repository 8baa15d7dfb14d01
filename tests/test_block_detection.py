"""Event-loop block detection: detect_blocking names the node that held the loop.

``time.sleep`` inside a node is the behaviour under test here, not synchronisation.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from act_operator_lib import AsyncBaseNode, BaseNode
from act_operator_lib._blocking import DEFAULT_THREAD_NAME, THREAD_NAME, default_detection
from act_operator_lib.diagnostics import (
    BlockDetector,
    EventLoopBlockedWarning,
    LoopBlock,
    detect_blocking,
    set_block_detection,
)

BLOCK = 0.3


class State(TypedDict, total=False):
    seen: list[str]


class Polite(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {}


class Sleeper(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        time.sleep(BLOCK)
        return {}


def blocking_helper() -> None:
    time.sleep(BLOCK)


class IndirectSleeper(AsyncBaseNode):
    async def execute(self, state: State) -> dict[str, Any]:
        blocking_helper()
        return {}


class SyncSleeper(BaseNode):
    def execute(self, state: State) -> dict[str, Any]:
        time.sleep(BLOCK)
        return {}


def parallel_graph(nodes: dict[str, Any]) -> Any:
    builder = StateGraph(State)
    for name, node in nodes.items():
        builder.add_node(name, node)
        builder.add_edge(START, name)
        builder.add_edge(name, END)
    return builder.compile()


def detector_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


async def test_names_the_blocking_node_among_parallel_ones() -> None:
    graph = parallel_graph(
        {
            "first": Polite(name="first"),
            "sleeper": Sleeper(name="sleeper"),
            "third": Polite(name="third"),
        }
    )
    await parallel_graph({"warm_up": Polite()}).ainvoke({})

    with pytest.warns(EventLoopBlockedWarning, match="node 'sleeper' blocked the event loop"):
        async with detect_blocking(threshold=0.1) as detector:
            await graph.ainvoke({})

    named = {block.node for block in detector.blocks}
    assert "sleeper" in named
    assert not named & {"first", "third"}


async def test_reports_the_blocking_line_and_duration() -> None:
    with pytest.warns(EventLoopBlockedWarning):
        async with detect_blocking(threshold=0.1) as detector:
            await Sleeper(name="sleeper")({})

    (block,) = detector.blocks
    assert block.node == "sleeper"
    assert block.location is not None
    assert block.location.startswith(f"{__file__}:")
    assert block.source == "time.sleep(BLOCK)"
    assert block.duration >= 0.1
    assert block.node_location is None


async def test_warning_points_at_the_node_line() -> None:
    with pytest.warns(EventLoopBlockedWarning) as recorded:
        async with detect_blocking(threshold=0.1):
            await Sleeper()({})

    assert recorded[0].filename == __file__


async def test_reports_the_node_that_called_a_blocking_helper() -> None:
    with pytest.warns(EventLoopBlockedWarning, match="called from"):
        async with detect_blocking(threshold=0.1) as detector:
            await IndirectSleeper(name="indirect")({})

    (block,) = detector.blocks
    assert block.node == "indirect"
    assert block.source == "time.sleep(BLOCK)"
    assert block.node_location is not None
    assert block.node_location.startswith(f"{__file__}:")


async def test_blocking_outside_any_node_is_reported_without_a_node() -> None:
    async def block_outside_nodes() -> BlockDetector:
        async with detect_blocking(threshold=0.1) as detector:
            time.sleep(BLOCK)
        return detector

    with pytest.warns(EventLoopBlockedWarning, match="code outside any node"):
        detector = await block_outside_nodes()

    assert [block.node for block in detector.blocks] == [None]


async def test_sync_node_sleeping_in_its_thread_is_not_reported() -> None:
    graph = parallel_graph({"sync": SyncSleeper(), "polite": Polite()})

    async with detect_blocking(threshold=0.1) as detector:
        await graph.ainvoke({})

    assert detector.blocks == ()


async def test_nodes_that_only_await_are_not_reported() -> None:
    graph = parallel_graph({"a": Polite(), "b": Polite()})

    async with detect_blocking(threshold=0.2) as detector:
        await graph.ainvoke({})

    assert detector.blocks == ()


async def test_warning_as_error_is_raised_when_the_detector_exits() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", EventLoopBlockedWarning)
        with pytest.raises(EventLoopBlockedWarning, match="node 'sleeper'"):
            async with detect_blocking(threshold=0.1):
                await Sleeper(name="sleeper")({})


async def test_the_body_error_wins_over_a_warning_as_error() -> None:
    async def block_then_raise() -> None:
        async with detect_blocking(threshold=0.1):
            await Sleeper()({})
            raise KeyError("body")

    with warnings.catch_warnings():
        warnings.simplefilter("error", EventLoopBlockedWarning)
        with pytest.raises(KeyError):
            await block_then_raise()


async def test_watchdog_thread_stops_when_the_block_exits() -> None:
    async with detect_blocking():
        assert len(detector_threads()) == 1

    assert detector_threads() == []


async def test_watchdog_thread_stops_when_the_body_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with detect_blocking():
            raise RuntimeError("boom")

    assert detector_threads() == []


async def test_default_threshold_is_a_tenth_of_a_second() -> None:
    async with detect_blocking() as detector:
        assert detector.threshold == 0.1


async def test_debug_mode_threshold_follows_slow_callback_duration() -> None:
    loop = asyncio.get_running_loop()
    debug, slow = loop.get_debug(), loop.slow_callback_duration
    loop.set_debug(True)
    loop.slow_callback_duration = 0.25
    try:
        async with detect_blocking() as detector:
            assert detector.threshold == 0.25
    finally:
        loop.set_debug(debug)
        loop.slow_callback_duration = slow


@pytest.mark.parametrize("threshold", [0, -1, "0.1", True])
def test_threshold_must_be_a_positive_number(threshold: Any) -> None:
    with pytest.raises(ValueError, match="threshold"):
        detect_blocking(threshold=threshold)


async def test_a_detector_watches_one_block() -> None:
    detector = detect_blocking()
    async with detector:
        pass

    with pytest.raises(RuntimeError, match="one block"):
        async with detector:
            pass


def test_describe_names_node_duration_and_call() -> None:
    block = LoopBlock(node="fetch", duration=0.3, location="f.py:3", source="time.sleep(1)")

    assert block.describe().startswith(
        "node 'fetch' blocked the event loop for 300 ms at f.py:3: time.sleep(1)"
    )


# Detection on by default wherever async nodes run.


def blocked_warnings(recorded: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(warning.message)
        for warning in recorded
        if issubclass(warning.category, EventLoopBlockedWarning)
    ]


async def test_an_async_node_blocking_a_graph_run_warns_without_any_setup() -> None:
    graph = parallel_graph({"check_api": Sleeper(), "other": Polite()})

    with pytest.warns(EventLoopBlockedWarning) as recorded:
        await graph.ainvoke({})

    (message,) = blocked_warnings(list(recorded))
    assert message.startswith("node 'check_api' blocked the event loop for ")
    assert "time.sleep(BLOCK)" in message
    assert recorded[0].filename == __file__


async def test_set_block_detection_false_silences_the_default_detection() -> None:
    set_block_detection(False)
    try:
        with warnings.catch_warnings(record=True) as recorded:
            warnings.simplefilter("always")
            await parallel_graph({"check_api": Sleeper()}).ainvoke({})
    finally:
        set_block_detection(True)

    assert blocked_warnings(recorded) == []
    assert not default_detection.watches


async def test_inside_detect_blocking_a_block_is_reported_once() -> None:
    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        async with detect_blocking(threshold=0.1):
            await Sleeper(name="sleeper")({})

    assert len(blocked_warnings(recorded)) == 1


async def test_an_async_node_call_starts_one_watchdog_for_its_loop() -> None:
    loop = asyncio.get_running_loop()
    await Polite()({})
    watch = default_detection.watches[loop]
    await Polite()({})

    assert default_detection.watches[loop] is watch
    assert default_detector_threads() != []


def default_detector_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == DEFAULT_THREAD_NAME]


def run_script(script: str, **environment: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **environment},
    )
    return completed.stdout.strip() + completed.stderr.strip()


BLOCKING_RUN = """
    import asyncio, time, warnings
    from act_operator_lib import AsyncBaseNode

    class Sleeper(AsyncBaseNode):
        async def execute(self, state):
            time.sleep(0.3)
            return {}

    with warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        asyncio.run(Sleeper()({}))
    print(sum(w.category.__name__ == "EventLoopBlockedWarning" for w in recorded))
"""


def test_the_environment_variable_switches_the_default_detection_off() -> None:
    assert run_script(BLOCKING_RUN) == "1"
    assert run_script(BLOCKING_RUN, ACT_OPERATOR_LIB_BLOCK_DETECTION="off") == "0"


def test_a_process_that_never_runs_an_async_node_starts_no_thread() -> None:
    output = run_script(
        """
        import threading
        from act_operator_lib import BaseNode

        class Upper(BaseNode):
            def execute(self, state):
                return {}

        Upper()({})
        print(sorted(thread.name for thread in threading.enumerate()))
        """
    )
    assert output == "['MainThread']"
