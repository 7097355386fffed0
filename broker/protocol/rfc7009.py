"""RFC 7009: OAuth 2.0 Token Revocation. https://www.rfc-editor.org/rfc/rfc7009

Implements §2.1 (the request, with client authentication) and §2.2 (200 whether or not the token was valid).
"""

from __future__ import annotations

from datetime import datetime

from broker.protocol.http import HTTPRequest, HTTPResponse
from broker.protocol.rfc6749 import CLIENT_ASSERTION_TYPE, error_for


def build_revocation_request(
    revocation_endpoint: str, *, client_id: str, assertion: str, token: str, token_type_hint: str
) -> HTTPRequest:
    form = {
        "token": token,
        "token_type_hint": token_type_hint,
        "client_id": client_id,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return HTTPRequest("POST", revocation_endpoint, {"Accept": "application/json"}, form)


def check_revocation_response(response: HTTPResponse, *, now: datetime, issuer: str) -> None:
    """§2.2: 200 means revoked (or never valid); anything else is the STS's error."""
    if response.status != 200:
        raise error_for(response, now=now, issuer=issuer)
