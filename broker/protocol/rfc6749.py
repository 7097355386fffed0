"""RFC 6749: The OAuth 2.0 Authorization Framework. https://www.rfc-editor.org/rfc/rfc6749

Implements §3.3 (scope), §4.4.2 (the client credentials request), §5.1 (successful response) and §5.2
(error response), with client authentication by RFC 7521 §4.2 / RFC 7523 §2.2 (`client_assertion`), the
`resource` parameter of RFC 8707 §2, and the `DPoP` token type and `cnf.jkt` binding of RFC 9449 §5-6.
Parsing treats the response as untrusted: messages carry only the STS's `error`/`error_description`.

A token's expiry is the earlier of the request's start plus `expires_in` and, for a JWT, its own `exp`
(RFC 7519 §4.1.4): the STS truncates `iat`/`exp` to whole seconds, so `expires_in` alone can run late.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final

from broker.errors import BrokerError, IdpRejectedError, IdpUnavailableError, ProtocolError
from broker.model import AccessToken, TokenSet, TokenType
from broker.protocol.http import HTTPRequest, HTTPResponse
from broker.protocol.rfc7519 import unverified_claims

CLIENT_ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_CREDENTIALS_GRANT_TYPE: Final = "client_credentials"
AUTHORIZATION_CODE_GRANT_TYPE: Final = "authorization_code"
REFRESH_TOKEN_GRANT_TYPE: Final = "refresh_token"  # noqa: S105 - a grant type name, not a secret
# HelseID's own response field: the refresh token's remaining lifetime in seconds (helseid.md §6).
RT_EXPIRES_IN: Final = "rt_expires_in"

_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # §3.3 scope-token
_ERROR_CODE: Final = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]+")  # §5.2 error
_NOT_DESCRIPTION_CHAR: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # §5.2 error_description
_MAX_DESCRIPTION_CHARS: Final = 300
# A lifetime beyond a year means a broken STS; the cap also keeps datetime arithmetic from overflowing.
_MAX_EXPIRES_IN_S: Final = 366 * 24 * 3600
# Longer waits than this are the scheduler's business; the cap also avoids a timedelta overflow.
_MAX_RETRY_AFTER: Final = timedelta(hours=1)
_TOKEN_TYPES: Final = {"dpop": TokenType.DPOP, "bearer": TokenType.BEARER}
_AUTHENTICATION_FIELDS: Final = frozenset({"client_id", "client_assertion", "client_assertion_type"})


class _InvalidResponseError(Exception):
    """A rule of §5.1 broken; becomes a ProtocolError with the issuer attached."""


def client_credentials_grant(scopes: Sequence[str], resource: str | None) -> dict[str, str]:
    """The grant fields of a client credentials request (§4.4.2): grant_type, scope, and resource."""
    if isinstance(scopes, str):
        raise TypeError("scopes must be a sequence of scope tokens, not one string")
    for scope in scopes:
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise ValueError("every scope must be a non-empty scope-token without spaces (RFC 6749 §3.3)")
    form = {"grant_type": CLIENT_CREDENTIALS_GRANT_TYPE}
    if scopes:
        form["scope"] = " ".join(scopes)
    if resource:
        form["resource"] = resource
    return form


def authorization_code_grant(
    code: str, *, redirect_uri: str, code_verifier: str, resource: str | None
) -> dict[str, str]:
    """§4.1.3 with PKCE (RFC 7636 §4.5) and one `resource` (RFC 8707), so the token has one audience."""
    if not code:
        raise ValueError("code must not be empty")
    form = {
        "grant_type": AUTHORIZATION_CODE_GRANT_TYPE,
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    if resource:
        form["resource"] = resource
    return form


def refresh_token_grant(
    refresh_token: str, *, resource: str | None, scopes: Sequence[str] = ()
) -> dict[str, str]:
    """§6, with one `resource` so that HelseID issues a single-audience token for that API."""
    if not refresh_token:
        raise ValueError("refresh_token must not be empty")
    form = {"grant_type": REFRESH_TOKEN_GRANT_TYPE, "refresh_token": refresh_token}
    if resource:
        form["resource"] = resource
    if scopes:
        form["scope"] = " ".join(scopes)
    return form


def build_token_request(
    token_endpoint: str,
    *,
    grant: Mapping[str, str],
    client_id: str,
    assertion: str,
    dpop_proof: str | None,
) -> HTTPRequest:
    """A POST to the token endpoint with the grant fields and private_key_jwt client authentication."""
    if _AUTHENTICATION_FIELDS & grant.keys():
        raise ValueError("the grant must not carry client authentication fields")
    form = {
        **grant,
        "client_id": client_id,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    headers = {"Accept": "application/json"}
    if dpop_proof is not None:
        headers["DPoP"] = dpop_proof
    return HTTPRequest(method="POST", url=token_endpoint, headers=headers, form=form)


def parse_token_response(
    response: HTTPResponse, *, now: datetime, issuer: str, expected_jkt: str | None
) -> AccessToken:
    """The access token of a 2xx token response (§5.1), checked; otherwise the matching BrokerError.

    `expected_jkt` is the thumbprint of the DPoP key the request was proven with (None for bearer).
    Raises IdpRejectedError (4xx with an OAuth error, §5.2), IdpUnavailableError (5xx, 429) or
    ProtocolError (anything else that breaks the rules).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not 200 <= response.status < 300:
        raise error_for(response, now=now, issuer=issuer)
    try:
        return _access_token(response, now=now, expected_jkt=expected_jkt)
    except _InvalidResponseError as exc:
        raise ProtocolError(f"invalid token response: {exc}", issuer=issuer) from None


