"""Clock handling shared by the assertion and DPoP checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

# The clock is injectable so tests can move time (nonce rotation, expiry) without sleeping.
Clock = Callable[[], float]

# Tolerated clock difference between the client and us for nbf/iat/exp. HelseID does not document its
# own; a few seconds keeps honest clients working while an assertion dated a minute ahead still fails.
CLOCK_SKEW_S = 5.0


def is_numeric_date(value: Any) -> TypeGuard[int | float]:
    """JWT NumericDate: a JSON number (``True`` is an int in Python, so it is excluded explicitly)."""
    return isinstance(value, int | float) and not isinstance(value, bool)
