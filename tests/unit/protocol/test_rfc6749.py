from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from broker.errors import IdpRejectedError, IdpUnavailableError, ProtocolError
from broker.model import TokenType
from broker.protocol.rfc6749 import (
    CLIENT_ASSERTION_TYPE,
    build_token_request,
    client_credentials_grant,
    parse_token_response,
)

from .support import NOW, NOW_S, access_token_jwt, response

ISSUER = "https://helseid-sts.test.nhn.no"
JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def _parse(status: int, body: object, *, expected_jkt: str | None = JKT, **headers: str) -> Any:
    return parse_token_response(
        response(status, body, headers), now=NOW, issuer=ISSUER, expected_jkt=expected_jkt
    )


def _success(access_token: str, **fields: object) -> dict[str, object]:
    return {"access_token": access_token, "token_type": "DPoP", "expires_in": 3600, **fields}


def test_grant_has_type_scope_and_resource_when_built() -> None:
    grant = client_credentials_grant(["e-helse:sfm.api/client", "nhn:sfm:journal-id"], "e-helse:sfm.api")
    assert grant == {
        "grant_type": "client_credentials",
        "scope": "e-helse:sfm.api/client nhn:sfm:journal-id",
        "resource": "e-helse:sfm.api",
    }


def test_grant_is_refused_when_a_scope_contains_a_space() -> None:
    with pytest.raises(ValueError, match="scope-token"):
        client_credentials_grant(["a b"], None)


def test_request_is_a_form_post_with_client_assertion_when_built() -> None:
    request = build_token_request(
        f"{ISSUER}/connect/token",
        grant={"grant_type": "client_credentials", "scope": "s"},
        client_id="client-a",
        assertion="assertion.jwt",
        dpop_proof="proof.jwt",
    )
    assert (request.method, request.url) == ("POST", f"{ISSUER}/connect/token")
    assert request.form == {
        "grant_type": "client_credentials",
        "scope": "s",
        "client_id": "client-a",
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": "assertion.jwt",
    }
    assert request.headers == {"Accept": "application/json", "DPoP": "proof.jwt"}


def test_request_has_no_dpop_header_when_there_is_no_proof() -> None:
    request = build_token_request(
        "https://sts/token", grant={}, client_id="c", assertion="a", dpop_proof=None
    )
    assert "DPoP" not in request.headers


def test_token_is_dpop_bound_when_cnf_jkt_matches() -> None:
    value = access_token_jwt({"aud": "e-helse:sfm.api", "cnf": {"jkt": JKT}})
    token = _parse(200, _success(value, scope="e-helse:sfm.api/client nhn:sfm:journal-id"))
    assert token.value == value
    assert (token.token_type, token.jkt) == (TokenType.DPOP, JKT)
    assert token.scopes == ("e-helse:sfm.api/client", "nhn:sfm:journal-id")
    assert token.audience == ("e-helse:sfm.api",)
    assert (token.issued_at, token.expires_at) == (NOW, NOW + timedelta(hours=1))


def test_token_is_refused_when_cnf_jkt_names_another_key() -> None:
    value = access_token_jwt({"cnf": {"jkt": "another-key-thumbprint"}})
    with pytest.raises(ProtocolError, match=r"cnf\.jkt") as caught:
        _parse(200, _success(value))
    assert value not in str(caught.value)
    assert caught.value.metadata["issuer"] == ISSUER


def test_token_is_refused_when_dpop_was_asked_and_bearer_came() -> None:
    with pytest.raises(ProtocolError, match="Bearer"):
        _parse(200, _success("opaque", token_type="Bearer"))


def test_bearer_token_is_accepted_when_no_jkt_is_expected() -> None:
    token = _parse(200, _success("opaque", token_type="bearer"), expected_jkt=None)
    assert (token.token_type, token.jkt, token.audience) == (TokenType.BEARER, None, ())


def test_opaque_dpop_token_is_accepted_when_it_cannot_be_decoded() -> None:
    token = _parse(200, _success("opaque-reference-token", token_type="dpop"))
    assert (token.token_type, token.jkt, token.scopes) == (TokenType.DPOP, JKT, ())


def test_audience_is_every_value_when_aud_is_a_list() -> None:
    token = _parse(200, _success(access_token_jwt({"aud": ["a", "b"], "cnf": {"jkt": JKT}})))
    assert token.audience == ("a", "b")


def test_rejected_scopes_are_listed_when_the_tenant_lacks_terms() -> None:
    token = _parse(200, _success("opaque", scope="s1", rejected_scope="s2 s3"))
    assert (token.scopes, token.rejected_scopes) == (("s1",), ("s2", "s3"))


def test_expires_in_is_read_when_it_is_a_numeric_string() -> None:
    token = _parse(200, _success("opaque", expires_in="300"))
    assert token.lifetime == timedelta(seconds=300)


