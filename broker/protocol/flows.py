"""Token-endpoint flows as generators: they yield `HTTPRequest`s, receive `HTTPResponse`s and return a result.

Pure: the driver in `idp/` does the I/O (`next`, then `send` each response until StopIteration), the clock
and jti source are injected. One DPoP nonce retry with a fresh assertion and proof (RFC 9449 §8; HelseID
demands a nonce at the token endpoint, helseid.md §4). Every grant goes through `_token_endpoint_flow`, so
refresh and token-exchange flows only need a function that builds their grant fields.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from broker.model import AccessToken, Client, Target, TokenSet, TokenType
from broker.protocol import rfc6749, rfc7523, rfc8693, rfc9449
from broker.protocol.http import HTTPRequest, HTTPResponse


@dataclass(frozen=True, slots=True)
class FlowResult:
    """The token, and the DPoP nonce to use on the next call to the same STS (None if none was seen)."""

    token: AccessToken
    nonce: str | None


# The driver sends each yielded request and sends the response back in; the flow returns the FlowResult.
TokenFlow = Generator[HTTPRequest, HTTPResponse, FlowResult]
TokenSetFlow = Generator[HTTPRequest, HTTPResponse, "TokenSetResult"]


@dataclass(frozen=True, slots=True)
class TokenSetResult:
    """The tokens of a user grant, and the DPoP nonce to use next time."""

    tokens: TokenSet
    nonce: str | None


@dataclass(frozen=True, slots=True)
class _TokenEndpoint:
    """What every attempt at the token endpoint needs, whatever the grant."""

    client: Client
    dpop: bool
    details: Sequence[Mapping[str, Any]]
    url: str
    issuer: str
    clock: Callable[[], datetime]
    new_jti: Callable[[], str]


def client_credentials_flow(
    *,
    client: Client,
    target: Target,
    details: Sequence[Mapping[str, Any]],
    token_endpoint: str,
    issuer: str,
    clock: Callable[[], datetime],
    new_jti: Callable[[], str],
    nonce: str | None,
) -> TokenFlow:
    """Get a token for `target` with the client credentials grant (RFC 6749 §4.4), DPoP-bound to the client's
    DPoP key when the target wants DPoP. `details` go into the client assertion (helseid.build_assertion_
    details); `nonce` is the last one this issuer gave, if any."""
    grant = rfc6749.client_credentials_grant(target.scopes, target.resource)
    endpoint = _TokenEndpoint(
        client=client,
        dpop=target.token_type is TokenType.DPOP,
        details=tuple(details),
        url=token_endpoint,
        issuer=issuer,
        clock=clock,
        new_jti=new_jti,
    )
    return (yield from _token_endpoint_flow(endpoint, lambda: grant, nonce))


def _token_endpoint_flow(
    endpoint: _TokenEndpoint, build_grant: Callable[[], Mapping[str, str]], nonce: str | None
) -> TokenFlow:
    """One token request, and at most one retry when the STS answers with a DPoP nonce challenge."""
    response, now, nonce = yield from _answered_token_request(endpoint, build_grant, nonce)
    # `now` is when the answered request was built: the token cannot be older, so expiry errs early.
    expected_jkt = endpoint.client.dpop_key.thumbprint if endpoint.dpop else None
    token = rfc6749.parse_token_response(response, now=now, issuer=endpoint.issuer, expected_jkt=expected_jkt)
    return FlowResult(token=token, nonce=rfc9449.response_nonce(response) or nonce)


def _token_set_flow(
    endpoint: _TokenEndpoint, build_grant: Callable[[], Mapping[str, str]], nonce: str | None
) -> TokenSetFlow:
    """Like _token_endpoint_flow, for user grants whose answer also has refresh and ID tokens."""
    response, now, nonce = yield from _answered_token_request(endpoint, build_grant, nonce)
    expected_jkt = endpoint.client.dpop_key.thumbprint if endpoint.dpop else None
    tokens = rfc6749.parse_token_set(response, now=now, issuer=endpoint.issuer, expected_jkt=expected_jkt)
    return TokenSetResult(tokens=tokens, nonce=rfc9449.response_nonce(response) or nonce)


def _answered_token_request(
    endpoint: _TokenEndpoint, build_grant: Callable[[], Mapping[str, str]], nonce: str | None
) -> Generator[HTTPRequest, HTTPResponse, tuple[HTTPResponse, datetime, str | None]]:
    now = endpoint.clock()
    response = yield _token_request(endpoint, build_grant(), now=now, nonce=nonce)
    challenge = rfc9449.nonce_challenge(response) if endpoint.dpop else None
    if challenge is not None:
        # Fresh assertion and proof: each jti is single-use, and the iat should be new anyway. A second
        # challenge is not retried; parsing it raises IdpRejectedError(use_dpop_nonce).
        nonce, now = challenge, endpoint.clock()
        response = yield _token_request(endpoint, build_grant(), now=now, nonce=nonce)
    return response, now, nonce


def _token_request(
    endpoint: _TokenEndpoint, grant: Mapping[str, str], *, now: datetime, nonce: str | None
) -> HTTPRequest:
    client = endpoint.client
    # HelseID's libraries send the issuer as `aud` (helseid.md §1); it is used exactly as discovery gives it.
    assertion = rfc7523.build_client_assertion(
        client_id=client.client_id,
        audience=endpoint.issuer,
        key=client.signing_key,
        now=now,
        jti=endpoint.new_jti(),
        details=endpoint.details,
    )
    proof = None
    if endpoint.dpop:
        proof = rfc9449.build_dpop_proof(
            client.dpop_key, htm="POST", htu=endpoint.url, now=now, jti=endpoint.new_jti(), nonce=nonce
        )
    return rfc6749.build_token_request(
        endpoint.url, grant=grant, client_id=client.client_id, assertion=assertion, dpop_proof=proof
    )


def _endpoint(
    client: Client,
    *,
    dpop: bool,
    details: Sequence[Mapping[str, Any]],
    token_endpoint: str,
    issuer: str,
    clock: Callable[[], datetime],
    new_jti: Callable[[], str],
) -> _TokenEndpoint:
    return _TokenEndpoint(client, dpop, tuple(details), token_endpoint, issuer, clock, new_jti)


def authorization_code_flow(
    *,
    client: Client,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    resource: str | None,
    dpop: bool,
    token_endpoint: str,
    issuer: str,
    clock: Callable[[], datetime],
    new_jti: Callable[[], str],
    nonce: str | None,
) -> TokenSetFlow:
    """Redeems a login's code (RFC 6749 §4.1.3 with PKCE) for one resource. No org details travel here:
    HelseID refuses them on code redemption (HID-1009); they go on the refresh grant instead."""
    grant = rfc6749.authorization_code_grant(
        code, redirect_uri=redirect_uri, code_verifier=code_verifier, resource=resource
    )
    endpoint = _endpoint(
        client,
        dpop=dpop,
        details=(),
        token_endpoint=token_endpoint,
        issuer=issuer,
        clock=clock,
        new_jti=new_jti,
    )
    return (yield from _token_set_flow(endpoint, lambda: grant, nonce))


def refresh_token_flow(
    *,
    client: Client,
    refresh_token: str,
    target: Target,
    details: Sequence[Mapping[str, Any]],
    token_endpoint: str,
    issuer: str,
    clock: Callable[[], datetime],
    new_jti: Callable[[], str],
    nonce: str | None,
) -> TokenSetFlow:
    """A single-audience token for `target` from a refresh token (RFC 6749 §6 with RFC 8707 `resource`);
    the org details travel in the client assertion, as HelseID recommends (helseid.md §5)."""
    grant = rfc6749.refresh_token_grant(refresh_token, resource=target.resource, scopes=target.scopes)
    endpoint = _endpoint(
        client,
        dpop=target.token_type is TokenType.DPOP,
        details=details,
        token_endpoint=token_endpoint,
        issuer=issuer,
        clock=clock,
        new_jti=new_jti,
    )
    return (yield from _token_set_flow(endpoint, lambda: grant, nonce))


def token_exchange_flow(
    *,
    client: Client,
    subject_token: str,
    target: Target,
    details: Sequence[Mapping[str, Any]],
    token_endpoint: str,
    issuer: str,
    clock: Callable[[], datetime],
    new_jti: Callable[[], str],
    nonce: str | None,
) -> TokenFlow:
    """Exchanges a subject token for a token for `target` (RFC 8693 §2.1), the client acting as actor."""
    grant = rfc8693.token_exchange_grant(subject_token, scopes=target.scopes, resource=target.resource)
    endpoint = _endpoint(
        client,
        dpop=target.token_type is TokenType.DPOP,
        details=details,
        token_endpoint=token_endpoint,
        issuer=issuer,
        clock=clock,
        new_jti=new_jti,
    )
    return (yield from _token_endpoint_flow(endpoint, lambda: grant, nonce))
