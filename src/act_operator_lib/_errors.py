"""The exceptions act-operator-lib raises, and what to catch.

Every exception derives from `ActOperatorError` and also from the builtin a caller
would already catch for that kind of failure, so existing ``except TimeoutError``
or ``except TypeError`` code keeps working::

    ActOperatorError
    ├── NodeDefinitionError (TypeError)   a node class is defined wrongly
    ├── NodeResultError (TypeError)       execute() returned something LangGraph can't merge
    │   └── MissingAwaitError             ... a coroutine: an ``await`` was forgotten
    └── NodeTimeoutError (TimeoutError)   an attempt ran past the node's timeout

Messages name the node (or class, limiter, argument) and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "ActOperatorError",
    "MissingAwaitError",
    "NodeDefinitionError",
    "NodeResultError",
    "NodeTimeoutError",
]


class ActOperatorError(Exception):
    """Base class of every exception raised by act-operator-lib."""


class NodeDefinitionError(ActOperatorError, TypeError):
    """A node class is defined in a way the library cannot run.

    Raised when the class statement runs, not at the first call, so the mistake
    surfaces at import time::

        class Broken(AsyncBaseNode):
            def execute(self, state):  # NodeDefinitionError: use 'async def'
                ...
    """


class NodeResultError(ActOperatorError, TypeError):
    """A node's execute() returned a value LangGraph cannot merge into the state."""


class MissingAwaitError(NodeResultError):
    """A node returned a coroutine (or a dict holding one): an ``await`` is missing.

    The coroutine is closed before this is raised, so no "coroutine was never
    awaited" RuntimeWarning follows the error.
    """


class NodeTimeoutError(ActOperatorError, TimeoutError):
    """A node attempt ran longer than its ``timeout`` and was cancelled.

    Attributes:
        node: The node's name.
        timeout: The limit, in seconds.
    """

    def __init__(self, node: str, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        super().__init__(
            f"node {node!r} timed out after {timeout:g}s; raise its `timeout` "
            "or make the work faster"
        )

    def __reduce__(self) -> tuple[type[NodeTimeoutError], tuple[str, float]]:
        return (type(self), (self.node, self.timeout))
