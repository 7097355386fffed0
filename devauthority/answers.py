"""What every endpoint shares: the framework-free answer, form parsing, and the no-store headers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import INVALID_REQUEST, OAuthError

# RFC 8707 lets `resource` repeat; RFC 6749 §3.2 forbids repeating any other parameter.
_REPEATABLE = frozenset({"resource"})
# Tokens and errors about credentials must never be cached by anything between us and the client.
NO_STORE: Mapping[str, str] = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, independent of the web framework. ``body`` None means an empty body."""

    status: int
    body: Mapping[str, Any] | None
    headers: Mapping[str, str] = field(default_factory=dict)


def split_form(form: Sequence[tuple[str, str]]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Each parameter once, plus the (repeatable) ``resource`` values; a repeated other one is an error."""
    params: dict[str, str] = {}
    resources: list[str] = []
    for name, value in form:
        if name in _REPEATABLE:
            resources.append(value)
        elif name in params:
            raise OAuthError(INVALID_REQUEST, f"parameter {name!r} appears more than once")
        else:
            params[name] = value
    return params, tuple(resources)


def require_form_post(
    method: str, form: Sequence[tuple[str, str]] | None, endpoint: str
) -> Sequence[tuple[str, str]]:
    """The form of a POST, or ``invalid_request`` (HelseID wants POST, form-encoded, everywhere)."""
    if method != "POST":
        raise OAuthError(INVALID_REQUEST, f"the {endpoint} endpoint accepts POST only")
    if form is None:
        raise OAuthError(INVALID_REQUEST, "the body must be application/x-www-form-urlencoded")
    return form


def error_answer(error: OAuthError) -> Answer:
    return Answer(error.status, error.body(), {**NO_STORE, **error.headers})
