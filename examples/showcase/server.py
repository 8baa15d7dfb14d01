"""A local stand-in for a third-party API: slow tail, 500s, hangs and a hard rate limit.

``GET /items/{id}`` answers a small JSON document. Like a real API it is not always
kind: latency is lognormal (median ``latency_median``, 99th percentile
``latency_p99``), a fraction of requests fail with 500, a fraction answer 503 with
``Retry-After``, and a fraction hang until the client gives up. Above ``limit``
requests in any sliding window of ``window`` seconds, measured here on arrival, it
answers 429 with ``Retry-After`` and counts it::

    async with ApiServer(ServerProfile()) as server:
        print(server.url)                    # http://127.0.0.1:<free port>
        ...
    print(server.statistics())

It runs on the caller's event loop, bound to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["ApiServer", "ServerProfile", "ServerStatistics"]

_Z_99 = 2.3263478740408408
"""The standard normal's 99th percentile: lognormal sigma = ln(p99 / median) / z."""

_SAME_INSTANT = 1e-6
"""Seconds of loop time within which a retry counts as arriving at its Retry-After deadline."""

_WORDS = (
    "async",
    "await",
    "loop",
    "task",
    "node",
    "graph",
    "state",
    "stream",
    "retry",
    "timeout",
    "limit",
    "pool",
    "session",
    "commit",
    "thread",
    "gather",
)


@dataclass(frozen=True, slots=True)
class ServerProfile:
    """How the API misbehaves. The defaults are the demo's; tests pass a faster one."""

    latency_median: float = 0.030
    """Median seconds before an answer."""
    latency_p99: float = 0.500
    """99th-percentile seconds before an answer (the long tail)."""
    error_rate: float = 0.05
    """Fraction of requests answered 500."""
    unavailable_rate: float = 0.01
    """Fraction of requests answered 503 with ``Retry-After: retry_after``."""
    retry_after: float = 1.0
    """Seconds in the 503's ``Retry-After``."""
    hang_rate: float = 0.004
    """Fraction of requests never answered (until the client disconnects)."""
    limit: int = 50
    """Requests allowed in any sliding window of ``window`` seconds; above it, 429."""
    window: float = 1.0
    """The rate limit's window, in seconds."""
    seed: int | None = None
    """Seed of the misbehaviour, for a reproducible run; None: random."""

    def __post_init__(self) -> None:
        if not 0 < self.latency_median <= self.latency_p99:
            raise ValueError(
                "ServerProfile: need 0 < latency_median <= latency_p99, got "
                f"{self.latency_median!r} and {self.latency_p99!r}"
            )
        for name in ("error_rate", "unavailable_rate", "hang_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"ServerProfile({name}=...) must be in [0, 1)")
        if self.limit < 1 or self.window <= 0 or self.retry_after < 0:
            raise ValueError("ServerProfile: limit >= 1, window > 0, retry_after >= 0")


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """What the server saw, measured on its side."""

    requests: int
    """Requests received, whatever their answer."""
    statuses: dict[int, int]
    """Answers sent, by HTTP status."""
    hangs: int
    """Requests left unanswered on purpose."""
    rejected: int
    """Requests answered 429 because the rate limit was exceeded."""
    peak_window: int
    """Most requests accepted within one sliding window."""
    limit: int
    """The profile's limit: requests allowed per window."""
    early_retries: int
    """Requests for an item that came before the Retry-After it was given had passed."""
    fetches: dict[str, int] = field(default_factory=dict)
    """Requests per item id."""


class ApiServer:
    """The misbehaving API, served by aiohttp on 127.0.0.1; an async context manager."""

    def __init__(self, profile: ServerProfile | None = None) -> None:
        self.profile = profile or ServerProfile()
        self._random = random.Random(self.profile.seed)
        self._sigma = math.log(self.profile.latency_p99 / self.profile.latency_median) / _Z_99
        self._arrivals: deque[float] = deque()
        self._statuses: Counter[int] = Counter()
        self._fetches: Counter[str] = Counter()
        self._requests = 0
        self._hangs = 0
        self._peak = 0
        self._early = 0
        self._not_before: dict[str, float] = {}
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1; ``url`` is set once this returns."""
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/items/{item_id}", self._item)
        # handler_cancellation: a hang ends when the client hangs up, as on a real server.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = self._runner.addresses
        host, port = sockets[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Release the hanging requests and close the listener and every connection."""
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def statistics(self) -> ServerStatistics:
        """A snapshot of what the server saw so far."""
        return ServerStatistics(
            requests=self._requests,
            statuses=dict(self._statuses),
            hangs=self._hangs,
            rejected=self._statuses[429],
            peak_window=self._peak,
            limit=self.profile.limit,
            early_retries=self._early,
            fetches=dict(self._fetches),
        )

    async def _item(self, request: web.Request) -> web.Response:
        item_id = request.match_info["item_id"]
        self._requests += 1
        self._fetches[item_id] += 1
        now = asyncio.get_running_loop().time()
        # Loop times are floats: on uvloop's millisecond clock a retry lands exactly on
        # its deadline, and `start + retry_after` may round a hair above it.
        if now < self._not_before.pop(item_id, now) - _SAME_INSTANT:
            self._early += 1
        arrivals = self._arrivals
        while arrivals and arrivals[0] <= now - self.profile.window:
            arrivals.popleft()
        if len(arrivals) >= self.profile.limit:
            wait = arrivals[0] + self.profile.window - now
            return self._answer(
                429, {"error": "rate limited"}, retry_after=math.ceil(wait), item_id=item_id
            )
        arrivals.append(now)
        self._peak = max(self._peak, len(arrivals))
        roll = self._random.random()
        profile = self.profile
        if roll < profile.hang_rate:
            self._hangs += 1
            assert self._stopping is not None
            await self._stopping.wait()
            return self._answer(503, {"error": "shutting down"})
        await asyncio.sleep(
            self._random.lognormvariate(math.log(profile.latency_median), self._sigma)
        )
        roll -= profile.hang_rate
        if roll < profile.error_rate:
            return self._answer(500, {"error": "internal server error"})
        roll -= profile.error_rate
        if roll < profile.unavailable_rate:
            return self._answer(
                503, {"error": "unavailable"}, retry_after=profile.retry_after, item_id=item_id
            )
        return self._answer(200, _document(item_id))

    def _answer(
        self,
        status: int,
        body: dict[str, object],
        *,
        retry_after: float | None = None,
        item_id: str = "",
    ) -> web.Response:
        self._statuses[status] += 1
        if retry_after is not None and item_id:
            self._not_before[item_id] = asyncio.get_running_loop().time() + retry_after
        # Whole seconds, as HTTP says; a test profile may ask for a fraction.
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        return web.json_response(body, status=status, headers=headers)


def _document(item_id: str) -> dict[str, object]:
    """The item's document: the same for the same id, whoever asks and when."""
    seed = int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "big")
    chooser = random.Random(seed)
    words = chooser.choices(_WORDS, k=chooser.randint(150, 300))
    return {
        "id": item_id,
        "title": " ".join(words[:4]).title(),
        "body": " ".join(words),
        "score": round(chooser.random() * 100, 2),
    }
