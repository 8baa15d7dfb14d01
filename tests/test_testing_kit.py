"""The testing kit: run_node, the virtual clock, stream capture, fakes, blocking-call checks."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import time
from pathlib import Path
from typing import Any, TypedDict

import pytest
import uvloop
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, RetryPolicy
from pydantic import BaseModel

from act_operator_lib import AsyncBaseNode, BaseNode, emit
from act_operator_lib.testing import (
    BlockingCallError,
    NodeRun,
    VirtualClock,
    assert_no_blocking_calls,
    capture_custom_stream,
    fake_chat_model,
    run_node,
    run_node_sync,
    virtual_clock,
)
from act_operator_lib.testing.pytest_plugin import NodeRunner

pytest_plugins = ["pytester"]


class Greet(AsyncBaseNode):
    async def execute(self, state):
        return {"greeting": f"hello {state['name']}"}


class Progress(AsyncBaseNode):
    async def execute(self, state, runtime):
        runtime.stream.send({"step": 1})
        emit({"step": 2})
        return {}


class Uppercase(BaseNode):
    def execute(self, state):
        return {"text": state["text"].upper()}


@dataclasses.dataclass
class Person:
    name: str
    greeting: str = ""


class PersonModel(BaseModel):
    name: str
    greeting: str = ""


class GreetAttribute(AsyncBaseNode):
    async def execute(self, state):
        return {"greeting": f"hello {state.name}"}


class Counts(TypedDict, total=False):
    count: int


class Increment(AsyncBaseNode):
    async def execute(self, state):
        return Command(update={"count": state["count"] + 1})


class SlowWithTimeout(AsyncBaseNode):
    async def execute(self, state):
        try:
            async with asyncio.timeout(5):
                await asyncio.sleep(60)
        except TimeoutError:
            return {"timed_out": True}
        return {"timed_out": False}


# run_node


async def test_run_node_returns_the_update_and_the_merged_state():
    run = await run_node(Greet(), {"name": "Ada"})

    assert run.node == "Greet"
    assert run.update == {"greeting": "hello Ada"}
    assert run.state == {"name": "Ada", "greeting": "hello Ada"}


async def test_run_node_collects_every_custom_stream_item():
    run = await run_node(Progress(), {})

    assert run.custom == ({"step": 1}, {"step": 2})


async def test_run_node_infers_a_dataclass_schema():
    run = await run_node(GreetAttribute(), Person(name="Ada"))

    assert run.state == {"name": "Ada", "greeting": "hello Ada"}


async def test_run_node_infers_a_pydantic_schema():
    run = await run_node(GreetAttribute(), PersonModel(name="Ada"))

    assert run.update == {"greeting": "hello Ada"}


async def test_run_node_uses_an_explicit_state_schema_for_command_updates():
    run = await run_node(Increment(), {"count": 1}, state_schema=Counts)

    assert run.state == {"count": 2}


async def test_run_node_rejects_a_state_it_cannot_infer_a_schema_from():
    with pytest.raises(TypeError, match="state_schema="):
        await run_node(Greet(), ["not", "a", "state"])


async def test_run_node_passes_config_context_and_store_to_the_node():
    class Inspect(AsyncBaseNode):
        async def execute(self, state, config, runtime):
            await runtime.store.aput(("notes",), "n1", {"seen": True})
            return {
                "thread": self.get_thread_id(config),
                "user": runtime.context["user"],
            }

    store = InMemoryStore()
    run = await run_node(
        Inspect(),
        {},
        config={"configurable": {"thread_id": "t-1"}},
        context={"user": "ada"},
        store=store,
    )

    assert run.update == {"thread": "t-1", "user": "ada"}
    item = await store.aget(("notes",), "n1")
    assert item is not None
    assert item.value == {"seen": True}


async def test_run_node_applies_langgraph_node_options(virtual_clock):
    attempts: list[int] = []

    class Flaky(AsyncBaseNode):
        async def execute(self, state):
            attempts.append(len(attempts) + 1)
            if len(attempts) < 3:
                raise ConnectionError("try again")
            return {"attempts": len(attempts)}

    policy = RetryPolicy(max_attempts=3, initial_interval=10, jitter=False)
    with virtual_clock.measure() as stopwatch:
        run = await run_node(Flaky(), {}, node_options={"retry_policy": policy})

    assert run.update == {"attempts": 3}
    assert stopwatch.seconds == 10 + 20


async def test_run_node_propagates_the_node_error():
    class Broken(AsyncBaseNode):
        async def execute(self, state):
            raise LookupError("no such user")

    with pytest.raises(LookupError, match="no such user"):
        await run_node(Broken(), {})


async def test_node_run_is_frozen():
    run = await run_node(Greet(), {"name": "Ada"})

    with pytest.raises(dataclasses.FrozenInstanceError):
        run.update = {}  # type: ignore[misc]


@dataclasses.dataclass(frozen=True)
class CallStatistics:
    calls: int
    failures: int
    last_error: str | None


async def test_run_node_reports_statistics_before_and_after():
    class Counted(AsyncBaseNode):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.calls = 0

        async def execute(self, state):
            self.calls += 1
            return {}

        def statistics(self) -> CallStatistics:
            return CallStatistics(calls=self.calls, failures=0, last_error=None)

    node = Counted()
    await run_node(node, {})
    run = await run_node(node, {})

    assert run.statistics_before == CallStatistics(calls=1, failures=0, last_error=None)
    assert run.statistics == CallStatistics(calls=2, failures=0, last_error=None)
    assert run.statistics_delta() == {"calls": 1}


async def test_run_node_reports_the_statistics_of_a_library_node():
    node = Greet()

    run = await run_node(node, {"name": "Ada"})

    assert run.statistics == node.statistics()
    assert run.statistics_delta()["calls"] == 1
    assert run.statistics_delta()["successes"] == 1


async def test_run_node_has_no_statistics_for_a_node_without_them():
    async def plain_node(state: dict[str, Any]) -> dict[str, Any]:
        return {"seen": True}

    run = await run_node(plain_node, {})

    assert run.statistics is None
    assert run.statistics_delta() == {}


def test_run_node_sync_runs_a_sync_node():
    run = run_node_sync(Uppercase(), {"text": "hi"})

    assert run.state == {"text": "HI"}


def test_run_node_sync_runs_an_async_node():
    run = run_node_sync(Greet(), {"name": "Ada"})

    assert run.update == {"greeting": "hello Ada"}


async def test_run_node_sync_refuses_to_run_inside_an_event_loop():
    with pytest.raises(RuntimeError, match="await run_node"):
        run_node_sync(Greet(), {"name": "Ada"})


async def test_node_runner_fixture_remembers_each_run(node_runner):
    first = await node_runner(Greet(), {"name": "Ada"})
    second = await node_runner(Greet(), {"name": "Bob"})

    assert isinstance(node_runner, NodeRunner)
    assert node_runner.runs == [first, second]
    assert all(isinstance(run, NodeRun) for run in node_runner.runs)


# virtual clock


async def test_virtual_clock_fixture_makes_sleep_take_no_wall_time(virtual_clock):
    start = virtual_clock.now
    await asyncio.sleep(3600)

    assert virtual_clock.now - start == 3600


@pytest.mark.virtual_clock
async def test_virtual_clock_marker_fires_wait_for_timeouts_on_virtual_time():
    clock = VirtualClock()
    with clock.measure() as stopwatch, pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.sleep(60), timeout=5)

    assert stopwatch.seconds == 5


async def test_virtual_clock_keeps_the_order_of_timers(virtual_clock):
    finished: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(name)

    async with asyncio.TaskGroup() as group:
        group.create_task(sleeper("slow", 2))
        group.create_task(sleeper("fast", 1))
        group.create_task(sleeper("slowest", 3))

    assert finished == ["fast", "slow", "slowest"]


async def test_a_five_second_node_timeout_fires_on_virtual_time(virtual_clock):
    with virtual_clock.measure() as stopwatch:
        run = await run_node(SlowWithTimeout(), {})

    assert run.update == {"timed_out": True}
    assert stopwatch.seconds == 5


def _node_timeout_supported() -> bool:
    try:
        SlowWithTimeout(timeout=5)
    except TypeError:
        return False
    return True


@pytest.mark.skipif(not _node_timeout_supported(), reason="AsyncBaseNode has no timeout= yet")
async def test_the_node_timeout_option_fires_on_virtual_time(virtual_clock):
    class Sleeper(AsyncBaseNode):
        async def execute(self, state):
            await asyncio.sleep(60)
            return {}

    with virtual_clock.measure() as stopwatch, pytest.raises(TimeoutError):
        await run_node(Sleeper(timeout=5), {})

    assert stopwatch.seconds == 5


@pytest.mark.asyncio_loop_only
async def test_virtual_clock_context_manager_works_without_the_fixture():
    with virtual_clock() as clock, clock.measure() as stopwatch:
        await asyncio.sleep(42)

    assert stopwatch.seconds == 42


def test_virtual_clock_context_manager_names_the_event_loop_it_cannot_patch():
    async def sleep_on_virtual_time() -> None:
        with virtual_clock():
            await asyncio.sleep(1)

    loop = uvloop.new_event_loop()
    try:
        with pytest.raises(RuntimeError, match=r"asyncio's own event loop.*uvloop\.Loop"):
            loop.run_until_complete(sleep_on_virtual_time())
    finally:
        loop.close()


async def test_virtual_clock_now_fails_clearly_when_the_clock_is_off():
    with pytest.raises(RuntimeError, match="virtual clock is not active"):
        _ = VirtualClock().now


# custom stream capture


async def test_custom_stream_fixture_captures_emits_outside_a_graph(custom_stream):
    await Progress()({})

    assert custom_stream == [{"step": 1}, {"step": 2}]


async def test_capture_custom_stream_stops_capturing_when_the_block_ends():
    with capture_custom_stream() as stream:
        emit("inside")
    emit("outside")

    assert stream == ["inside"]


# fake chat model


class Answer(AsyncBaseNode):
    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    async def execute(self, state):
        message = await self.model.ainvoke(state["question"])
        return {"answer": message.content}


async def test_fake_chat_model_answers_in_order():
    node = Answer(model=fake_chat_model(["Paris", "Rome"]))

    first = await run_node(node, {"question": "capital of France?"})
    second = await run_node(node, {"question": "capital of Italy?"})

    assert [first.update, second.update] == [{"answer": "Paris"}, {"answer": "Rome"}]


async def test_fake_chat_model_fixture_builds_models(fake_chat_model):
    node = Answer(model=fake_chat_model(["42"]))

    run = await run_node(node, {"question": "?"})

    assert run.update == {"answer": "42"}


# blocking calls


class SleepsBlocking(AsyncBaseNode):
    async def execute(self, state):
        time.sleep(0.001)
        return {}


async def test_assert_no_blocking_calls_names_time_sleep():
    with (
        pytest.raises(BlockingCallError, match=r"time\.sleep") as caught,
        assert_no_blocking_calls(),
    ):
        await run_node(SleepsBlocking(), {})

    assert caught.value.calls == ("time.sleep",)


async def test_assert_no_blocking_calls_catches_sync_file_reads(tmp_path: Path):
    path = tmp_path / "data.txt"
    path.write_text("data")

    class ReadsFile(AsyncBaseNode):
        async def execute(self, state):
            with open(path) as file:
                return {"data": file.read()}

    with pytest.raises(BlockingCallError, match="read"), assert_no_blocking_calls():
        await run_node(ReadsFile(), {})


async def test_assert_no_blocking_calls_catches_sync_sockets():
    left, right = socket.socketpair()

    class UsesSocket(AsyncBaseNode):
        async def execute(self, state):
            left.send(b"ping")
            return {}

    try:
        with pytest.raises(BlockingCallError, match="socket"), assert_no_blocking_calls():
            await run_node(UsesSocket(), {})
    finally:
        left.close()
        right.close()


async def test_assert_no_blocking_calls_reports_a_call_the_node_swallowed():
    class Swallows(AsyncBaseNode):
        async def execute(self, state):
            try:
                time.sleep(0.001)
            except Exception:
                return {"swallowed": True}
            return {"swallowed": False}

    with pytest.raises(BlockingCallError, match=r"time\.sleep"), assert_no_blocking_calls():
        await run_node(Swallows(), {})


async def test_assert_no_blocking_calls_allows_work_in_threads():
    class Offloads(AsyncBaseNode):
        async def execute(self, state):
            await asyncio.to_thread(time.sleep, 0.001)
            return {"done": True}

    with assert_no_blocking_calls():
        run = await run_node(Offloads(), {})

    assert run.update == {"done": True}


async def test_assert_no_blocking_calls_passes_for_a_non_blocking_node():
    with assert_no_blocking_calls():
        run = await run_node(Greet(), {"name": "Ada"})

    assert run.update == {"greeting": "hello Ada"}


async def test_assert_no_blocking_calls_works_as_a_decorator():
    @assert_no_blocking_calls()
    async def scenario() -> None:
        await run_node(SleepsBlocking(), {})

    with pytest.raises(BlockingCallError, match=r"time\.sleep"):
        await scenario()


async def test_assert_no_blocking_calls_restores_the_patched_functions():
    original_sleep = time.sleep
    with pytest.raises(BlockingCallError), assert_no_blocking_calls():
        time.sleep(0)

    assert time.sleep is original_sleep


async def test_assert_no_blocking_calls_refuses_to_nest():
    with (
        assert_no_blocking_calls(),
        pytest.raises(RuntimeError, match="already active"),
        assert_no_blocking_calls(),
    ):
        pass


@pytest.mark.no_blocking_calls
async def test_no_blocking_calls_marker_allows_a_non_blocking_test():
    await run_node(Greet(), {"name": "Ada"})


# the plugin, as a user installing the library gets it

_FRESH_PROJECT_INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""


def test_plugin_fixtures_need_no_conftest(pytester: pytest.Pytester):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makepyfile(
        test_user="""
        import asyncio
        from act_operator_lib import AsyncBaseNode, emit

        class Greet(AsyncBaseNode):
            async def execute(self, state):
                emit("greeting")
                await asyncio.sleep(30)
                return {"greeting": "hello " + state["name"]}

        async def test_node_runner(node_runner, virtual_clock):
            start = virtual_clock.now
            run = await node_runner(Greet(), {"name": "Ada"})
            assert run.update == {"greeting": "hello Ada"}
            assert run.custom == ("greeting",)
            assert virtual_clock.now - start == 30

        async def test_custom_stream(custom_stream):
            emit("x")
            assert custom_stream == ["x"]

        def test_fake_chat_model(fake_chat_model):
            assert fake_chat_model(["hi"]).invoke("?").content == "hi"

        async def test_no_blocking_calls(no_blocking_calls):
            await asyncio.sleep(0)
        """
    )

    result = pytester.runpytest_subprocess("-W", "error")

    result.assert_outcomes(passed=4)


def test_plugin_no_blocking_calls_marker_fails_a_blocking_test(pytester: pytest.Pytester):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makepyfile(
        test_user="""
        import time
        import pytest

        @pytest.mark.no_blocking_calls
        async def test_blocks():
            time.sleep(0)
        """
    )

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*BlockingCallError*time.sleep*"])


def test_plugin_virtual_clock_names_pytest_asyncio_when_it_is_missing(
    pytester: pytest.Pytester,
):
    pytester.makepyfile(
        test_user="""
        def test_clock(virtual_clock):
            pass
        """
    )

    result = pytester.runpytest_subprocess("-p", "no:asyncio")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*virtual_clock fixture and marker need pytest-asyncio*"])


def test_plugin_virtual_clock_names_the_testing_extra_when_looptime_is_missing(
    pytester: pytest.Pytester,
):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makeconftest(
        """
        import sys
        sys.modules["looptime"] = None
        """
    )
    pytester.makepyfile(
        test_user="""
        async def test_clock(virtual_clock):
            pass
        """
    )

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*act-operator-lib*testing*"])


def test_plugin_virtual_clock_names_the_event_loop_it_cannot_patch(pytester: pytest.Pytester):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makeconftest(
        """
        import uvloop

        def pytest_asyncio_loop_factories(config, item):
            return {"uvloop": uvloop.new_event_loop}
        """
    )
    pytester.makepyfile(
        test_user="""
        import asyncio

        async def test_clock(virtual_clock):
            await asyncio.sleep(1)
        """
    )

    result = pytester.runpytest_subprocess("-W", "error")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*virtual clock needs asyncio's own event loop*uvloop.Loop*"])


# the virtual clock and other processes

_SERVER_IN_A_SUBPROCESS = """
import socket, sys
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
connection, _ = listener.accept()
connection.recv(100)
if sys.argv[1] == "answer":
    connection.sendall(b"pong\\n")
