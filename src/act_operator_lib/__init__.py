"""act-operator-lib: fast, safe async LangGraph nodes.

Import the base classes from here or from their modules (the guide's
``from act_operator_lib.base_node import AsyncBaseNode`` is stable)::

    from act_operator_lib import AsyncBaseNode, BaseGraph, BaseNode
"""

from act_operator_lib._errors import (
    ActOperatorError,
    MissingAwaitError,
    NodeDefinitionError,
    NodeResultError,
    NodeTimeoutError,
)
from act_operator_lib.base_graph import BaseGraph
from act_operator_lib.base_node import AsyncBaseNode, BaseNode
from act_operator_lib.limits import LimiterStatistics
from act_operator_lib.streaming import CustomStream, NodeRuntime, emit, heartbeat

__version__ = "0.1.0"

__all__ = [
    "ActOperatorError",
    "AsyncBaseNode",
    "BaseGraph",
    "BaseNode",
    "CustomStream",
    "LimiterStatistics",
    "MissingAwaitError",
    "NodeDefinitionError",
    "NodeResultError",
    "NodeRuntime",
    "NodeTimeoutError",
    "__version__",
    "emit",
    "heartbeat",
]