def parse_token_set(
    response: HTTPResponse, *, now: datetime, issuer: str, expected_jkt: str | None
) -> TokenSet:
    """Like parse_token_response, plus the refresh token, its lifetime and the ID token of a user grant."""
    access_token = parse_token_response(response, now=now, issuer=issuer, expected_jkt=expected_jkt)
    body = response.json_object() or {}
    refresh_token = body.get("refresh_token")
    id_token = body.get("id_token")
    rt_expires_in = body.get(RT_EXPIRES_IN)
    refresh_expires_at = None
    if isinstance(rt_expires_in, int) and not isinstance(rt_expires_in, bool) and rt_expires_in > 0:
        refresh_expires_at = now + timedelta(seconds=min(rt_expires_in, _MAX_EXPIRES_IN_S))
    return TokenSet(
        access_token=access_token,
        refresh_token=refresh_token if isinstance(refresh_token, str) and refresh_token else None,
        refresh_expires_at=refresh_expires_at,
        id_token=id_token if isinstance(id_token, str) and id_token else None,
    )


def _oauth_error(response: HTTPResponse) -> tuple[str, str] | None:
    """`(error, error_description)` of an OAuth error body (§5.2), the description cleaned and cut short;
    None when the body is no such thing."""
    body = response.json_object()
    if body is None:
        return None
    error = body.get("error")
    if not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        return None
    description = body.get("error_description")
    if not isinstance(description, str):
        return error, ""
    # The description ends up in logs and gRPC details: strip control characters, keep it short.
    return error, _NOT_DESCRIPTION_CHAR.sub(" ", description)[:_MAX_DESCRIPTION_CHARS]


def error_for(response: HTTPResponse, *, now: datetime, issuer: str) -> BrokerError:
    status = response.status
    error = _oauth_error(response)
    if status >= 500 or status == 429:
        # 429 is rate limiting: as retryable as an outage, whatever the body says.
        detail = f" ({error[0]})" if error is not None else ""
        retry_after = _retry_after(response, now)
        message = f"the STS answered HTTP {status}{detail}"
        if retry_after is None:
            return IdpUnavailableError(message, issuer=issuer)
        return IdpUnavailableError(message, issuer=issuer, retry_after=retry_after)
    if 400 <= status < 500 and error is not None:
        return IdpRejectedError(error[0], error[1], status=status, issuer=issuer)
    what = "without an OAuth error" if 400 <= status < 500 else "instead of a token response"
    return ProtocolError(f"the STS answered HTTP {status} {what}", issuer=issuer, httpStatus=str(status))


