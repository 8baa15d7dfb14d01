"""act-operator-lib: fast, safe async LangGraph nodes.

Import the base classes from here or from their modules (the guide's
``from act_operator_lib.base_node import AsyncBaseNode`` is stable)::

    from act_operator_lib import AsyncBaseNode, BaseGraph, BaseNode

Every public class and function is importable from here; each also has one home, a
public module (``act_operator_lib.limits``, ``.resources``, ``.cache``...) that lists
it in its ``__all__`` and that its ``__module__`` names. The testing kit
(``act_operator_lib.testing``) and the integrations are separate imports.
"""

import logging as _logging
from importlib import metadata as _metadata

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
from act_operator_lib._public import publish as _publish
from act_operator_lib.base_graph import (
    BaseGraph,
)
from act_operator_lib.base_node import (
    AsyncBaseNode,
    BaseNode,
)
from act_operator_lib.bridge import (
    ThreadPoolStatistics,
    run_async,
    run_sync,
    set_thread_limit,
    thread_statistics,
)
from act_operator_lib.cache import (
    CacheBackend,
    MemoryCacheBackend,
    RedisCacheBackend,
    cached,
)
from act_operator_lib.concurrency import (
    AsCompleted,
    GatherResult,
    as_completed,
    first_completed,
    gather_within,
    map_concurrent,
)
from act_operator_lib.diagnostics import (
    BlockDetector,
    EventLoopBlockedWarning,
    LoopBlock,
    detect_blocking,
    set_block_detection,
)
from act_operator_lib.durable import (
    forget_durable,
    map_durable,
)
from act_operator_lib.limits import (
    ConcurrencyLimiter,
    Limiter,
    LimiterStatistics,
    MultiRateLimiter,
    MultiRateStatistics,
    Rate,
    RateLimiter,
    RateStatistics,
    RedisConcurrencyLimiter,
    RedisMultiRateLimiter,
    RedisRateLimiter,
    Reservation,
    SupportsAcquire,
    SupportsPause,
    SupportsRelease,
)
from act_operator_lib.observability import (
    NodeCallObserver,
    NodeObserver,
    NodeStatistics,
    add_observer,
    remove_observer,
    set_tracer_provider,
    snapshot,
)
from act_operator_lib.policies import (
    AttemptObserver,
    call_with_policies,
    retry_after,
)
from act_operator_lib.resources import (
    BoundResource,
    HTTPResource,
    PostgresResource,
    Resource,
    ResourceStatistics,
    SQLiteResource,
    aclose_resources,
    read_bytes,
    read_text,
    write_bytes,
    write_text,
)
from act_operator_lib.streaming import (
    CustomStream,
    NodeRuntime,
    capture_custom_stream,
    emit,
    heartbeat,
    relay_tokens,
    to_node_runtime,
)

__version__ = _metadata.version("act-operator-lib")

__all__ = [
    "ActOperatorError",
    "AsCompleted",
    "AsyncBaseNode",
    "AttemptObserver",
    "BaseGraph",
    "BaseNode",
    "BlockDetector",
    "BlockingCallError",
    "BoundResource",
    "CacheBackend",
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
    "Limiter",
    "LimiterKeyConflictError",
    "LimiterStatistics",
    "LimiterUnavailableError",
    "LoopBlock",
    "MemoryCacheBackend",
    "MissingAwaitError",
    "MultiRateLimiter",
    "MultiRateStatistics",
    "NodeCallObserver",
    "NodeDefinitionError",
    "NodeObserver",
    "NodeResultError",
    "NodeRuntime",
    "NodeStatistics",
    "NodeTimeoutError",
    "PostgresResource",
    "Rate",
    "RateLimiter",
    "RateStatistics",
    "RecordedItemError",
    "RedisCacheBackend",
    "RedisConcurrencyLimiter",
    "RedisMultiRateLimiter",
    "RedisRateLimiter",
    "Reservation",
    "Resource",
    "ResourceClosedError",
    "ResourceStatistics",
    "ResourceUnavailableError",
    "ResultNotSerializableError",
    "SQLiteResource",
    "SupportsAcquire",
    "SupportsPause",
    "SupportsRelease",
    "ThreadPoolStatistics",
    "__version__",
    "aclose_resources",
    "add_observer",
    "as_completed",
    "cached",
    "call_with_policies",
    "capture_custom_stream",
    "detect_blocking",
    "emit",
    "first_completed",
    "forget_durable",
    "gather_within",
    "heartbeat",
    "map_concurrent",
    "map_durable",
    "read_bytes",
    "read_text",
    "relay_tokens",
    "remove_observer",
    "retry_after",
    "run_async",
    "run_sync",
    "set_block_detection",
    "set_thread_limit",
    "set_tracer_provider",
    "snapshot",
    "thread_statistics",
    "to_node_runtime",
    "write_bytes",
    "write_text",
]

# The exceptions are defined in a private module; their home is the package itself.
_publish(__name__, globals())

# A library logs but never configures logging: without this, Python's last-resort
# handler would print our retry/timeout warnings to stderr of apps that set up none.
_logging.getLogger("act_operator_lib").addHandler(_logging.NullHandler())
