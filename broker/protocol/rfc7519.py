"""RFC 7519: JSON Web Token (JWT). https://www.rfc-editor.org/rfc/rfc7519

Implements §2 (NumericDate) for the claims we sign, and reads the claims of a JWT we did not issue and
cannot verify (§7.2 steps 1-7 without the signature check), which is all a client may do with an access
token: it is opaque to us by contract, but HelseID's are JWS JWTs whose `aud` and `cnf` are worth checking.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

# Access tokens can carry big headers (x5c chains); joserfc's 512-byte default is a DoS guard for
# verification, which we do not do here, so a roomier limit only avoids mistaking a JWT for an opaque token.
_READ_REGISTRY = jws.JWSRegistry()
_READ_REGISTRY.max_header_length = 16_384
_READ_REGISTRY.max_signature_length = 4_096


def numeric_date(instant: datetime) -> int:
    """Seconds since the epoch (RFC 7519 §2 NumericDate), truncated; `instant` must be timezone-aware."""
    if instant.tzinfo is None:
        # A naive datetime would silently be read as local time and shift iat/exp by the UTC offset.
        raise ValueError("instants must be timezone-aware")
    return int(instant.timestamp())


def unverified_claims(token: str) -> dict[str, Any] | None:
    """The claims of a JWS-compact JWT WITHOUT verifying it; None for anything else (opaque, JWE, bad JSON).

    Only for reading hints from tokens we are not the audience of; never base a trust decision on it alone.
    """
    try:
        signed = jws.extract_compact(token.encode("ascii"), registry=_READ_REGISTRY)
        claims = json.loads(signed.payload)
    except (JoseError, ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None