@pytest.mark.parametrize("expires_in", [None, 0, -5, "soon", 1.5, True])
def test_token_is_refused_when_expires_in_is_missing_or_not_positive(expires_in: object) -> None:
    body = _success("opaque", expires_in=expires_in)
    if expires_in is None:
        del body["expires_in"]
    with pytest.raises(ProtocolError, match="expires_in"):
        _parse(200, body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"token_type": "DPoP", "expires_in": 60}, "access_token"),
        ({"access_token": "", "token_type": "DPoP", "expires_in": 60}, "access_token"),
        ({"access_token": "t", "token_type": "MAC", "expires_in": 60}, "token_type"),
        (["not", "an", "object"], "JSON object"),
    ],
)
def test_token_is_refused_when_a_required_field_is_wrong(body: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        _parse(200, body)


def test_rejection_carries_error_and_description_when_400_invalid_client() -> None:
    body = {"error": "invalid_client", "error_description": "Unknown key\r\nforged log line"}
    with pytest.raises(IdpRejectedError) as caught:
        _parse(400, body)
    error = caught.value
    assert (error.oauth_error, error.status, error.metadata["issuer"]) == ("invalid_client", 400, ISSUER)
    assert error.description == "Unknown key  forged log line"


def test_unavailable_is_raised_with_retry_after_when_503() -> None:
    with pytest.raises(IdpUnavailableError) as caught:
        _parse(503, None, **{"Retry-After": "7"})
    assert caught.value.retryable
    assert caught.value.retry_after == timedelta(seconds=7)
    assert "503" in caught.value.message


def test_retry_after_is_read_when_503_gives_an_http_date() -> None:
    with pytest.raises(IdpUnavailableError) as caught:
        _parse(503, None, **{"Retry-After": "Sun, 01 Mar 2026 12:00:20 GMT"})
    assert caught.value.retry_after == timedelta(seconds=20)


def test_dpop_token_keeps_its_cnf_jkt_when_no_jkt_was_expected() -> None:
    token = _parse(200, _success(access_token_jwt({"cnf": {"jkt": JKT}})), expected_jkt=None)
    assert (token.token_type, token.jkt) == (TokenType.DPOP, JKT)


def test_protocol_error_is_raised_when_the_sts_redirects() -> None:
    with pytest.raises(ProtocolError, match="302"):
        _parse(302, None)


def test_unavailable_is_raised_when_429_even_with_an_oauth_error() -> None:
    with pytest.raises(IdpUnavailableError):
        _parse(429, {"error": "slow_down"})


def test_protocol_error_is_raised_without_the_body_when_4xx_has_no_oauth_error() -> None:
    with pytest.raises(ProtocolError) as caught:
        _parse(403, {"message": "secret-looking body"})
    assert "secret-looking" not in str(caught.value)
    assert caught.value.metadata["httpStatus"] == "403"


# --- the binding of a DPoP token (issue 7, point 7) --------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [{"aud": "e-helse:sfm.api"}, {"cnf": {}}, {"cnf": {"x5t#S256": "abc"}}, {"cnf": "jkt"}],
    ids=["no-cnf", "empty-cnf", "cnf-without-jkt", "cnf-not-an-object"],
)
def test_dpop_jwt_is_refused_when_it_carries_no_cnf_jkt(claims: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match=r"cnf\.jkt") as caught:
        _parse(200, _success(access_token_jwt(claims)))
    assert caught.value.reason == "PROTOCOL_VIOLATION"
    print(f"\nDPoP JWT with claims {sorted(claims)} refused: {caught.value.message}")


def test_opaque_dpop_token_is_bound_by_token_type_when_it_cannot_be_read() -> None:
    # Nothing in an opaque token can be checked; token_type DPoP for a proven request is the STS's word.
    token = _parse(200, _success("opaque-reference-token"))
    assert (token.token_type, token.jkt) == (TokenType.DPOP, JKT)
    with pytest.raises(ProtocolError, match="Bearer"):
        _parse(200, _success("opaque-reference-token", token_type="Bearer"))


# --- the expiry of a JWT: the earlier of expires_in and exp (issue 7, point 7) ------------------------------


def test_expiry_is_the_jwt_exp_when_it_is_earlier_than_expires_in() -> None:
    # The STS truncates iat to whole seconds: our request started 0.8 s into the second it issued in.
    now = NOW + timedelta(milliseconds=800)
    value = access_token_jwt({"cnf": {"jkt": JKT}, "iat": NOW_S, "exp": NOW_S + 60})
    token = parse_token_response(
        response(200, _success(value, expires_in=60)), now=now, issuer=ISSUER, expected_jkt=JKT
    )
    assert token.expires_at == NOW + timedelta(seconds=60)
    assert token.issued_at == now
    print(f"\nexpires_in 60 s from +0.8 s would end at +60.8 s; the token ends at its exp, +{60} s")


def test_expiry_is_expires_in_when_the_jwt_exp_is_later_or_absent() -> None:
    later = access_token_jwt({"cnf": {"jkt": JKT}, "exp": NOW_S + 7200})
    absent = access_token_jwt({"cnf": {"jkt": JKT}})
    for value in (later, absent, "opaque"):
        token = _parse(200, _success(value, expires_in=300))
        assert token.expires_at == NOW + timedelta(seconds=300)


@pytest.mark.parametrize(
    ("exp", "message"),
    [
        (NOW_S, "already passed"),
        (NOW_S - 5, "already passed"),
        ("soon", "NumericDate"),
        (True, "NumericDate"),
    ],
)
def test_jwt_is_refused_when_its_exp_is_past_or_not_a_date(exp: object, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        _parse(200, _success(access_token_jwt({"cnf": {"jkt": JKT}, "exp": exp})))
