"""The act-operator-lib pytest plugin, loaded by entry point wherever the library is installed.

Fixtures: ``node_runner``, ``virtual_clock``, ``custom_stream``, ``fake_chat_model``,
``no_blocking_calls``. Markers: ``@pytest.mark.virtual_clock`` and
``@pytest.mark.no_blocking_calls`` (the fixtures' effect without the argument), and
``@pytest.mark.real_time`` (real time for one test of a module or class marked
``virtual_clock``).

The virtual clock needs looptime and pytest-asyncio; the blocking-call check needs
blockbuster. Both are imported only when a test asks for them, so projects without
them are unaffected, and a test that asks gets a failure naming what to install.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import pytest

from act_operator_lib.streaming import capture_custom_stream
from act_operator_lib.testing._blocking import assert_no_blocking_calls
from act_operator_lib.testing._clock import (
    TESTING_EXTRA,
    VirtualClock,
    explain_waits_on_other_processes,
)
from act_operator_lib.testing._fakes import fake_chat_model as _fake_chat_model
from act_operator_lib.testing._run import NodeRun, run_node, run_node_sync

__all__ = [
    "NodeRunner",
    "custom_stream",
    "fake_chat_model",
    "no_blocking_calls",
    "node_runner",
    "virtual_clock",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "virtual_clock: run this async test on virtual time (sleeps and timeouts take no "
        "wall time); needs act-operator-lib[testing] and pytest-asyncio",
    )
    config.addinivalue_line(
        "markers",
        "real_time: run this test on real time where its module or class is marked "
        "virtual_clock (a test that talks to another process needs real time)",
    )
    config.addinivalue_line(
        "markers",
        "no_blocking_calls: fail this test if it makes a blocking call on the event loop; "
        "needs act-operator-lib[testing]",
    )


@pytest.hookimpl(tryfirst=True, wrapper=True, specname="pytest_pyfunc_call")
def pytest_pyfunc_call_without_looptime_loop_leak(
    pyfuncitem: pytest.Function,
) -> Generator[None, object, object]:
    """Keep looptime's plugin from creating (and leaking) an event loop for sync tests.

    looptime 0.9 asks the ``event_loop_policy`` fixture for the current loop before
    every test; for a sync test that call creates a new loop nobody closes, which
    ``-W error`` reports as ResourceWarning. A sync test has no loop to patch.
    """
    requested = pyfuncitem._fixtureinfo.argnames
    # pytest-asyncio replaces an async test's obj with a sync wrapper; look beneath it.
    test = getattr(pyfuncitem.obj, "__wrapped__", pyfuncitem.obj)
    if not inspect.iscoroutinefunction(test) and "event_loop_policy" not in requested:
        pyfuncitem.funcargs.pop("event_loop_policy", None)
    return (yield)


class NodeRunner:
    """The ``node_runner`` fixture: `run_node` and `run_node_sync`, remembering each run.

    Example::

        async def test_greets(node_runner):
            run = await node_runner(Greet(), {"name": "Ada"})
            assert run.update == {"greeting": "hello Ada"}
    """

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: list[NodeRun] = []
        """Every `NodeRun` of this test, oldest first."""

    async def __call__(self, node: Any, state: Any, **options: Any) -> NodeRun:
        """``await run_node(node, state, **options)``; see `run_node` for the options."""
        run = await run_node(node, state, **options)
        self.runs.append(run)
        return run

    def sync(self, node: Any, state: Any, **options: Any) -> NodeRun:
        """``run_node_sync(node, state, **options)``, for tests without an event loop."""
        run = run_node_sync(node, state, **options)
        self.runs.append(run)
        return run

    def __repr__(self) -> str:
        return f"NodeRunner(runs={len(self.runs)})"


@pytest.fixture
def node_runner() -> NodeRunner:
    """Run a node in a real one-node graph: ``run = await node_runner(node, state)``."""
    return NodeRunner()


@pytest.fixture
def fake_chat_model() -> Callable[[Iterable[Any]], Any]:
    """A factory of scripted chat models: ``model = fake_chat_model(["Paris"])``."""
    return _fake_chat_model


@pytest.fixture
def custom_stream() -> Iterator[list[Any]]:
    """What nodes awaited directly in this test wrote with ``emit`` / ``runtime.stream``."""
    with capture_custom_stream() as captured:
        yield captured


@pytest.fixture
def virtual_clock(request: pytest.FixtureRequest) -> VirtualClock:
    """Run this async test on virtual time; read it with ``virtual_clock.now``."""
    _require_virtual_clock(request.node)
    if request.node.get_closest_marker("real_time") is not None:
        pytest.fail(
            f"{request.node.nodeid}: the test is marked real_time but requests the "
            "virtual_clock fixture; drop one of them",
            pytrace=False,
        )
    request.node.stash[_EVENT_LOOP_POLICY] = request.getfixturevalue("event_loop_policy")
    return VirtualClock()


@pytest.fixture
def no_blocking_calls() -> None:
    """Fail this test if it makes a blocking call on the event loop (see the marker)."""


_EVENT_LOOP_POLICY = pytest.StashKey[Any]()


def _require_virtual_clock(item: pytest.Item) -> None:
    try:
        import looptime  # noqa: F401
    except ImportError:
        pytest.fail(
            f"{item.nodeid}: the virtual clock needs looptime: {TESTING_EXTRA}", pytrace=False
        )
    if not item.config.pluginmanager.hasplugin("asyncio"):
        pytest.fail(
            f"{item.nodeid}: the virtual_clock fixture and marker need pytest-asyncio "
            "(pip install pytest-asyncio); under another runner use "
            "`with act_operator_lib.testing.virtual_clock():` inside the test.",
            pytrace=False,
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The marker is the fixture without the argument: add it to the test's fixtures.
    for item in items:
        fixturenames = getattr(item, "fixturenames", None)
        if (
            item.get_closest_marker("virtual_clock") is not None
            and item.get_closest_marker("real_time") is None
            and isinstance(fixturenames, list)
            and "virtual_clock" not in fixturenames
        ):
            fixturenames.append("virtual_clock")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    # Enabled here, after every fixture ran, so only the test body runs on virtual time;
    # the loop is the one pytest-asyncio chose for this test, whatever its scope.
    policy = pyfuncitem.stash.get(_EVENT_LOOP_POLICY, None)
    if policy is None:
        return (yield)
    import looptime

    loop = policy.get_event_loop()
    if not isinstance(loop, asyncio.BaseEventLoop):
        # looptime patches asyncio's own loop class; on another one (uvloop) it fails
        # deep inside the loop with an AttributeError that names neither.
        pytest.fail(
            f"{pyfuncitem.nodeid}: the virtual clock needs asyncio's own event loop, but "
            f"this test runs on {type(loop).__module__}.{type(loop).__qualname__}; run "
            "the tests that use virtual time on the default loop",
            pytrace=False,
        )
    if not isinstance(loop, looptime.LoopTimeEventLoop):
        loop = looptime.patch_event_loop(loop, start=loop.time(), _enabled=False)
    if loop.looptime_on:
        return (yield)
    with loop.looptime_enabled(), explain_waits_on_other_processes(loop):
        return (yield)


_KIT_FIXTURES = frozenset(
    {"custom_stream", "fake_chat_model", "no_blocking_calls", "node_runner", "virtual_clock"}
)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # In pytest-asyncio's default strict mode an unmarked async test is not run by it,
    # and pytest's own message suggests installing a plugin that is already there.
    if not isinstance(item, pytest.Function):
        return
    test = getattr(item.obj, "__wrapped__", item.obj)
    uses_kit = _KIT_FIXTURES.intersection(item.fixturenames) or any(
        item.get_closest_marker(name) for name in ("virtual_clock", "no_blocking_calls")
    )
    if (
        not inspect.iscoroutinefunction(test)
        or not uses_kit
        or item.get_closest_marker("asyncio") is not None
        or item.get_closest_marker("anyio") is not None
    ):
        return
    try:
        mode = item.config.getini("asyncio_mode")
    except ValueError:  # pytest-asyncio is not installed
        mode = None
    if mode == "auto":
        return
    pytest.fail(
        f"{item.nodeid}: an async test needs pytest-asyncio to run it: "
        + ("" if mode else "pip install pytest-asyncio, then ")
        + 'set asyncio_mode = "auto" under [tool.pytest.ini_options] in pyproject.toml, '
        "or mark the test @pytest.mark.asyncio (pytest-asyncio's default strict mode "
        "runs only marked tests)",
        pytrace=False,
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    wanted = item.get_closest_marker("no_blocking_calls") is not None or (
        "no_blocking_calls" in getattr(item, "fixturenames", ())
    )
    if not wanted:
        return (yield)
    with assert_no_blocking_calls():
        return (yield)
