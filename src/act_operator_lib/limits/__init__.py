"""Rate and concurrency limits shared by every call that uses them."""

from act_operator_lib._public import publish
from act_operator_lib.limits._concurrency import ConcurrencyLimiter
from act_operator_lib.limits._multi_rate import (
    MultiRateLimiter,
    MultiRateStatistics,
    Rate,
    RateStatistics,
)
from act_operator_lib.limits._protocols import (
    Limiter,
    SupportsAcquire,
    SupportsPause,
    SupportsRelease,
)
from act_operator_lib.limits._rate import RateLimiter
from act_operator_lib.limits._redis_base import OnUnavailable
from act_operator_lib.limits._redis_concurrency import RedisConcurrencyLimiter
from act_operator_lib.limits._redis_multi_rate import RedisMultiRateLimiter
from act_operator_lib.limits._redis_rate import RedisRateLimiter
from act_operator_lib.limits._reservation import Reservation
from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = [
    "ConcurrencyLimiter",
    "Limiter",
    "LimiterStatistics",
    "MultiRateLimiter",
    "MultiRateStatistics",
    "OnUnavailable",
    "Rate",
    "RateLimiter",
    "RateStatistics",
    "RedisConcurrencyLimiter",
    "RedisMultiRateLimiter",
    "RedisRateLimiter",
    "Reservation",
    "SupportsAcquire",
    "SupportsPause",
    "SupportsRelease",
]

publish(__name__, globals())
