from __future__ import annotations

import pytest

from broker.protocol.http import HTTPResponse


def test_header_names_are_lower_cased_when_the_response_is_built() -> None:
    answer = HTTPResponse(
        status=200, headers={"DPoP-Nonce": "n", "Content-Type": "application/json"}, body=b""
    )
    assert answer.headers == {"dpop-nonce": "n", "content-type": "application/json"}


def test_json_object_is_the_body_when_it_is_a_json_object() -> None:
    assert HTTPResponse(200, {}, b'{"error": "invalid_client"}').json_object() == {"error": "invalid_client"}


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_json_object_is_none_when_the_body_is_not_a_json_object(body: bytes) -> None:
    assert HTTPResponse(200, {}, body).json_object() is None
