"""RFC 8693: OAuth 2.0 Token Exchange. https://www.rfc-editor.org/rfc/rfc8693

Implements §2.1 (the request: subject token, its type, and the target as `resource` and `scope`); the client
that authenticates is the actor. HelseID issues the new token with an `act` claim (helseid.md §6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - a type URN


def token_exchange_grant(
    subject_token: str,
    *,
    scopes: Sequence[str],
    resource: str | None,
    subject_token_type: str = ACCESS_TOKEN_TYPE,
) -> dict[str, str]:
    if not subject_token:
        raise ValueError("subject_token must not be empty")
    form = {
        "grant_type": GRANT_TYPE,
        "subject_token": subject_token,
        "subject_token_type": subject_token_type,
        "requested_token_type": ACCESS_TOKEN_TYPE,
    }
    if scopes:
        form["scope"] = " ".join(scopes)
    if resource:
        form["resource"] = resource
    return form
