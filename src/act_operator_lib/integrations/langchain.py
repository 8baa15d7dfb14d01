"""LangChain chat models within provider limits: requests and tokens, settled from usage.

Two pieces, for the two ways a chat model meets a limit:

- `LangChainRateLimiter`: any of our limiters (or aiolimiter's) as a chat model's
  ``rate_limiter=``, LangChain's own hook, taken before every request, sync or async.
- `with_token_budget`: a chat model that reserves an estimate of its tokens (and one
  request) in a multi-rate limiter before each call and settles the real total from
  the response's ``usage_metadata`` afterwards, streaming included::

      budget = MultiRateLimiter(requests=Rate(500, per=60), tokens=Rate(90_000, per=60))
      model = with_token_budget(ChatOpenAI(model="gpt-4o-mini", max_retries=0), budget)
      answer = await model.ainvoke("hello")     # reserves 100 tokens, settles e.g. 37

Sync calls (``invoke``, ``stream``) wait for the limiter on the library's event-loop
thread (`run_async`); limiters may be shared by sync and async callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import BaseMessage
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_core.runnables import Runnable, RunnableConfig

from act_operator_lib._retry import share_cooldown
from act_operator_lib._retry_after import http_status
from act_operator_lib.bridge import run_async
from act_operator_lib.limits import SupportsAcquire

__all__ = [
    "Estimate",
    "LangChainRateLimiter",
    "SupportsReserve",
    "SupportsSettle",
    "TokenBudgetModel",
    "with_token_budget",
]


class LangChainRateLimiter(BaseRateLimiter):
    """Use one of our rate limiters as a LangChain chat model's ``rate_limiter=``.

    Example::

        limiter = RateLimiter(40)                          # 40 requests a second
        model = ChatOpenAI(model="gpt-4o-mini", rate_limiter=LangChainRateLimiter(limiter))
        await model.ainvoke("hello")                       # takes a token first

    Any limiter with ``await acquire()`` works (ours, the Redis twins, aiolimiter's
    ``AsyncLimiter``), and the same limiter can also limit nodes and fan-outs, so
    every caller shares one budget. Sync ``invoke`` waits for the token on the
    library's event-loop thread (`run_async`). ``blocking=False`` takes a token only
    if one is granted without waiting, and takes nothing otherwise.
    """

    def __init__(self, limiter: SupportsAcquire) -> None:
        if not isinstance(limiter, SupportsAcquire):
            raise TypeError(
                "LangChainRateLimiter(limiter=...) must be a rate limiter with "
                "`await limiter.acquire()`, such as RateLimiter(40), got "
                f"{type(limiter).__name__}."
            )
        self.limiter = limiter

    def acquire(self, *, blocking: bool = True) -> bool:
        """Take a token for a sync call; with ``blocking=False`` only if one is free now."""
        return run_async(self.aacquire(blocking=blocking))

    async def aacquire(self, *, blocking: bool = True) -> bool:
        """Take a token for an async call; with ``blocking=False`` only if one is free now."""
        if blocking:
            await self.limiter.acquire()
            return True
        try:
            # A limiter grants a free token without suspending; one that would have
            # to wait is cancelled at once, and a cancelled waiter takes nothing.
            async with asyncio.timeout(0):
                await self.limiter.acquire()
        except TimeoutError:
            return False
        return True

    def __repr__(self) -> str:
        return f"LangChainRateLimiter({self.limiter!r})"


@runtime_checkable
class SupportsSettle(Protocol):
    """A reservation: ``await reservation.settle(tokens=n)`` charges the real cost."""

    def settle(self, **actual: int) -> Awaitable[Any]:
        """Charge the actual cost, refunding or adding to what was reserved."""


@runtime_checkable
class SupportsReserve(Protocol):
    """A multi-rate limiter: ``await limiter.reserve(tokens=n)`` takes every rate at once."""

    def reserve(self, **costs: int) -> Awaitable[Any]:
        """Wait until every rate can take ``costs``, then take them together."""


_LEARNING = 0.1
"""Weight of each new total in the learned estimate once 10 calls have settled (about
the last 10 calls); before that every total weighs alike, a plain mean."""
_SPREADS = 2
"""Mean deviations of the settled totals reserved above their average."""

Estimate = int | Callable[[LanguageModelInput], int]
"""Tokens a call is expected to cost: a number, or a function of the call's input."""