connection.recv(100)  # until the client closes
"""

_SERVER_FIXTURE = f"""
import asyncio, subprocess, sys
import pytest

SERVER = {_SERVER_IN_A_SUBPROCESS!r}

def start_server(mode):
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, mode], stdout=subprocess.PIPE, text=True
    )
    return process, int(process.stdout.readline())

@pytest.fixture
def silent_server():
    process, port = start_server("silent")
    yield port
    process.kill()
    process.wait()
    process.stdout.close()

@pytest.fixture
def answering_server():
    process, port = start_server("answer")
    yield port
    process.kill()
    process.wait()
    process.stdout.close()

async def ask(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"ping\\n")
        async with asyncio.timeout(5):
            return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()
"""


def test_a_virtual_clock_test_that_waits_on_another_process_fails_naming_the_cause(
    pytester: pytest.Pytester,
):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makeconftest(_SERVER_FIXTURE)
    pytester.makepyfile(
        test_user="""
        from conftest import ask

        async def test_asks_the_server(virtual_clock, silent_server):
            assert await ask(silent_server) == b"pong\\n"
        """
    )

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*TimeoutError*",
            "*The virtual clock advanced 5 s in * s of real time while this test talked to "
            "127.0.0.1:*",
            "*If this test waits on that peer, run the test on real time*@pytest.mark.real_time*",
        ]
    )


def test_a_failing_virtual_clock_test_that_talked_to_no_one_gets_no_such_note(
    pytester: pytest.Pytester,
):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makepyfile(
        test_user="""
        import asyncio

        async def test_times_out(virtual_clock):
            async with asyncio.timeout(5):
                await asyncio.sleep(10)
        """
    )

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TimeoutError*"])
    result.stdout.no_fnmatch_line("*talked to*")


def test_the_real_time_marker_takes_one_test_off_a_module_marked_virtual_clock(
    pytester: pytest.Pytester,
):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makeconftest(_SERVER_FIXTURE)
    pytester.makepyfile(
        test_user="""
        import asyncio
        import pytest
        from conftest import ask

        pytestmark = pytest.mark.virtual_clock

        @pytest.mark.real_time
        async def test_asks_the_server(answering_server):
            assert not getattr(asyncio.get_running_loop(), "looptime_on", False)
            assert await ask(answering_server) == b"pong\\n"

        async def test_sleeps_on_virtual_time():
            assert asyncio.get_running_loop().looptime_on
        """
    )

    result = pytester.runpytest_subprocess("-W", "error")

    result.assert_outcomes(passed=2)


def test_the_real_time_marker_and_the_virtual_clock_fixture_together_fail_clearly(
    pytester: pytest.Pytester,
):
    pytester.makeini(_FRESH_PROJECT_INI)
    pytester.makepyfile(
        test_user="""
        import pytest

        @pytest.mark.real_time
        async def test_both(virtual_clock):
            pass
        """
    )

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*marked real_time but requests the virtual_clock fixture*"])


@pytest.mark.asyncio_loop_only
async def test_the_virtual_clock_block_names_a_subprocess_it_waited_on():
    started: list[asyncio.subprocess.Process] = []

    async def start_and_wait_for_a_subprocess() -> None:
        started.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; sys.stdin.read()", stdin=asyncio.subprocess.PIPE
            )
        )
        async with asyncio.timeout(5):
            await started[0].wait()

    with pytest.raises(TimeoutError) as raised, virtual_clock():
        await start_and_wait_for_a_subprocess()
    (process,) = started
    assert process.stdin is not None
    process.stdin.close()
    await process.wait()

    (note,) = raised.value.__notes__
    assert note.startswith("The virtual clock advanced 5 s in ")
    assert "s of real time while this test talked to a subprocess (" in note


def test_an_unmarked_async_test_in_strict_mode_fails_naming_the_setting(
    pytester: pytest.Pytester,
):
    pytester.makeini(_FRESH_PROJECT_INI.replace("asyncio_mode = auto", "asyncio_mode = strict"))
    pytester.makepyfile(
        test_user="""
        import pytest

        async def test_unmarked(node_runner):
            pass

        @pytest.mark.asyncio
        async def test_marked(node_runner):
            pass
        """
    )

    result = pytester.runpytest_subprocess("-W", "error")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ['*test_unmarked: an async test needs pytest-asyncio*asyncio_mode = "auto"*']
    )
