"""Which URLs and methods get a DPoP proof: prefixes on RFC 3986 normal forms, at segment boundaries."""

from __future__ import annotations

import pytest

from broker.errors import InvalidRequestError, PermissionDeniedError, Reason
from broker.model import Client, Target, Tenancy, Tenant
from broker.protocol import keys
from broker.tokens.authorize import check_method, check_request, is_allowed_url
from broker.tokens.routes import Route, build_route

KEY = keys.generate_signing_key("ES256")


def route(*prefixes: str) -> Route:
    target = Target("sfm", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api", allowed_urls=prefixes)
    client = Client("c", "client-1", "https://sts.example.test", Tenancy.SINGLE, KEY, KEY)
    return build_route(Tenant("oslo", "c", ("sfm",)), target, client)


@pytest.mark.parametrize(
    ("prefix", "url", "allowed"),
    [
        ("https://h.example/api", "https://h.example/api", True),
        ("https://h.example/api", "https://h.example/api/x", True),
        ("https://h.example/api", "https://h.example/apix", False),
        ("https://h.example/api/", "https://h.example/api", True),
        ("https://h.example/api/", "https://h.example/api/", True),
        ("https://h.example/api/", "https://h.example/api/x/y", True),
        ("https://h.example/api/", "https://h.example/apix/", False),
        ("https://h.example/api/", "https://h.example/", False),
        ("https://h.example/", "https://h.example/anything", True),
        ("https://h.example/", "https://h.example.evil.test/", False),
        ("https://h.example/", "https://h.example:8443/", False),
        ("https://h.example:8443/", "https://h.example/", False),
        ("https://h.example:8443/", "https://h.example:8443/x", True),
        ("https://h.example/api/", "https://h.example/api/../admin", False),
        ("https://h.example/api/", "https://h.example/api/%2e%2e/admin", False),
        ("https://h.example/api/", "https://h.example/x/../api/y", True),
        ("https://h.example/api/", "not a URL", False),
    ],
)
def test_prefix_is_matched_at_segment_boundaries_when_urls_are_normalised(
    prefix: str, url: str, allowed: bool
) -> None:
    assert is_allowed_url(url, (prefix,)) is allowed


def test_check_request_gives_the_normalised_htu_when_the_url_is_allowed() -> None:
    sfm = route("https://sfm.example.test/api/")
    url = "HTTPS://SFM.example.test:443/api/./Patient/%7e42/../43?_format=json#x"
    assert check_request(sfm, "get", url) == "https://sfm.example.test/api/Patient/43"


@pytest.mark.parametrize(
    "url",
    ["https://sfm.example.test/api/../admin/users", "https://sfm.example.test/api/%2e%2e/admin/users"],
)
def test_check_request_refuses_without_echoing_the_url_when_it_walks_out_of_the_prefix(url: str) -> None:
    # Issue 7 point 2's two forms, which were accepted with their dot segments in the proof.
    with pytest.raises(PermissionDeniedError) as caught:
        check_request(route("https://sfm.example.test/api/"), "GET", url)
    assert caught.value.reason is Reason.URL_NOT_ALLOWED
    assert "admin" not in caught.value.message
    assert dict(caught.value.metadata) == {"target": "sfm"}


@pytest.mark.parametrize(("method", "expected"), [("get", "GET"), ("Post", "POST"), ("PATCH", "PATCH")])
def test_method_is_upper_cased_when_it_is_letters(method: str, expected: str) -> None:
    assert check_method(method) == expected


@pytest.mark.parametrize(
    "method", ["CONNECT", "connect", "TRACE", "Trace", "", "GET\n", "G-T", "GET /", "A" * 17, "GËT"]
)
def test_method_is_refused_naming_http_method_when_not_a_letter_token_or_connect_or_trace(
    method: str,
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        check_request(route("https://sfm.example.test/api/"), method, "https://sfm.example.test/api/")
    assert caught.value.field == "http_method"
    assert caught.value.reason is Reason.INVALID_ARGUMENT
