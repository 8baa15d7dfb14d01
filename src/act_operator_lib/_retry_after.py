"""How long a failed call asks to be left alone: `retry_after(error)`.

Owned here so the retry engine (node, item and request level) and the limiters'
shared cooldown read a server's wish the same way. The HTTP clients are duck-typed:
nothing here imports openai, anthropic, httpx, aiohttp or requests.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from act_operator_lib.limits._protocols import SupportsPause

__all__ = ["MAX_RETRY_AFTER", "http_status", "retry_after", "share_cooldown"]

MAX_RETRY_AFTER = 60.0
"""Most seconds `retry_after` returns; a longer wish is cut to this.

A per-minute provider limit resets within a minute. A longer wish (a daily quota, a
misconfigured proxy, an HTTP-date years ahead) is still honoured as "not soon", but
never parks a graph for hours: the retry policy's ``max_attempts`` decides when to
give up.
"""

_TOO_MANY_REQUESTS = 429

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|h|m|s))", re.ASCII)
"""One part of OpenAI's reset duration: ``6m0s``, ``1s``, ``20ms``, ``1h2m3.5s``."""

_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def retry_after(error: BaseException) -> float | None:
    """Seconds ``error`` asks to wait before the next attempt, or None if it does not say.

    Example::

        try:
            await model.ainvoke("hello")
        except openai.RateLimitError as error:
            delay = retry_after(error)   # e.g. 1.0 from the 429's `retry-after: 1`

    Read in this order, the first that gives a value wins:

    1. an attribute ``retry_after`` on the error (seconds, or a ``timedelta``);
    2. the response headers of the real clients' errors, found by shape:
       ``error.response.headers`` (openai and anthropic ``APIStatusError``, httpx
       ``HTTPStatusError``, requests ``HTTPError``) or ``error.headers`` (aiohttp
       ``ClientResponseError``): ``retry-after-ms`` (milliseconds), then
       ``retry-after`` (seconds or an HTTP-date);
    3. on a 429 without those, the larger of ``x-ratelimit-reset-requests`` and
       ``x-ratelimit-reset-tokens`` (OpenAI's durations: ``6m0s``, ``1s``, ``20ms``).

    Values that cannot be read (negative, not a number, an unknown format) are
    skipped as if absent, never raised; an HTTP-date in the past gives 0. A value
    above `MAX_RETRY_AFTER` (60 s) gives `MAX_RETRY_AFTER`.
    """
    seconds = _from_attribute(getattr(error, "retry_after", None))
    if seconds is None:
        seconds = _from_headers(error)
    if seconds is None:
        return None
    return min(seconds, MAX_RETRY_AFTER)


async def share_cooldown(
    limiter: object, error: BaseException, seconds: float | None = None
) -> bool:
    """Pause ``limiter`` for everyone sharing it when ``error`` asks for a Retry-After.

    The one shared-cooldown rule of the retry engine and of `with_token_budget`:
    only an error carrying a Retry-After, only a limiter that can pause
    (`SupportsPause`). ``seconds`` overrides the wait (the engine passes its retry
    delay). True when the limiter was paused.

    Example::

        if not await share_cooldown(limiter, error):
            await asyncio.sleep(backoff)
    """
    asked = retry_after(error)
    if asked is None or not isinstance(limiter, SupportsPause):
        return False
    await limiter.pause(asked if seconds is None else seconds)
    return True


def _from_attribute(value: object) -> float | None:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        return _seconds(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return _non_negative(float(value))


def _from_headers(error: BaseException) -> float | None:
    response = _attribute(error, "response")
    headers = _attribute(response, "headers") if response is not None else None
    if headers is None:
        headers = _attribute(error, "headers")
    if headers is None:
        return None
    milliseconds = _seconds(_header(headers, "retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    seconds = _seconds(_header(headers, "retry-after"))
    if seconds is None:
        seconds = _http_date(_header(headers, "retry-after"))
    if seconds is not None or http_status(error) != _TOO_MANY_REQUESTS:
        return seconds
    resets = [
        reset
        for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
        if (reset := _duration(_header(headers, name))) is not None
    ]
    return max(resets, default=None)


def _attribute(owner: object, name: str) -> Any:
    """``owner.name``, or None when absent or when reading it raises (a property may)."""
    try:
        return getattr(owner, name, None)
    except Exception:
        return None


def _header(headers: Any, name: str) -> str | None:
    """Header ``name`` from any client's headers object, case-insensitively."""
    value: object = None
    try:
        value = headers.get(name)
        if value is None and isinstance(headers, Mapping):
            # A plain dict is case-sensitive; the clients' own types are not.
            value = next((item for key, item in headers.items() if str(key).lower() == name), None)
    except Exception:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return value.strip() if isinstance(value, str) else None


def http_status(error: BaseException) -> int | None:
    """The HTTP status of the answer ``error`` was raised for, or None (no answer came).

    Example::

        http_status(openai_rate_limit_error)   # 429
    """
    response = _attribute(error, "response")
    for owner, name in (
        (error, "status_code"),  # openai, anthropic
        (error, "status"),  # aiohttp
        (response, "status_code"),  # httpx, requests
        (response, "status"),  # aiohttp's response
    ):
        value = _attribute(owner, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return _non_negative(value)


def _http_date(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - time.time())


def _duration(text: str | None) -> float | None:
    """Seconds in OpenAI's ``6m0s`` / ``20ms`` format, or in plain seconds."""
    if text is None:
        return None
    plain = _seconds(text)
    if plain is not None:
        return plain
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return _non_negative(sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts))


def _non_negative(value: float) -> float | None:
    return value if value >= 0 and math.isfinite(value) else None
