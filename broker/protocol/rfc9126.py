"""RFC 9126: OAuth 2.0 Pushed Authorization Requests (PAR). https://www.rfc-editor.org/rfc/rfc9126

Implements §2.1 (the request, with client authentication), §2.2 (the response) and §4 (the authorization
request that follows, with only `client_id` and `request_uri`). PAR is mandatory for new HelseID clients
that log users in (helseid.md §5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode

from broker.errors import ProtocolError
from broker.protocol.http import HTTPRequest, HTTPResponse
from broker.protocol.rfc6749 import CLIENT_ASSERTION_TYPE, error_for

_MAX_EXPIRES_IN_S: Final = 3600


@dataclass(frozen=True, slots=True)
class PushedRequest:
    request_uri: str
    expires_at: datetime


def build_par_request(
    par_endpoint: str, *, client_id: str, assertion: str, parameters: Mapping[str, str | tuple[str, ...]]
) -> HTTPRequest:
    """A POST of the authorization parameters with private_key_jwt client authentication (§2.1)."""
    form: dict[str, str | tuple[str, ...]] = {
        **parameters,
        "client_id": client_id,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return HTTPRequest("POST", par_endpoint, {"Accept": "application/json"}, form)


def parse_par_response(response: HTTPResponse, *, now: datetime, issuer: str) -> PushedRequest:
    """The request_uri of a 201 answer (§2.2); errors like the token endpoint's (§2.3)."""
    if response.status not in (200, 201):
        raise error_for(response, now=now, issuer=issuer)
    body = response.json_object() or {}
    request_uri = body.get("request_uri")
    expires_in = body.get("expires_in")
    if not isinstance(request_uri, str) or not request_uri:
        raise ProtocolError("the PAR response has no request_uri", issuer=issuer)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 0 < expires_in <= _MAX_EXPIRES_IN_S
    ):
        raise ProtocolError("the PAR response has no valid expires_in", issuer=issuer)
    return PushedRequest(request_uri, now + timedelta(seconds=expires_in))


def authorization_url(authorization_endpoint: str, *, client_id: str, request_uri: str) -> str:
    """Where to send the browser (§4): only client_id and request_uri travel through it."""
    separator = "&" if "?" in authorization_endpoint else "?"
    return (
        authorization_endpoint + separator + urlencode({"client_id": client_id, "request_uri": request_uri})
    )