def with_token_budget(
    model: Runnable[LanguageModelInput, BaseMessage],
    limiter: SupportsReserve,
    *,
    estimate: Estimate = 100,
    rate: str = "tokens",
    learn: bool = True,
) -> TokenBudgetModel:
    """Make ``model`` reserve tokens in ``limiter`` before each call and settle them after.

    Example::

        budget = MultiRateLimiter(requests=Rate(500, per=60), tokens=Rate(90_000, per=60))
        model = with_token_budget(ChatOpenAI(model="gpt-4o-mini", max_retries=0), budget)
        await model.ainvoke("hello")

    Each call (``invoke``, ``ainvoke``, ``stream``, ``astream``, batches) first
    reserves ``estimate`` tokens (an int, or a function of the call's input when the
    cost is known before the call) from the limiter's rate named ``rate``, and the
    default cost of its other rates (one request), all at once; then it settles the
    tokens to the total of the answer's ``usage_metadata`` (for a stream, summed over
    its chunks). See `TokenBudgetModel` for errors and answers without usage.

    With ``learn=True`` (the default) and an int ``estimate``, that int is the first
    estimate only: later calls reserve the recent average of the totals settled so
    far plus twice their recent mean deviation (plain means over the first 10 calls,
    then moving averages over about the last 10; the first total's distance from the
    guess is the first deviation), so the reservation follows the real cost and the
    calls in flight seldom overrun the window by the gap between a guess and the truth
    (the server counts their tokens before they are settled; what is reserved beyond
    the truth is refunded at settle). A function ``estimate`` is used as given.
    """
    return TokenBudgetModel(model, limiter, estimate=estimate, rate=rate, learn=learn)


