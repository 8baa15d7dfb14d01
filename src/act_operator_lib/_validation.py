"""Checks for limiter arguments, so every limiter reports bad input the same way.

One message format: ``Owner(arg=value) must be ..., got ...``.
"""

from __future__ import annotations

import math

__all__ = [
    "argument",
    "non_negative_integer",
    "non_negative_number",
    "positive_integer",
    "positive_number",
]


def argument(owner: str, name: str, value: object) -> str:
    """How a message names the argument: ``Owner(name=value)``.

    An owner that is a description rather than a name (``"node 'Gate'"``, with a
    space) keeps the older ``owner name`` form until its caller passes a name.
    """
    if " " in owner:
        return f"{owner} {name}"
    return f"{owner}({name}={value!r})"


def _not_a_number(owner: str, name: str, value: object) -> TypeError:
    return TypeError(
        f"{argument(owner, name, value)} must be a number (int or float), "
        f"got {type(value).__name__}"
    )


def _not_an_int(owner: str, name: str, value: object) -> TypeError:
    return TypeError(f"{argument(owner, name, value)} must be an int, got {type(value).__name__}")


def positive_number(owner: str, name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number above zero.

    Raises `TypeError` for a non-number (``bool`` included) and `ValueError` for
    zero, a negative number, infinity or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _not_a_number(owner, name, value)
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(
            f"{argument(owner, name, value)} must be a finite number above 0, got {value!r}"
        )
    return number


def non_negative_number(owner: str, name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number of at least zero.

    Raises `TypeError` for a non-number (``bool`` included) and `ValueError` for a
    negative number, infinity or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _not_a_number(owner, name, value)
    number = float(value)
    if not (number >= 0 and math.isfinite(number)):
        raise ValueError(
            f"{argument(owner, name, value)} must be a finite number >= 0, got {value!r}"
        )
    return number


def positive_integer(owner: str, name: str, value: object, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int from 1 to ``maximum`` (no upper bound if None).

    Raises `TypeError` for a non-int (``bool`` and ``float`` included) and `ValueError`
    outside the range, giving the valid range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise _not_an_int(owner, name, value)
    if value < 1 or (maximum is not None and value > maximum):
        valid = "at least 1" if maximum is None else f"from 1 to {maximum}"
        raise ValueError(f"{argument(owner, name, value)} must be {valid}, got {value!r}")
    return value


def non_negative_integer(owner: str, name: str, value: object) -> int:
    """Return ``value`` if it is an int of at least zero (``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _not_an_int(owner, name, value)
    if value < 0:
        raise ValueError(f"{argument(owner, name, value)} must be at least 0, got {value!r}")
    return value
