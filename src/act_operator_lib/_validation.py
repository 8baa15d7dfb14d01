"""Argument checks for every public entry point, so bad input reads the same everywhere.

One message format, built by `invalid`: ``Owner(arg=value) must be ..., got ...``
(``Owner(arg=...)`` where showing the value would not help), then an optional hint::

    positive_integer("ConcurrencyLimiter", "limit", 0)
    # ValueError: ConcurrencyLimiter(limit=0) must be at least 1, got 0
"""

from __future__ import annotations

import math
from typing import TypeGuard, TypeVar

E = TypeVar("E", bound=Exception)

__all__ = [
    "argument",
    "boolean",
    "invalid",
    "is_int",
    "is_number",
    "non_negative_integer",
    "non_negative_number",
    "positive_integer",
    "positive_number",
    "seconds",
]


def argument(owner: str, name: str, value: object) -> str:
    """How a message names the argument: ``Owner(name=value)``.

    An owner that is a description rather than a name (``"node 'Gate'"``, with a
    space) keeps the older ``owner name`` form until its caller passes a name.
    """
    if " " in owner:
        return f"{owner} {name}"
    return f"{owner}({name}={value!r})"


def invalid(
    error: type[E],
    owner: str,
    name: str,
    value: object,
    expected: str,
    *,
    got: str | None = None,
    hint: str = "",
    show_value: bool = True,
) -> E:
    """The error for a bad argument, in the one format; ``got`` defaults to ``repr(value)``.

    Example::

        raise invalid(TypeError, "cached", "copy", "yes", "True or False", got="str")
    """
    named = argument(owner, name, value) if show_value else f"{owner}({name}=...)"
    shown = repr(value) if got is None else got
    return error(f"{named} must be {expected}, got {shown}{hint}")


def is_int(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool (``True`` is not a count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether ``value`` is an int or a float and not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _not_a_number(owner: str, name: str, value: object) -> TypeError:
    return invalid(
        TypeError, owner, name, value, "a number (int or float)", got=type(value).__name__
    )


def _not_an_int(owner: str, name: str, value: object) -> TypeError:
    return invalid(TypeError, owner, name, value, "an int", got=type(value).__name__)


def boolean(owner: str, name: str, value: object, *, show_value: bool = True) -> bool:
    """Return ``value`` if it is True or False; `TypeError` otherwise."""
    if not isinstance(value, bool):
        raise invalid(
            TypeError,
            owner,
            name,
            value,
            "True or False",
            got=type(value).__name__ if show_value else repr(value),
            show_value=show_value,
        )
    return value


def seconds(
    owner: str,
    name: str,
    value: object,
    *,
    expected: str = "more than 0 seconds",
    kind: str = "a number of seconds",
    hint: str = "",
    not_a_number: type[Exception] = TypeError,
) -> float:
    """Return ``value`` as a float if it is a number of seconds above zero.

    Raises ``not_a_number`` (`TypeError` unless a caller kept an older contract) for a
    non-number and `ValueError` for zero, a negative number or NaN.
    """
    if not is_number(value):
        raise invalid(not_a_number, owner, name, value, kind, got=type(value).__name__, hint=hint)
    number = float(value)
    if not number > 0:
        raise invalid(ValueError, owner, name, value, expected, hint=hint)
    return number


def positive_number(owner: str, name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number above zero.

    Raises `TypeError` for a non-number (``bool`` included) and `ValueError` for
    zero, a negative number, infinity or NaN.
    """
    if not is_number(value):
        raise _not_a_number(owner, name, value)
    number = float(value)
    if not (number > 0 and math.isfinite(number)):
        raise invalid(ValueError, owner, name, value, "a finite number above 0")
    return number


def non_negative_number(owner: str, name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number of at least zero.

    Raises `TypeError` for a non-number (``bool`` included) and `ValueError` for a
    negative number, infinity or NaN.
    """
    if not is_number(value):
        raise _not_a_number(owner, name, value)
    number = float(value)
    if not (number >= 0 and math.isfinite(number)):
        raise invalid(ValueError, owner, name, value, "a finite number >= 0")
    return number


def positive_integer(
    owner: str, name: str, value: object, maximum: int | None = None, *, hint: str = ""
) -> int:
    """Return ``value`` if it is an int from 1 to ``maximum`` (no upper bound if None).

    Raises `TypeError` for a non-int (``bool`` and ``float`` included) and `ValueError`
    outside the range, giving the valid range.
    """
    if not is_int(value):
        raise invalid(TypeError, owner, name, value, "an int", got=type(value).__name__, hint=hint)
    if value < 1 or (maximum is not None and value > maximum):
        valid = "at least 1" if maximum is None else f"from 1 to {maximum}"
        raise invalid(ValueError, owner, name, value, valid, hint=hint)
    return value


def non_negative_integer(owner: str, name: str, value: object) -> int:
    """Return ``value`` if it is an int of at least zero (``bool`` is refused)."""
    if not is_int(value):
        raise _not_an_int(owner, name, value)
    if value < 0:
        raise invalid(ValueError, owner, name, value, "at least 0")
    return value