class TokenBudgetModel(Runnable[LanguageModelInput, BaseMessage]):
    """A chat model whose every call is reserved in, then settled with, a token budget.

    Example::

        model = TokenBudgetModel(ChatOpenAI(model="gpt-4o-mini"), budget, estimate=200)
        async for chunk in model.astream("tell me a story"):
            print(chunk.text, end="")

    Made by `with_token_budget`. What each call is charged:

    - an answer with ``usage_metadata``: its ``total_tokens`` (a refund or an extra
      charge against the reserved estimate);
    - an answer without it (e.g. ``ChatOpenAI`` with a custom ``base_url`` streams
      usage only with ``stream_usage=True``): the estimate;
    - an error answer from the server (it carries an HTTP status, e.g. a 429): no
      tokens, and when it asks for a Retry-After the limiter pauses for everyone
      sharing it (if it supports ``pause``);
    - any other failure (a timeout, a broken or abandoned stream, cancellation): the
      estimate, since the server may have charged it.

    Bind tools with `bind_tools` on this object (the budget stays on the result).
    Bad arguments are refused when it is made: a ``model`` that is not a Runnable or
    a ``limiter`` without ``reserve`` (`TypeError`), an ``estimate`` that is not an
    int (`TypeError`) or is below 0 (`ValueError`), a ``rate`` that is not a str
    (`TypeError`) or, for a limiter listing its ``rates``, not one of them
    (`ValueError`).
    """

    def __init__(
        self,
        model: Runnable[LanguageModelInput, BaseMessage],
        limiter: SupportsReserve,
        *,
        estimate: Estimate = 100,
        rate: str = "tokens",
        learn: bool = True,
    ) -> None:
        if not isinstance(model, Runnable):
            raise TypeError(
                "with_token_budget(model=...) must be a LangChain chat model (a Runnable), "
                f"e.g. ChatOpenAI(...), got {type(model).__name__}."
            )
        if not isinstance(limiter, SupportsReserve):
            raise TypeError(
                "with_token_budget(limiter=...) must be a multi-rate limiter with "
                "`reserve(tokens=...)`, e.g. MultiRateLimiter(requests=Rate(500, per=60), "
                f"tokens=Rate(90_000, per=60)), got {type(limiter).__name__}."
            )
        if not callable(estimate) and (isinstance(estimate, bool) or not isinstance(estimate, int)):
            raise TypeError(
                "with_token_budget(estimate=...) must be an int >= 0 (tokens per call) or a "
                f"function of the call's input returning one, got {type(estimate).__name__}."
            )
        if not callable(estimate) and estimate < 0:
            raise ValueError(
                "with_token_budget(estimate=...) must be an int >= 0 (tokens per call) or a "
                f"function of the call's input returning one, got {estimate!r}."
            )
        if not isinstance(rate, str):
            raise TypeError(
                "with_token_budget(rate=...) must be the name of the limiter's token rate, "
                f"e.g. 'tokens', got {type(rate).__name__}."
            )
        # A limiter that tells its rates (MultiRateLimiter) is checked now, not at the
        # first call, which would name `reserve` instead of this argument.
        rates = getattr(limiter, "rates", None)
        if isinstance(rates, Mapping) and rate not in rates:
            raise ValueError(
                f"with_token_budget(rate={rate!r}) must name one of the limiter's rates "
                f"({', '.join(map(repr, rates))}), got {rate!r}."
            )
        self.model = model
        self.limiter = limiter
        self.estimate = estimate
        self.rate = rate
        self.learn = bool(learn)
        # The average of the settled totals (the int guess until one is settled),
        # their mean deviation, and how many were settled.
        self._learned = 0.0 if callable(estimate) else float(estimate)
        self._spread = 0.0
        self._settled = 0

    def bind_tools(self, tools: Any, **kwargs: Any) -> TokenBudgetModel:
        """The model with ``tools`` bound (its ``bind_tools``), under the same budget."""
        bound = self.model.bind_tools(tools, **kwargs)  # type: ignore[attr-defined]
        return TokenBudgetModel(
            bound, self.limiter, estimate=self.estimate, rate=self.rate, learn=self.learn
        )

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Reserve, call ``model.invoke``, settle."""
        tokens = self._estimate(input)
        reservation = run_async(self._reserve(tokens))
        try:
            message = self.model.invoke(input, config, **kwargs)
        except BaseException as error:
            run_async(self._failed(reservation, tokens, error))
            raise
        run_async(self._settle(reservation, self._used(_usage(message), tokens)))
        return message

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> BaseMessage:
        """Reserve, await ``model.ainvoke``, settle."""
        tokens = self._estimate(input)
        reservation = await self._reserve(tokens)
        try:
            message = await self.model.ainvoke(input, config, **kwargs)
        except BaseException as error:
            await self._failed(reservation, tokens, error)
            raise
        await self._settle(reservation, self._used(_usage(message), tokens))
        return message

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[BaseMessage]:
        """Reserve, yield ``model.stream``'s chunks, settle with their summed usage."""
        tokens = self._estimate(input)
        reservation = run_async(self._reserve(tokens))
        used: int | None = None
        try:
            for chunk in self.model.stream(input, config, **kwargs):
                used = _add_usage(used, chunk)
                yield chunk
        except BaseException as error:
            run_async(self._failed(reservation, tokens, error))
            raise
        run_async(self._settle(reservation, self._used(used, tokens)))

    async def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[BaseMessage]:
        """Reserve, yield ``model.astream``'s chunks, settle with their summed usage."""
        tokens = self._estimate(input)
        reservation = await self._reserve(tokens)
        used: int | None = None
        try:
            async for chunk in self.model.astream(input, config, **kwargs):
                used = _add_usage(used, chunk)
                yield chunk
        except BaseException as error:
            await self._failed(reservation, tokens, error)
            raise
        await self._settle(reservation, self._used(used, tokens))

    def _estimate(self, input: LanguageModelInput) -> int:
        if not callable(self.estimate):
            if self._settled:
                return self._learned_estimate(self._learned + _SPREADS * self._spread)
            return self.estimate
        tokens = self.estimate(input)
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
            raise ValueError(
                "with_token_budget(estimate=...) must return an int >= 0 (tokens of the "
                f"call), got {tokens!r}."
            )
        return tokens

    def _learned_estimate(self, tokens: float) -> int:
        """``tokens`` rounded, at most the largest cost the rate grants at once."""
        rates = getattr(self.limiter, "rates", None)
        rate = rates.get(self.rate) if isinstance(rates, Mapping) else None
        most = getattr(rate, "max_cost", None)
        return min(round(tokens), most) if isinstance(most, int) else round(tokens)

    def _used(self, usage: int | None, estimate: int) -> int:
        """The tokens to settle: the usage reported (learned from), else the estimate."""
        if usage is None:
            return estimate
        if self.learn and not callable(self.estimate):
            # The int estimate is the first guess: the first total's distance from it
            # is the first measure of the spread, which later totals soon replace.
            learned = self._learned
            self._settled += 1
            weight = max(_LEARNING, 1 / self._settled)
            self._learned = learned + weight * (usage - learned)
            self._spread += weight * (abs(usage - learned) - self._spread)
        return usage

    async def _reserve(self, tokens: int) -> SupportsSettle:
        reservation: SupportsSettle = await self.limiter.reserve(**{self.rate: tokens})
        return reservation

    async def _settle(self, reservation: SupportsSettle, tokens: int) -> None:
        await reservation.settle(**{self.rate: tokens})

    async def _failed(self, reservation: SupportsSettle, tokens: int, error: BaseException) -> None:
        if http_status(error) is None:
            await self._settle(reservation, tokens)
            return
        await self._settle(reservation, 0)
        await share_cooldown(self.limiter, error)

    def __repr__(self) -> str:
        return (
            f"TokenBudgetModel({self.model!r}, {self.limiter!r}, estimate={self.estimate!r}, "
            f"rate={self.rate!r}, learn={self.learn!r})"
        )


def _usage(message: BaseMessage) -> int | None:
    usage = getattr(message, "usage_metadata", None)
    if not usage:
        return None
    return int(usage["total_tokens"])


def _add_usage(used: int | None, chunk: BaseMessage) -> int | None:
    usage = getattr(chunk, "usage_metadata", None)
    if not usage:
        return used
    return (used or 0) + int(usage["total_tokens"])
