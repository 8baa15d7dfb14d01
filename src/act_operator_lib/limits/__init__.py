"""Rate and concurrency limits shared by every call that uses them."""

from act_operator_lib.limits._concurrency import ConcurrencyLimiter
from act_operator_lib.limits._rate import RateLimiter
from act_operator_lib.limits._redis_base import OnUnavailable
from act_operator_lib.limits._redis_concurrency import RedisConcurrencyLimiter
from act_operator_lib.limits._redis_rate import RedisRateLimiter
from act_operator_lib.limits._statistics import LimiterStatistics

__all__ = [
    "ConcurrencyLimiter",
    "LimiterStatistics",
    "OnUnavailable",
    "RateLimiter",
    "RedisConcurrencyLimiter",
    "RedisRateLimiter",
]

# Public classes show their public home (as httpx does), not the private module.
for _public in (RedisConcurrencyLimiter, RedisRateLimiter):
    _public.__module__ = __name__
del _public