def _retry_after(response: HTTPResponse, now: datetime) -> timedelta | None:
    """RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if value.isascii() and value.isdigit():
        seconds = int(value)
        return _MAX_RETRY_AFTER if seconds > _MAX_RETRY_AFTER.total_seconds() else timedelta(seconds=seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(when - now, timedelta(0)), _MAX_RETRY_AFTER)


def _access_token(response: HTTPResponse, *, now: datetime, expected_jkt: str | None) -> AccessToken:
    body = response.json_object()
    if body is None:
        raise _InvalidResponseError("the body is not a JSON object")
    value = body.get("access_token")
    if not isinstance(value, str) or not value:
        raise _InvalidResponseError("access_token is missing or not a non-empty string")
    token_type = _token_type(body, expected_jkt)
    # Reading our own token's claims unverified is fine: they are hints, and we are not its audience.
    # None means the token is not a JWT (opaque, or encrypted): nothing in it can be checked.
    claims = unverified_claims(value)
    jkt = _binding(claims, expected_jkt) if token_type is TokenType.DPOP else None
    return AccessToken(
        value=value,
        token_type=token_type,
        issued_at=now,
        expires_at=_expires_at(body, claims, now),
        scopes=_scope_list(body, "scope"),
        rejected_scopes=_scope_list(body, "rejected_scope"),
        audience=_audience(claims or {}),
        jkt=jkt,
    )


def _token_type(body: Mapping[str, Any], expected_jkt: str | None) -> TokenType:
    raw = body.get("token_type")
    # §5.1: token_type is case-insensitive.
    token_type = _TOKEN_TYPES.get(raw.lower()) if isinstance(raw, str) else None
    if token_type is None:
        raise _InvalidResponseError("token_type must be DPoP or Bearer")
    if expected_jkt is not None and token_type is not TokenType.DPOP:
        # RFC 9449 §5: a proof was sent, so a Bearer token means the STS ignored it; do not downgrade.
        raise _InvalidResponseError("a DPoP-bound token was requested, the STS issued a Bearer token")
    return token_type


def _binding(claims: Mapping[str, Any] | None, expected_jkt: str | None) -> str | None:
    """The key thumbprint a DPoP token is bound to.

    A JWT must carry RFC 9449 §6.1 `cnf.jkt`, equal to the thumbprint of the key we proved: without it a
    resource server has nothing to check the proof against, and the token would be a bearer token.
    An opaque token cannot be read; what is checked instead is what the STS says about it: `token_type`
    DPoP (RFC 9449 §5: the token is bound to the key of the request's proof; a Bearer answer to a proven
    request is refused by _token_type), and the broker only ever proves it with that same key. The resource
    server checks the binding itself, by introspection (RFC 9449 §6.2).
    """
    if claims is None:
        return expected_jkt
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    if expected_jkt is None:
        return jkt if isinstance(jkt, str) else None
    if jkt is None:
        raise _InvalidResponseError("the DPoP access token carries no key binding (cnf.jkt)")
    if jkt != expected_jkt:
        raise _InvalidResponseError("the access token is bound to another key (cnf.jkt)")
    return expected_jkt


def _expires_at(body: Mapping[str, Any], claims: Mapping[str, Any] | None, now: datetime) -> datetime:
    """`now` plus `expires_in`, or the JWT's `exp` when earlier; a token already past its `exp` is refused."""
    by_expires_in = now + timedelta(seconds=_expires_in(body))
    if claims is None or "exp" not in claims:
        return by_expires_in
    exp = claims["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise _InvalidResponseError("the access token's exp is not a NumericDate")
    if exp >= by_expires_in.timestamp():
        return by_expires_in  # also keeps an absurd exp away from datetime's range
    if exp <= now.timestamp():
        # Our clock is past the token's exp: it is expired here, whatever expires_in says (clock skew?).
        raise _InvalidResponseError("the access token's exp has already passed by the broker's clock")
    return datetime.fromtimestamp(exp, UTC)


def _expires_in(body: Mapping[str, Any]) -> int:
    raw = body.get("expires_in")
    # A numeric string is not what §5.1 asks for, but some servers send one and the meaning is clear.
    if isinstance(raw, str) and raw.isascii() and raw.isdigit():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw <= _MAX_EXPIRES_IN_S:
        raise _InvalidResponseError("expires_in must be a positive integer number of seconds")
    return raw


def _scope_list(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    raw = body.get(name)
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(raw.split())
    # Tolerate a JSON array: HelseID's access tokens carry `scope` that way, a response might too.
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return tuple(raw)
    raise _InvalidResponseError(f"{name} must be a space-separated string")


def _audience(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    if isinstance(aud, list):
        return tuple(item for item in aud if isinstance(item, str))
    return ()
