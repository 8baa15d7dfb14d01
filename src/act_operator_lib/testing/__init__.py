"""Test helpers for act-operator-lib nodes: real graphs, virtual time, no blocking.

A separate import from the main package (it is for tests). Installed with the
library, the pytest plugin gives every project these fixtures with no conftest:
``node_runner``, ``virtual_clock``, ``custom_stream``, ``fake_chat_model``,
``no_blocking_calls``, and the marker ``@pytest.mark.virtual_clock``::

    from act_operator_lib.testing import run_node

    async def test_greets(virtual_clock):
        run = await run_node(Greet(), {"name": "Ada"})
        assert run.update == {"greeting": "hello Ada"}

See docs/testing.md.
"""

# BlockingCallError and capture_custom_stream are importable from here too; their
# homes are the package root and act_operator_lib.streaming.
from act_operator_lib._errors import BlockingCallError as BlockingCallError
from act_operator_lib._public import publish
from act_operator_lib.streaming import capture_custom_stream as capture_custom_stream
from act_operator_lib.testing._blocking import assert_no_blocking_calls
from act_operator_lib.testing._clock import Stopwatch, VirtualClock, virtual_clock
from act_operator_lib.testing._fakes import fake_chat_model
from act_operator_lib.testing._run import NodeRun, run_node, run_node_sync

__all__ = [
    "NodeRun",
    "Stopwatch",
    "VirtualClock",
    "assert_no_blocking_calls",
    "fake_chat_model",
    "run_node",
    "run_node_sync",
    "virtual_clock",
]

publish(__name__, globals())
