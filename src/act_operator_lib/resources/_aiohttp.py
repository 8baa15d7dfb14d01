"""The aiohttp side of `HTTPResource`; imported only when a session is opened."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp

from act_operator_lib._errors import ResourceUnavailableError

if TYPE_CHECKING:
    from act_operator_lib.resources._http import HTTPResource

__all__ = ["HTTPUnavailableError", "new_session"]


class HTTPUnavailableError(ResourceUnavailableError, aiohttp.ClientConnectionError):
    """An HTTP host refused the connection or did not accept it in time."""


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


def new_session(config: HTTPResource) -> aiohttp.ClientSession:
    """A session configured as ``config`` says, on the running loop."""
    connector = _Connector(limit=config.limit, limit_per_host=config.limit_per_host)
    return aiohttp.ClientSession(
        base_url=config.base_url,
        headers=config.headers,
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=config.timeout, sock_connect=config.connect_timeout),
    )
