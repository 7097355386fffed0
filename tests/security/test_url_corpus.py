"""Issue 7 point 2: a corpus of hostile URL forms, each with its one expected outcome, run against
`check_request` and through a real broker (AuthorizeRequest, dev authority over HTTP).

Sources: RFC 3986 (§3.2.1 userinfo, §5.2.4 dot segments, §6.2.2 percent-encoding, §7 security), OWASP's
Server-Side Request Forgery Prevention Cheat Sheet and its URL-parser material (numeric IPv4, userinfo and
fragment tricks, backslashes, double encoding, Tomcat's `..;`, overlong UTF-8, full-width characters).
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broker.api import status
from broker.config import BrokerConfig
from broker.errors import BrokerError, InvalidRequestError, PermissionDeniedError, Reason
from broker.protocol.rfc3986 import MAX_URL_LENGTH
from broker.tokens.authorize import check_request
from broker.tokens.routes import Route, build_route
from broker.v1 import token_broker_service_pb2 as pb
from tests.fixtures.broker_server import SFM, broker_config, broker_stub, running_broker, sfm_clients
from tests.fixtures.sts import RunningSts, TestClient, running_sts

ORIGIN = "https://sfm.example.test"
PREFIXES = (  # in normal form, as the configuration stores them
    f"{ORIGIN}/api/",
    "http://127.0.0.1:8080/local/",
    "https://xn--bcher-kva.example.test/fhir/",  # bücher.example.test, allowed only in this form
)


@dataclass(frozen=True)
class Outcome:
    """Allowed with exactly `htu`, or refused with this gRPC code and ErrorInfo reason."""

    htu: str | None = None
    code: grpc.StatusCode = grpc.StatusCode.OK
    reason: Reason | None = None


def ok(htu: str) -> Outcome:
    return Outcome(htu=htu)


MALFORMED = Outcome(code=grpc.StatusCode.INVALID_ARGUMENT, reason=Reason.INVALID_ARGUMENT)  # not a URI
# A form we refuse: the same answer as a URL under no prefix (one reason, one code), plus a BadRequest.
REFUSED = Outcome(code=grpc.StatusCode.PERMISSION_DENIED, reason=Reason.URL_NOT_ALLOWED)
DENIED = Outcome(code=grpc.StatusCode.PERMISSION_DENIED, reason=Reason.URL_NOT_ALLOWED)  # under no prefix
LONG_PATH = "/api/" + "a" * (MAX_URL_LENGTH - len(ORIGIN) - len("/api/"))

CORPUS: list[tuple[str, str, Outcome]] = [
    # Issue 7's own forms and their relatives: dot segments, plain and encoded (RFC 3986 §5.2.4, §6.2.2.2).
    ("GET", f"{ORIGIN}/api/../admin/users", DENIED),
    ("GET", f"{ORIGIN}/api/%2e%2e/admin/users", DENIED),
    ("GET", f"{ORIGIN}/api/%2E%2E/admin/users", DENIED),
    ("GET", f"{ORIGIN}/api/.%2e/admin", DENIED),
    ("GET", f"{ORIGIN}/api/./../../admin", DENIED),
    ("GET", f"{ORIGIN}/api/x/../y", ok(f"{ORIGIN}/api/y")),
    ("GET", f"{ORIGIN}/x/../api/y", ok(f"{ORIGIN}/api/y")),
    ("GET", f"{ORIGIN}/api/./Patient/%2e/42", ok(f"{ORIGIN}/api/Patient/42")),
    # Dot segments some server sees and RFC 3986 does not: Tomcat's path parameters, double and overlong
    # encoding, full-width characters that NFKC folds, Windows' trailing dots.
    ("GET", f"{ORIGIN}/api/..;/admin", REFUSED),
    ("GET", f"{ORIGIN}/api/..%3b/admin", REFUSED),
    ("GET", f"{ORIGIN}/api/%252e%252e/admin", REFUSED),
    ("GET", f"{ORIGIN}/api/%25%32%65%25%32%65/admin", REFUSED),
    ("GET", f"{ORIGIN}/api/%c0%ae%c0%ae/admin", REFUSED),
    ("GET", f"{ORIGIN}/api/%ef%bc%8e%ef%bc%8e/admin", REFUSED),
    ("GET", f"{ORIGIN}/api/%ef%bc%8fadmin", REFUSED),
    ("GET", f"{ORIGIN}/api/.../admin", REFUSED),
    # Encoded and raw slashes and backslashes.
    ("GET", f"{ORIGIN}/api/%2e%2e%2fadmin", REFUSED),
    ("GET", f"{ORIGIN}/api/..%2Fadmin", REFUSED),
    ("GET", f"{ORIGIN}/api/x/..%2f..%2f..%2fadmin", REFUSED),
    ("GET", f"{ORIGIN}/api/..%5cadmin", REFUSED),
    ("GET", f"{ORIGIN}/api/..\\admin", MALFORMED),
    ("GET", "https://sfm.example.test\\@evil.test/api/", MALFORMED),
    ("GET", f"{ORIGIN}/api//x", ok(f"{ORIGIN}/api//x")),
    # User information and the fragment and query tricks around it (RFC 3986 §7.6, OWASP).
    ("GET", "https://sfm.example.test@evil.test/api/", REFUSED),
    ("GET", "https://user:secret@sfm.example.test/api/", REFUSED),
    ("GET", "https://evil.test#@sfm.example.test/api/", DENIED),
    ("GET", "https://evil.test?@sfm.example.test/api/", DENIED),
    ("GET", f"{ORIGIN}/api/#@evil.test", ok(f"{ORIGIN}/api/")),
    ("GET", f"{ORIGIN}/api/x?@evil.test", ok(f"{ORIGIN}/api/x")),
    ("GET", f"{ORIGIN}/api/x?next=https://evil.test/#frag", ok(f"{ORIGIN}/api/x")),
    ("GET", "https://evil.test/https://sfm.example.test/api/", DENIED),
    ("GET", "https://sfm.example.test.evil.test/api/", DENIED),
    # Whitespace and control characters, raw and encoded.
    ("GET", f"{ORIGIN}/api/x\t", MALFORMED),
    ("GET", "https://sfm.exam\tple.test/api/", MALFORMED),
    ("GET", f"{ORIGIN}/api/x\r\nHost: evil.test", MALFORMED),
    ("GET", f" {ORIGIN}/api/x", MALFORMED),
    ("GET", f"{ORIGIN}/api/x\x00", MALFORMED),
    ("GET", f"{ORIGIN}/api/x%00", REFUSED),
    ("GET", f"{ORIGIN}/api/x%0d%0aHost:%20evil.test", REFUSED),
    ("GET", f"{ORIGIN}/api/x?q=%0a", REFUSED),
    ("GET", f"{ORIGIN}/api/%zz", MALFORMED),
    ("GET", f"{ORIGIN}/api/%", MALFORMED),
    # Ports: default dropped, others must be the prefix's.
    ("GET", f"{ORIGIN}:443/api/x", ok(f"{ORIGIN}/api/x")),
    ("GET", f"{ORIGIN}:/api/x", ok(f"{ORIGIN}/api/x")),
    ("GET", f"{ORIGIN}:8443/api/x", DENIED),
    ("GET", f"{ORIGIN}:0443/api/x", MALFORMED),
    ("GET", f"{ORIGIN}:99999/api/x", MALFORMED),
    ("GET", "http://127.0.0.1:8080/local/x", ok("http://127.0.0.1:8080/local/x")),
    ("GET", "http://127.0.0.1/local/x", DENIED),
    ("GET", "http://127.0.0.1:8080/local/../x", DENIED),
    # Scheme and host case, schemes, missing parts.
    ("GET", "HTTPS://SFM.EXAMPLE.TEST/api/x", ok(f"{ORIGIN}/api/x")),
    ("GET", "http://sfm.example.test/api/x", REFUSED),
    ("GET", "ftp://sfm.example.test/api/x", MALFORMED),
    ("GET", "https:/sfm.example.test/api/", MALFORMED),
    ("GET", "//sfm.example.test/api/", MALFORMED),
    ("GET", "https:///api/", MALFORMED),
    ("GET", "https://sfm.example.test./api/", REFUSED),
    ("GET", "https://sfm%2eexample.test/api/", REFUSED),
    # IDN: non-ASCII refused; punycode only as the prefix writes it (a homograph has another form).
    ("GET", "https://sfm.ex\u0430mple.test/api/", MALFORMED),
    ("GET", "https://sfm.xn--exmple-4nf.test/api/", DENIED),
    ("GET", "https://b\u00fccher.example.test/fhir/1", MALFORMED),
    ("GET", "https://xn--bcher-kva.example.test/fhir/1", ok("https://xn--bcher-kva.example.test/fhir/1")),
    ("GET", "https://XN--BCHER-KVA.example.test/fhir/1", ok("https://xn--bcher-kva.example.test/fhir/1")),
    # IPv4 written as one number, in octal or hex, or shortened (OWASP SSRF); IPv6 literals.
    ("GET", "http://2130706433/local/", REFUSED),
    ("GET", "http://0x7f000001/local/", REFUSED),
    ("GET", "http://0177.0.0.1/local/", REFUSED),
    ("GET", "http://0x7f.1/local/", REFUSED),
    ("GET", "http://127.1/local/", REFUSED),
    ("GET", "https://[::1]/api/", DENIED),
    ("GET", "https://[0:0:0:0:0:0:0:1]/api/", REFUSED),
    ("GET", "https://[fe80::1%25eth0]/api/", REFUSED),
    ("GET", "https://[v1.fe]/api/", REFUSED),
    ("GET", "https://[::1/api/", MALFORMED),
    ("GET", "https://[::g]/api/", MALFORMED),
    # Prefix boundaries and normal forms of the path.
    ("GET", f"{ORIGIN}/apix", DENIED),
    ("GET", f"{ORIGIN}/api", ok(f"{ORIGIN}/api")),
    ("GET", ORIGIN, DENIED),
    ("GET", f"{ORIGIN}/api/%7euser/%41", ok(f"{ORIGIN}/api/~user/A")),
    ("GET", f"{ORIGIN}/api/Patient/%c3%a6", ok(f"{ORIGIN}/api/Patient/%C3%A6")),
    ("GET", f"{ORIGIN}/api/x;v=1", ok(f"{ORIGIN}/api/x;v=1")),
    # Size: the limit holds exactly, and one more character is refused before any parsing.
    ("GET", ORIGIN + LONG_PATH, ok(ORIGIN + LONG_PATH)),
    ("GET", ORIGIN + LONG_PATH + "a", MALFORMED),
    ("GET", f"{ORIGIN}/api/" + "%2e%2e/" * 400, MALFORMED),
    # Methods: CONNECT and TRACE get no proof (the error names http_method).
    ("CONNECT", f"{ORIGIN}/api/x", MALFORMED),
    ("trace", f"{ORIGIN}/api/x", MALFORMED),
    ("post", f"{ORIGIN}/api/x", ok(f"{ORIGIN}/api/x")),
]


def corpus_id(entry: tuple[str, str, Outcome]) -> str:
    method, url, _ = entry
    return f"{method} {url[:60]!r}"


def sfm_route() -> Route:
    config = corpus_config("https://sts.example.test", sfm_clients())
    return build_route(config.tenants["oslo"], config.targets["sfm"], config.clients["multi"])


def corpus_config(issuer: str, clients: tuple[TestClient, TestClient]) -> BrokerConfig:
    config = broker_config(issuer, clients)
    return dataclasses.replace(config, targets={"sfm": dataclasses.replace(SFM, allowed_urls=PREFIXES)})


def outcome_of_call(route: Route, method: str, url: str) -> Outcome:
    try:
        return ok(check_request(route, method, url))
    except (InvalidRequestError, PermissionDeniedError) as error:
        return Outcome(code=status.status_code(error), reason=error.reason)


def test_corpus_outcomes_hold_when_check_request_is_called() -> None:
    route = sfm_route()
    results = [(entry, outcome_of_call(route, entry[0], entry[1])) for entry in CORPUS]
    wrong = [(corpus_id(entry), got) for entry, got in results if got != entry[2]]
    allowed = sum(1 for _, got in results if got.htu is not None)
    print(f"\nURL corpus (function): {len(CORPUS)} forms, {len(CORPUS) - allowed} refused, {allowed} allowed")
    assert not wrong


def test_refusals_name_the_field_and_never_echo_the_url() -> None:
    route = sfm_route()
    for method, url, expected in CORPUS:
        if expected.htu is not None:
            continue
        with pytest.raises(BrokerError) as caught:
            check_request(route, method, url)
        text = caught.value.message + json.dumps(dict(caught.value.metadata))
        assert "admin" not in text, corpus_id((method, url, expected))
        assert "evil" not in text, corpus_id((method, url, expected))
        assert len(text) < 200, corpus_id((method, url, expected))
        if isinstance(caught.value, InvalidRequestError):
            assert caught.value.field == (
                "url" if method.upper() not in {"CONNECT", "TRACE"} else "http_method"
            )


@pytest.fixture(scope="module")
def sts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningSts, tuple[TestClient, TestClient]]]:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path_factory.mktemp("sts"), clients) as running:
        yield running, clients


def proof_claims(proof: str) -> dict[str, object]:
    payload = proof.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
    return str(info.reason)


async def test_corpus_outcomes_hold_through_a_broker_when_sent_as_authorize_requests(
    sts: tuple[RunningSts, tuple[TestClient, TestClient]],
) -> None:
    running, clients = sts
    wrong: list[str] = []
    allowed = exact = 0
    async with (
        running_broker(corpus_config(running.issuer, clients)) as address,
        broker_stub(address) as stub,
    ):
        for method, url, expected in CORPUS:
            request = pb.AuthorizeRequestRequest(tenant="oslo", target="sfm", http_method=method, url=url)
            try:
                response = await stub.AuthorizeRequest(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                got = (error.code(), reason_of(error), len(error.details() or ""))
                if expected.htu is not None or got[:2] != (expected.code, expected.reason) or got[2] > 300:
                    wrong.append(f"{corpus_id((method, url, expected))}: {got}")
                continue
            allowed += 1
            claims = proof_claims(response.dpop)
            exact += claims["htu"] == expected.htu and claims["htm"] == method.upper()
            if expected.htu is None or claims["htu"] != expected.htu:
                wrong.append(f"{corpus_id((method, url, expected))}: allowed with {claims['htu']!r}")
    refused = len(CORPUS) - allowed
    print(
        f"\nURL corpus (gRPC): {len(CORPUS)} forms, {refused} refused, {allowed} allowed, "
        f"htu exact for {exact}"
    )
    assert not wrong
    assert exact == allowed == sum(1 for *_, expected in CORPUS if expected.htu is not None)
