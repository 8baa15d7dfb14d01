"""The aiohttp side of `HTTPResource`; imported only when a session is opened."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
from langgraph.types import RetryPolicy

from act_operator_lib._errors import ActOperatorError, ResourceUnavailableError
from act_operator_lib._retry import CallPolicy, run_attempts
from act_operator_lib.limits import SupportsAcquire

__all__ = ["HTTPAttemptTimeoutError", "HTTPUnavailableError", "new_session"]

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers that count as a failed attempt when the session retries."""


class HTTPUnavailableError(ResourceUnavailableError, aiohttp.ClientConnectionError):
    """An HTTP host refused the connection or did not accept it in time."""


class HTTPAttemptTimeoutError(ActOperatorError, aiohttp.ServerTimeoutError):
    """One attempt of a request of a retrying `HTTPResource` ran past its ``timeout``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(
            f"the HTTP request attempt timed out after {timeout:g}s "
            "(HTTPResource(timeout=...)); raise `timeout` or check the server"
        )

    def __reduce__(self) -> tuple[type[HTTPAttemptTimeoutError], tuple[float]]:
        return (type(self), (self.timeout,))


class _RetriedStatus(aiohttp.ClientResponseError):
    """An answer in `RETRIED_STATUSES`, raised so the retry engine sees a failed attempt."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        super().__init__(
            response.request_info,
            response.history,
            status=response.status,
            message=response.reason or "",
            headers=response.headers,
        )
        self.response = response


def _retrying(policy: CallPolicy) -> aiohttp.ClientMiddlewareType:
    """A session middleware running every request through the retry engine."""

    async def middleware(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        async def attempt() -> aiohttp.ClientResponse:
            response = await handler(request)
            if response.status in RETRIED_STATUSES:
                # Read now (the body stays cached on the response) so the connection goes
                # back to the pool during the backoff, and the caller can still read the
                # last answer when no retry is left.
                await response.read()
                raise _RetriedStatus(response)
            return response

        try:
            return await run_attempts(policy, attempt, timeout_error=HTTPAttemptTimeoutError)
        except _RetriedStatus as error:
            return error.response

    return middleware


class _Connector(aiohttp.TCPConnector):
    """A TCPConnector whose connection failures name the host and the fix."""

    async def connect(
        self,
        req: Any,
        traces: Any,
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature
    ) -> Any:
        try:
            return await super().connect(req, traces, timeout)
        except aiohttp.ClientConnectorCertificateError:
            raise
        except aiohttp.ClientConnectorError as error:
            raise HTTPUnavailableError(
                f"cannot connect to HTTP host {error.host}:{error.port} "
                f"({error.os_error.strerror or error.os_error}); check the URL and that "
                "the server is up"
            ) from error
        except aiohttp.ConnectionTimeoutError as error:
            raise HTTPUnavailableError(
                f"HTTP host {req.host}:{req.port} did not accept a connection within "
                f"{timeout.sock_connect:g}s (connect_timeout); check the URL and that the "
                "server is up"
            ) from error


class SessionConfig(Protocol):
    """What a session is built from (an `HTTPResource`, without importing it back)."""

    @property
    def base_url(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def limit(self) -> int: ...
    @property
    def limit_per_host(self) -> int: ...
    @property
    def timeout(self) -> float | None: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def rate_limiter(self) -> SupportsAcquire | None: ...
    @property
    def retry(self) -> tuple[RetryPolicy, ...]: ...


def new_session(config: SessionConfig) -> aiohttp.ClientSession:
    """A session configured as ``config`` says, on the running loop."""
    connector = _Connector(limit=config.limit, limit_per_host=config.limit_per_host)
    if config.rate_limiter is None and not config.retry:
        return aiohttp.ClientSession(
            base_url=config.base_url,
            headers=config.headers,
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=config.timeout, sock_connect=config.connect_timeout
            ),
        )
    # aiohttp's total timeout would span every attempt and wait; the engine bounds each
    # attempt instead, and sock_read each read of a body after the headers.
    policy = CallPolicy(
        timeout=config.timeout, retry=config.retry, rate_limiter=config.rate_limiter
    )
    return aiohttp.ClientSession(
        base_url=config.base_url,
        headers=config.headers,
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.timeout
        ),
        middlewares=(_retrying(policy),),
    )
