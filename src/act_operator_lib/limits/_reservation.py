"""`Reservation`: units taken on an estimate, settled once with the actual cost.

Shared by `MultiRateLimiter` and `RedisMultiRateLimiter`: each provides the
`Reserving` methods (take a grant, settle it), this module the reservation the
caller holds and the one check of costs by rate name.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from act_operator_lib._validation import non_negative_integer

__all__ = ["Reservation", "Reserving", "checked_costs"]

G = TypeVar("G")
"""What a grant records, for its limiter to settle it later."""


class Reserving(Protocol[G]):
    """A multi-rate limiter as its reservations use it (private to this package)."""

    _names: tuple[str, ...]

    def _costs(
        self, owner: str, given: Mapping[str, object], base: tuple[int, ...]
    ) -> tuple[int, ...]: ...

    async def _take(self, cost: tuple[int, ...]) -> G: ...

    async def _settle(
        self, grant: G, estimate: tuple[int, ...], actual: tuple[int, ...]
    ) -> None: ...


def checked_costs(
    owner: str,
    names: tuple[str, ...],
    max_costs: tuple[int, ...],
    given: Mapping[str, object],
    base: tuple[int, ...],
    *,
    up_front: bool,
) -> tuple[int, ...]:
    """Validate ``given`` costs by rate name; the rates left out keep ``base``.

    ``up_front`` (a reservation) also refuses a cost above the rate's ``max_cost``;
    a settled cost is what was spent and is charged whatever its size.
    """
    costs = list(base)
    for name, value in given.items():
        try:
            index = names.index(name)
        except ValueError:
            raise TypeError(
                f"{owner}({name}=...) must name one of the rates ({', '.join(names)}), got {name!r}"
            ) from None
        if type(value) is int and 0 <= value <= max_costs[index]:
            costs[index] = value
            continue
        costs[index] = non_negative_integer(owner, name, value)
        if up_front:
            raise ValueError(
                f"{owner}({name}={value!r}) must be at most the "
                f"rate's max_cost {max_costs[index]}, got {value!r}"
            )
    return tuple(costs)


class Reservation(Generic[G]):
    """Units taken from a multi-rate limiter on an estimate, to settle once with the
    actual cost.

    Example::

        async with limiter.reserve(requests=1, tokens=500) as reservation:
            response = await call_model()
            await reservation.settle(tokens=response.usage.total_tokens)

    Made by `MultiRateLimiter.reserve` (or `RedisMultiRateLimiter.reserve`);
    awaiting it (or ``async with``) waits for the grant. `settle` closes it;
    leaving ``async with`` closes it too, keeping the cost as it stands. Settling
    twice, before the grant or after closing raises `RuntimeError`.
    """

    __slots__ = ("_closed", "_cost", "_grant", "_granted", "_limiter")

    def __init__(self, limiter: Reserving[G], cost: tuple[int, ...]) -> None:
        self._limiter = limiter
        self._cost = cost
        self._grant: G | None = None
        self._granted = False
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "granted" if self._granted else "pending"
        return f"Reservation({', '.join(f'{k}={v}' for k, v in self.cost.items())}, {state})"

    @property
    def cost(self) -> Mapping[str, int]:
        """Units taken from each rate, as settled so far."""
        return dict(zip(self._limiter._names, self._cost, strict=True))

    @property
    def closed(self) -> bool:
        """True once settled or once its ``async with`` block has ended."""
        return self._closed

    def __await__(self) -> Generator[Any, None, Reservation[G]]:
        if not self._granted:
            self._grant = yield from self._limiter._take(self._cost).__await__()
            self._granted = True
        return self

    async def __aenter__(self) -> Reservation[G]:
        return await self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._closed = True

    async def settle(self, **actual: int) -> None:
        """Replace the estimate with the actual cost: refund or charge the difference.

        Rates left out keep their estimate.

        Raises:
            RuntimeError: the reservation was not granted yet, is settled or closed.
            TypeError: an unknown rate name, or a cost that is not an int.
            ValueError: a cost below 0.
        """
        if self._closed or not self._granted:
            state = "was not granted yet (await it first)" if not self._closed else "is closed"
            raise RuntimeError(
                f"{self!r} {state}: a reservation is settled once, after its grant and "
                "before its async with block ends"
            )
        cost = self._limiter._costs("Reservation.settle", actual, self._cost)
        self._closed = True
        await self._limiter._settle(self._grant, self._cost, cost)  # type: ignore[arg-type]
        self._cost = cost
