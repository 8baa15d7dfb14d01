"""act-operator-lib: fast, safe async LangGraph nodes.

Import the base classes from here or from their modules (the guide's
``from act_operator_lib.base_node import AsyncBaseNode`` is stable)::

    from act_operator_lib import AsyncBaseNode, BaseGraph, BaseNode
"""

import logging as _logging

from act_operator_lib._errors import (
    ActOperatorError,
    BlockingCallError,
    CallTimeoutError,
    DuplicateItemKeyError,
    DurableContextError,
    FunctionNotAsyncError,
    GraphDefinitionError,
    ItemTimeoutError,
    LimiterKeyConflictError,
    LimiterUnavailableError,
    MissingAwaitError,
    NodeDefinitionError,
    NodeResultError,
    NodeTimeoutError,
    RecordedItemError,
    ResourceClosedError,
    ResourceUnavailableError,
    ResultNotSerializableError,
)
from act_operator_lib.base_graph import BaseGraph
from act_operator_lib.base_node import AsyncBaseNode, BaseNode
from act_operator_lib.bridge import run_async, run_sync
from act_operator_lib.cache import cached
from act_operator_lib.concurrency import (
    AsCompleted,
    GatherResult,
    as_completed,
    first_completed,
    gather_within,
    map_concurrent,
)
from act_operator_lib.diagnostics import EventLoopBlockedWarning, detect_blocking
from act_operator_lib.durable import forget_durable, map_durable
from act_operator_lib.limits import (
    ConcurrencyLimiter,
    LimiterStatistics,
    RateLimiter,
    RedisConcurrencyLimiter,
    RedisRateLimiter,
)
from act_operator_lib.observability import NodeStatistics
from act_operator_lib.policies import AttemptObserver, call_with_policies, retry_after
from act_operator_lib.resources import (
    HTTPResource,
    PostgresResource,
    Resource,
    SQLiteResource,
)
from act_operator_lib.streaming import CustomStream, NodeRuntime, emit, heartbeat, relay_tokens

__version__ = "0.1.0"

__all__ = [
    "ActOperatorError",
    "AsCompleted",
    "AsyncBaseNode",
    "AttemptObserver",
    "BaseGraph",
    "BaseNode",
    "BlockingCallError",
    "CallTimeoutError",
    "ConcurrencyLimiter",
    "CustomStream",
    "DuplicateItemKeyError",
    "DurableContextError",
    "EventLoopBlockedWarning",
    "FunctionNotAsyncError",
    "GatherResult",
    "GraphDefinitionError",
    "HTTPResource",
    "ItemTimeoutError",
    "LimiterKeyConflictError",
    "LimiterStatistics",
    "LimiterUnavailableError",
    "MissingAwaitError",
    "NodeDefinitionError",
    "NodeResultError",
    "NodeRuntime",
    "NodeStatistics",
    "NodeTimeoutError",
    "PostgresResource",
    "RateLimiter",
    "RecordedItemError",
    "RedisConcurrencyLimiter",
    "RedisRateLimiter",
    "Resource",
    "ResourceClosedError",
    "ResourceUnavailableError",
    "ResultNotSerializableError",
    "SQLiteResource",
    "__version__",
    "as_completed",
    "cached",
    "call_with_policies",
    "detect_blocking",
    "emit",
    "first_completed",
    "forget_durable",
    "gather_within",
    "heartbeat",
    "map_concurrent",
    "map_durable",
    "relay_tokens",
    "retry_after",
    "run_async",
    "run_sync",
]

# A library logs but never configures logging: without this, Python's last-resort
# handler would print our retry/timeout warnings to stderr of apps that set up none.
_logging.getLogger("act_operator_lib").addHandler(_logging.NullHandler())
