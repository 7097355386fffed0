"""RFC 9101: JWT-Secured Authorization Request (JAR). https://www.rfc-editor.org/rfc/rfc9101

Implements §4 (the request object) and §10.8 (`typ` `oauth-authz-req+jwt`). HelseID wants a multi-tenant
client's organisation at login in the request object's `authorization_details` (helseid.md §3, §5), signed
with the client's key, `iss` = client_id, `aud` = the issuer, and at most 60 s of lifetime.

An authorization server may check the object again when the browser opens the PAR URL (RFC 9126 §4 has it
process the pushed request then), so the URL works no longer than the object: the object gets the whole
60 s HelseID allows, which covers a PAR `expires_in` of 60 s (the dev authority's and oidc-provider's), and
`expires_at` tells when the object, and with it the URL, runs out where an STS grants the URL longer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from broker.model import SigningKey
from broker.protocol import keys
from broker.protocol.helseid import AUTHORIZATION_DETAILS_CLAIM
from broker.protocol.rfc7519 import numeric_date

REQUEST_OBJECT_TYPE: Final = "oauth-authz-req+jwt"
MAX_LIFETIME: Final = timedelta(seconds=60)


def build_request_object(
    *,
    client_id: str,
    audience: str,
    key: SigningKey,
    now: datetime,
    jti: str,
    parameters: Mapping[str, str | tuple[str, ...]],
    details: Sequence[Mapping[str, Any]] = (),
    lifetime: timedelta = MAX_LIFETIME,
) -> str:
    """A signed request object carrying every authorization parameter (and the org in `details`)."""
    if lifetime > MAX_LIFETIME:
        raise ValueError("a request object may live at most 60 s")
    issued_at = numeric_date(now)
    claims: dict[str, Any] = {
        name: list(value) if isinstance(value, tuple) else value for name, value in parameters.items()
    }
    claims.update(
        {
            "iss": client_id,
            "aud": audience,
            "client_id": client_id,
            "jti": jti,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": numeric_date(expires_at(now, lifetime)),
        }
    )
    if details:
        # Request objects carry the structure as `authorization_details` (helseid.md §3).
        claims[AUTHORIZATION_DETAILS_CLAIM] = [dict(item) for item in details]
    header = {"typ": REQUEST_OBJECT_TYPE, "alg": key.alg, "kid": key.kid}
    return keys.sign_jwt(key, header, claims)


def expires_at(now: datetime, lifetime: timedelta = MAX_LIFETIME) -> datetime:
    """The `exp` of an object built at `now` (whole seconds, as in the claim): when it stops being valid."""
    return datetime.fromtimestamp(numeric_date(now) + int(lifetime.total_seconds()), UTC)
