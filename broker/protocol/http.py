"""The HTTP messages protocol flows yield and receive.

Plain values, so the flows stay pure: an adapter in `idp/` turns an `HTTPRequest` into a real request and the
real response into an `HTTPResponse`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class HTTPRequest:
    """A request to send; `form` is the `application/x-www-form-urlencoded` body (empty for none).

    A field given as a tuple is sent once per value (RFC 8707 allows several `resource` parameters).
    """

    method: str
    url: str
    headers: Mapping[str, str]
    form: Mapping[str, str | tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A received response. Header names are lower-cased on construction, so lookups need not care."""

    status: int
    headers: Mapping[str, str]  # keys lower-case
    body: bytes

    def __post_init__(self) -> None:
        # HTTP field names are case-insensitive (RFC 9110 §5.1); normalise once instead of at every lookup.
        object.__setattr__(self, "headers", {name.lower(): value for name, value in self.headers.items()})

    def json_object(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one (not JSON, or an array, string, ...)."""
        try:
            value = json.loads(self.body)
        except (ValueError, TypeError):
            return None
        return value if isinstance(value, dict) else None
