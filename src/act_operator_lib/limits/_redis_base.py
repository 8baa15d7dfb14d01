"""What both Redis limiters share: the connection, the key, the fallback rules."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Final, Literal

from act_operator_lib._errors import LimiterKeyConflictError, LimiterUnavailableError
from act_operator_lib._redis_client import RedisHandle, check_key, hash_tagged
from act_operator_lib.limits._arguments import positive_number
from act_operator_lib.limits._base import Limiter
from act_operator_lib.limits._redis_scripts import KIND_ERROR

if TYPE_CHECKING:
    from act_operator_lib._redis_client import Client

__all__ = ["OnUnavailable", "RedisLimiterBase", "logger"]

logger = logging.getLogger("act_operator_lib.limits")

OnUnavailable = Literal["fail", "allow", "local"]
"""What a Redis limiter does when Redis is unavailable: raise, let calls through,
or fall back to an in-process limiter with the same parameters."""

_ON_UNAVAILABLE: Final = ("fail", "allow", "local")
_RETRY_REDIS_AFTER: Final = 1.0
"""With "allow" / "local", seconds to keep using the fallback before asking Redis again."""


def _check_on_unavailable(owner: str, value: object) -> OnUnavailable:
    if value == "fail":
        return "fail"
    if value == "allow":
        return "allow"
    if value == "local":
        return "local"
    raise ValueError(f"{owner} on_unavailable must be one of {_ON_UNAVAILABLE}, got {value!r}")


def _conflict(error: Exception, key: str, kind: str) -> LimiterKeyConflictError | None:
    """The key conflict an error reply from one of the scripts reports, if any."""
    message = str(error)
    if KIND_ERROR not in message:
        return None
    found = message.split(KIND_ERROR, 1)[1].strip()
    return LimiterKeyConflictError(key, kind, found)


class RedisLimiterBase(Limiter):
    """What both Redis limiters share: the handle, the fallback and the bookkeeping."""

    __slots__ = (
        "_fallback",
        "_granted",
        "_handle",
        "_key",
        "_on_unavailable",
        "_redis_key",
        "_retry_redis_at",
        "_total_wait",
        "_waiting",
    )

    _kind: str

    def __init__(
        self,
        redis: str | Client,
        key: str,
        *,
        owner: str,
        timeout: float,
        on_unavailable: OnUnavailable,
        read_slack: float = 0.0,
    ) -> None:
        self._key = check_key(owner, "key", key)
        self._on_unavailable = _check_on_unavailable(owner, on_unavailable)
        timeout = positive_number(owner, "timeout", timeout)
        self._handle = RedisHandle(redis, owner=owner, timeout=timeout, read_slack=read_slack)
        # On a cluster every key of one limiter must hash to one slot, so one script
        # can use them all: the user's key gets a hash tag unless it has one.
        self._redis_key = hash_tagged(self._key) if self._handle.cluster else self._key
        self._fallback: Limiter | None = None
        self._retry_redis_at = -math.inf
        self._granted = 0
        self._waiting = 0
        self._total_wait = 0.0

    @property
    def key(self) -> str:
        """The key every process sharing this limit uses (on a Redis Cluster the
        Redis keys are ``{key}``, ``{key}:...`` unless ``key`` has a hash tag)."""
        return self._key

    async def aclose(self) -> None:
        """Close the Redis client if this limiter built it from a URL."""
        await self._handle.aclose()

    def _use_redis(self, now: float) -> bool:
        """False while a recent failure sends "allow" / "local" callers to the fallback."""
        return now >= self._retry_redis_at

    def _unavailable(self, error: LimiterUnavailableError, now: float) -> None:
        """Re-raise for "fail"; otherwise log and keep off Redis for a while."""
        if self._on_unavailable == "fail":
            raise error
        if self._retry_redis_at < now:
            logger.warning("%s; using on_unavailable=%r", error, self._on_unavailable)
        self._retry_redis_at = now + _RETRY_REDIS_AFTER

    def _raise_conflict(self, error: Exception) -> None:
        conflict = _conflict(error, self._key, self._kind)
        if conflict is not None:
            raise conflict from None
