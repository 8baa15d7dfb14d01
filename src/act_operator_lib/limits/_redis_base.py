"""What both Redis limiters share: the connection, the key, the fallback rules."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

from act_operator_lib._errors import LimiterKeyConflictError, LimiterUnavailableError
from act_operator_lib._redis_client import RedisHandle, Script, check_key, hash_tagged
from act_operator_lib._validation import non_negative_number, positive_number
from act_operator_lib.limits._base import _LimiterBase
from act_operator_lib.limits._protocols import SupportsPause
from act_operator_lib.limits._redis_scripts import KIND_ERROR

if TYPE_CHECKING:
    from act_operator_lib._redis_client import Client

__all__ = ["UNAVAILABLE", "OnUnavailable", "RedisLimiterBase", "logger"]

logger = logging.getLogger("act_operator_lib.limits")

OnUnavailable = Literal["fail", "allow", "local"]
"""What a Redis limiter does when Redis is unavailable: raise, let calls through,
or fall back to an in-process limiter with the same parameters."""

_ON_UNAVAILABLE: Final = ("fail", "allow", "local")
_RETRY_REDIS_AFTER: Final = 1.0
"""With "allow" / "local", seconds to keep using the fallback before asking Redis again."""
UNAVAILABLE: Final = object()
"""What `RedisLimiterBase._run` returns when Redis is unavailable and a fallback is named."""


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


class RedisLimiterBase(_LimiterBase):
    """What both Redis limiters share: the handle, the fallback and the bookkeeping."""

    __slots__ = (
        "_fallback",
        "_granted",
        "_handle",
        "_key",
        "_on_unavailable",
        "_pause_script",
        "_paused_until",
        "_pauses",
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
        self._fallback: _LimiterBase | None = None
        self._retry_redis_at = -math.inf
        self._granted = 0
        self._waiting = 0
        self._total_wait = 0.0
        self._pauses = 0
        self._paused_until = -math.inf

    @property
    def key(self) -> str:
        """The key every process sharing this limit uses (on a Redis Cluster the
        Redis keys are ``{key}``, ``{key}:...`` unless ``key`` has a hash tag)."""
        return self._key

    async def aclose(self) -> None:
        """Close the Redis client if this limiter built it from a URL."""
        await self._handle.aclose()

    async def pause(self, seconds: float) -> None:
        """Grant nothing to any process sharing ``key`` for ``seconds`` from now.

        Example::

            await limiter.pause(2.0)   # e.g. a server answered 429 with retry-after: 2

        Timed by the Redis server's clock, so every process and machine sharing
        the key waits the same pause. A later pause extends a running one, never
        shortens it; callers already waiting keep their places. With Redis
        unavailable: ``"fail"`` raises, ``"local"`` pauses this process's
        fallback (teaching an adaptive one), ``"allow"`` ignores it.

        Raises:
            TypeError, ValueError: ``seconds`` is not a finite number >= 0.
            LimiterUnavailableError: Redis is unavailable and on_unavailable="fail".
            LimiterKeyConflictError: ``key`` belongs to another kind of limiter.
        """
        seconds = non_negative_number(f"{type(self).__name__}.pause", "seconds", seconds)
        loop = asyncio.get_running_loop()
        self._pauses += 1
        left = seconds
        reply = await self._run(
            self._pause_script,
            self._pause_keys(),
            self._pause_arguments(math.ceil(seconds * 1_000_000)),
        )
        if isinstance(reply, list):  # adaptive mode: the pause's length, then the shares
            self._learn(reply[1:])
            reply = reply[0]
        if isinstance(reply, int):
            left = max(0.0, reply / 1_000_000)
        elif isinstance(self._fallback, SupportsPause):  # "local": an adaptive one learns
            await self._fallback.pause(seconds)
        self._paused_until = max(self._paused_until, loop.time() + left)

    async def _run(self, script: Script, keys: list[str], arguments: list[object]) -> Any:
        """Run ``script`` on the server: its reply, or `UNAVAILABLE` (after logging it)
        when Redis is unavailable and ``on_unavailable`` names a fallback.

        Raises:
            LimiterUnavailableError: Redis is unavailable and on_unavailable="fail".
            LimiterKeyConflictError: ``key`` belongs to another kind of limiter.
        """
        try:
            return await self._handle.call(
                functools.partial(script.run, keys=keys, args=arguments), self._key
            )
        except LimiterUnavailableError as error:
            self._unavailable(error, asyncio.get_running_loop().time())
            return UNAVAILABLE
        except Exception as error:
            self._raise_conflict(error)
            raise

    @contextlib.contextmanager
    def _waiting_caller(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Count a caller as waiting while the block runs, and the time it waited."""
        started = loop.time()
        self._waiting += 1
        try:
            yield
        finally:
            self._waiting -= 1
            self._total_wait += loop.time() - started

    def _learn(self, shares: Sequence[bytes | str]) -> None:
        """Adaptive mode: keep the learned shares of the configured rates a script
        replied with, for `statistics`."""
        raise NotImplementedError

    _pause_script: Script

    def _pause_keys(self) -> list[str]:
        raise NotImplementedError

    def _pause_arguments(self, microseconds: int) -> list[object]:
        raise NotImplementedError

    def _paused_for(self) -> float:
        """Seconds left of the latest pause this process knows of."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # no running loop: the loop clock is monotonic time
            now = time.monotonic()
        return max(0.0, self._paused_until - now)

    async def _sit_out_pause(self, loop: asyncio.AbstractEventLoop) -> None:
        """With the ``"local"`` fallback, wait out a pause this process knows of."""
        left = self._paused_until - loop.time()
        if left > 0:
            await asyncio.sleep(left)

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
