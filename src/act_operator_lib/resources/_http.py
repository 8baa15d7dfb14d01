"""`HTTPResource`: a pooled aiohttp ``ClientSession`` (extra ``http``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from langgraph.types import RetryPolicy

from act_operator_lib._extras import require
from act_operator_lib._policies import resolve_retry
from act_operator_lib.limits import SupportsAcquire
from act_operator_lib.resources._core import Resource

if TYPE_CHECKING:
    import aiohttp

__all__ = ["HTTPResource"]


class HTTPResource(Resource["aiohttp.ClientSession"]):
    """A pooled aiohttp session: one per event loop, keep-alive connections reused.

    Example::

        class Fetch(AsyncBaseNode):
            http = HTTPResource(base_url="https://api.example.com", limit=10)

            async def execute(self, state):
                session = await self.http()
                async with session.get("/items") as response:
                    response.raise_for_status()
                    return {"items": await response.json()}

    Args:
        base_url: Prefix for relative request URLs (aiohttp's ``base_url``).
        headers: Headers sent with every request.
        limit: Most connections open at once (``TCPConnector(limit=...)``); more
            concurrent requests wait for a free connection.
        limit_per_host: Most connections to one host (0: no extra limit).
        timeout: Seconds a whole request may take, waiting for a connection
            included; no request can hang forever. ``None`` removes the limit.
        connect_timeout: Seconds to establish one TCP (and TLS) connection.

        rate_limiter: Every request of the session (each retry included) first
            takes a token from it (``await rate_limiter.acquire()``): any rate
            limiter of ours, a Redis twin, or aiolimiter's ``AsyncLimiter``.
        retry: LangGraph ``RetryPolicy`` (or several; the first whose ``retry_on``
            matches applies) for every request of the session.

    A host that refuses or does not answer within ``connect_timeout`` raises
    `ResourceUnavailableError` (also an ``aiohttp.ClientConnectionError``) naming
    the host and port. Needs ``pip install act-operator-lib[http]``.

    With ``rate_limiter`` or ``retry``, a session middleware runs every request
    through the library's retry engine: an answer 429, 500, 502, 503 or 504 counts
    as a failed attempt (an ``aiohttp.ClientResponseError``, so ``retry_on`` sees
    it); the next attempt waits for the answer's Retry-After, and a limiter that
    can ``pause`` stops granting to everyone sharing it for that long (the shared
    cooldown). When no retry is left, the last answer is returned as usual, its
    body still readable. ``timeout`` then bounds each attempt up to the response
    headers (and each read of the body after); waiting for a token or a backoff
    is not counted. An attempt past it raises a ``TimeoutError`` (an
    ``aiohttp.ServerTimeoutError``) naming the limit::

        api = HTTPResource(
            base_url="https://api.example.com",
            rate_limiter=RateLimiter(20),
            retry=RetryPolicy(max_attempts=5, retry_on=aiohttp.ClientError),
        )
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        limit: int = 100,
        limit_per_host: int = 0,
        timeout: float | None = 60.0,
        connect_timeout: float = 10.0,
        rate_limiter: SupportsAcquire | None = None,
        retry: RetryPolicy | Sequence[RetryPolicy] | None = None,
    ) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"HTTPResource(limit=...) must be an int >= 1, got {limit!r}.")
        if not isinstance(limit_per_host, int) or limit_per_host < 0:
            raise ValueError(
                f"HTTPResource(limit_per_host=...) must be an int >= 0, got {limit_per_host!r}."
            )
        if timeout is not None and not timeout > 0:
            raise ValueError(f"HTTPResource(timeout=...) must be > 0 or None, got {timeout!r}.")
        if not connect_timeout > 0:
            raise ValueError(
                f"HTTPResource(connect_timeout=...) must be > 0, got {connect_timeout!r}."
            )
        if base_url is not None and not _is_http_url(base_url):
            raise ValueError(
                "HTTPResource(base_url=...) must be an absolute http:// or https:// URL, "
                f"e.g. 'https://api.example.com', got {_redacted(base_url)!r}."
            )
        if headers is not None and not isinstance(headers, Mapping):
            raise TypeError(
                "HTTPResource(headers=...) must be a mapping of header name to value, e.g. "
                f"{{'Authorization': 'Bearer ...'}}, got {type(headers).__name__}."
            )
        if rate_limiter is not None and not isinstance(rate_limiter, SupportsAcquire):
            raise TypeError(
                "HTTPResource(rate_limiter=...) must be a rate limiter with "
                "`await rate_limiter.acquire()`, such as RateLimiter(20), got "
                f"{type(rate_limiter).__name__}."
            )
        policies = _retry_policies(retry)
        require("aiohttp", feature="HTTPResource", extra="http")
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.rate_limiter = rate_limiter
        self.retry = policies

    async def open(self) -> aiohttp.ClientSession:
        """Create the session and its connection pool (no connection is made yet)."""
        from act_operator_lib.resources import _aiohttp

        return _aiohttp.new_session(self)

    async def close(self, value: aiohttp.ClientSession) -> None:
        """Close the session and every pooled connection."""
        await value.close()

    def __repr__(self) -> str:
        policies = ""
        if self.rate_limiter is not None:
            policies += f", rate_limiter={self.rate_limiter!r}"
        if self.retry:
            policies += f", retry={self.retry!r}"
        return (
            f"HTTPResource(base_url={_redacted(self.base_url)!r}, limit={self.limit}, "
            f"timeout={self.timeout!r}, connect_timeout={self.connect_timeout!r}{policies})"
        )


def _retry_policies(retry: object) -> tuple[RetryPolicy, ...]:
    if retry is None:
        return ()
    if isinstance(retry, RetryPolicy):
        policies: tuple[RetryPolicy, ...] = (retry,)
    elif (
        isinstance(retry, Sequence)
        and not isinstance(retry, str)
        and retry
        and all(isinstance(policy, RetryPolicy) for policy in retry)
    ):
        policies = tuple(retry)
    else:
        shown = f"{retry!r}" if isinstance(retry, Sequence) else type(retry).__name__
        raise TypeError(
            "HTTPResource(retry=...) must be a langgraph RetryPolicy or a non-empty sequence "
            f"of them, e.g. RetryPolicy(max_attempts=5), got {shown}."
        )
    # The fields too (max_attempts=0, a negative interval), as map_concurrent checks them.
    return resolve_retry("HTTPResource", policies)


def _is_http_url(url: object) -> bool:
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _redacted(url: object) -> object:
    """``url`` with any password replaced by ``***``, for messages and repr."""
    if not isinstance(url, str):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
