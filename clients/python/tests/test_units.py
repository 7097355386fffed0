"""Pieces that need no broker: challenges, origins, the plaintext rule, error details, the cache's skew."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import helseid_broker_client
from helseid_broker_client import (
    INSUFFICIENT_AUTHORIZATION_DETAILS,
    Broker,
    BrokerError,
    NonceMemory,
    Token,
    TokenSource,
    is_nonce_challenge,
    origin_of,
)
from helseid_broker_client._authorize import Authorization, insufficient_authorization_details


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (401, 'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"', True),
        (400, 'DPoP error="use_dpop_nonce"', True),
        (401, 'dpop algs="ES256 PS256", error=use_dpop_nonce', True),
        (401, 'Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce"', True),
        (401, 'Bearer error="use_dpop_nonce", DPoP algs="ES256"', False),
        (401, 'DPoP error="invalid_token"', False),
        (401, 'DPoP error="invalid_dpop_proof", error_description="use_dpop_nonce, please"', False),
        (403, 'DPoP error="use_dpop_nonce"', False),
        (401, "", False),
    ],
)
def test_nonce_challenge(status: int, header: str, expected: bool) -> None:
    assert is_nonce_challenge(status, [header]) is expected


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (403, 'DPoP error="insufficient_authorization_details", error_description="attest needed", algs="ES256"',
         ("DPoP", "attest needed")),
        (403, 'Bearer error="insufficient_authorization_details"', ("Bearer", "")),
        (403, 'dpop algs="ES256", error=insufficient_authorization_details', ("DPoP", "")),
        (403, 'Basic realm="x", Bearer error="insufficient_authorization_details", error_description="d"',
         ("Bearer", "d")),
        (403, 'Basic error="insufficient_authorization_details"', None),
        (403, 'DPoP error="insufficient_scope", error_description="insufficient_authorization_details"', None),
        (401, 'DPoP error="insufficient_authorization_details"', None),
        (403, "", None),
    ],
)  # fmt: skip
def test_insufficient_authorization_details_challenge(
    status: int, header: str, expected: tuple[str, str] | None
) -> None:
    assert insufficient_authorization_details(status, [header]) == expected


_ATTEST_CHALLENGE = 'DPoP error="insufficient_authorization_details", error_description="attest required"'


def _fixed_auth(auth: object) -> object:
    """An auth class with a fixed answer in place of AuthorizeRequest (no broker needed)."""
    fixed = Authorization("DPoP token", "proof", ())

    async def aauthorize(*_: object) -> Authorization:
        return fixed

    authorizer = auth.authorizer  # type: ignore[attr-defined]
    authorizer.authorize = lambda *_: fixed
    authorizer.aauthorize = aauthorize
    return auth


def _answer_for(path: str) -> tuple[int, dict[str, str]]:
    if path.startswith("/attest/"):
        return 403, {"WWW-Authenticate": _ATTEST_CHALLENGE}
    if path.startswith("/bearer-attest/"):
        return 403, {"WWW-Authenticate": 'Bearer error="insufficient_authorization_details"'}
    if path.startswith("/forbidden/"):
        return 403, {"WWW-Authenticate": 'DPoP error="insufficient_scope"'}
    return 200, {}


def _assert_attest_error(error: BrokerError, url: str) -> None:
    assert (error.reason, error.code) == (INSUFFICIENT_AUTHORIZATION_DETAILS, grpc.StatusCode.PERMISSION_DENIED)
    assert "care context" in error.message and "attest" in error.message and "care_context" in error.message
    assert error.metadata["status"] == "403" and error.metadata["url"] == url
    assert "patient" not in str(error)  # the query is left out


async def test_httpx_auth_raises_the_attest_reason_and_passes_other_403s() -> None:
    import httpx  # noqa: PLC0415

    from helseid_broker_client import BrokerAuth  # noqa: PLC0415

    def handle(request: httpx.Request) -> httpx.Response:
        status, headers = _answer_for(request.url.path)
        return httpx.Response(status, headers=headers)

    auth = _fixed_auth(BrokerAuth("t", "api", broker=Broker("127.0.0.1:1")))
    transport = httpx.MockTransport(handle)
    with httpx.Client(auth=auth, transport=transport) as client:  # type: ignore[arg-type]
        for path in ("attest/x", "bearer-attest/x"):
            with pytest.raises(BrokerError) as failure:
                client.get(f"http://api.test/{path}?patient=1")
            _assert_attest_error(failure.value, f"http://api.test/{path}")
        assert client.get("http://api.test/forbidden/x").status_code == 403
        assert client.get("http://api.test/ok").status_code == 200
    async with httpx.AsyncClient(auth=auth, transport=transport) as aclient:  # type: ignore[arg-type]
        with pytest.raises(BrokerError) as failure:
            await aclient.post("http://api.test/attest/x?patient=1", content=b"body")
        _assert_attest_error(failure.value, "http://api.test/attest/x")
        assert (await aclient.get("http://api.test/forbidden/x")).status_code == 403


def test_requests_auth_raises_the_attest_reason_and_passes_other_403s() -> None:
    import requests  # noqa: PLC0415
    from requests.adapters import BaseAdapter  # noqa: PLC0415

    from helseid_broker_client import BrokerRequestsAuth  # noqa: PLC0415

    class Answers(BaseAdapter):
        def send(self, request: requests.PreparedRequest, **_: object) -> requests.Response:
            status, headers = _answer_for(request.path_url)
            response = requests.Response()
            response.status_code, response.request, response.url = status, request, request.url or ""
            response.headers.update(headers)
            response._content = b""
            response.connection = self
            return response

        def close(self) -> None:
            pass

    auth = _fixed_auth(BrokerRequestsAuth("t", "api", broker=Broker("127.0.0.1:1")))
    with requests.Session() as session:
        session.mount("http://api.test/", Answers())
        session.auth = auth  # type: ignore[assignment]
        for path in ("attest/x", "bearer-attest/x"):
            with pytest.raises(BrokerError) as failure:
                session.get(f"http://api.test/{path}?patient=1")
            _assert_attest_error(failure.value, f"http://api.test/{path}")
        assert session.get("http://api.test/forbidden/x").status_code == 403
        assert session.get("http://api.test/ok").status_code == 200


def test_origin_makes_default_ports_explicit() -> None:
    assert origin_of("HTTPS://Api.Example/x?y=1") == "https://api.example:443"
    assert origin_of("http://127.0.0.1:8080/a") == "http://127.0.0.1:8080"
    assert origin_of("http://[::1]/a") == "http://[::1]:80"


def test_nonce_memory_is_bounded() -> None:
    memory = NonceMemory(limit=2)
    for index in range(3):
        memory.remember(f"https://h{index}:443", f"n{index}")
    assert memory.get("https://h0:443") == ""
    assert memory.get("https://h2:443") == "n2"
    memory.remember("https://h2:443", None)
    assert memory.get("https://h2:443") == "n2"


def test_credential_is_never_sent_in_plaintext_off_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HELSEID_BROKER_CREDENTIAL", raising=False)
    with pytest.raises(ValueError, match="plaintext"):
        Broker("broker.example:50051", credential="secret")
    assert Broker("broker.example:50051", credential="secret", tls=True).metadata == (
        ("authorization", "Bearer secret"),
    )
    assert Broker("localhost:50051", credential="secret").metadata == (("authorization", "Bearer secret"),)
    assert Broker("[::1]:50051", credential="secret").metadata
    assert Broker("broker.example:50051").metadata == ()


def test_address_and_credential_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELSEID_BROKER_ADDR", "127.0.0.2:6000")
    monkeypatch.setenv("HELSEID_BROKER_CREDENTIAL", "from-env")
    broker = Broker()
    assert broker.address == "127.0.0.2:6000"
    assert broker.metadata == (("authorization", "Bearer from-env"),)
    assert "from-env" not in repr(broker)
    monkeypatch.delenv("HELSEID_BROKER_ADDR")
    monkeypatch.delenv("HELSEID_BROKER_CREDENTIAL")
    assert Broker().address == "127.0.0.1:50051"


class _FailedCall(grpc.RpcError):
    def __init__(self, status: status_pb2.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return self._status.message

    def trailing_metadata(self) -> tuple[tuple[str, object], ...]:
        return (("x-other", "1"), ("grpc-status-details-bin", self._status.SerializeToString()))


def test_broker_error_reads_reason_and_retry_delay() -> None:
    info = error_details_pb2.ErrorInfo(reason="STS_UNAVAILABLE", domain="broker.helseid", metadata={"sts": "x"})
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromMilliseconds(1500)
    details = [any_pb2.Any(), any_pb2.Any()]
    details[0].Pack(info)
    details[1].Pack(retry)
    status = status_pb2.Status(code=14, message="HelseID is unreachable", details=details)
    error = BrokerError.from_rpc_error(_FailedCall(status))
    assert (error.code, error.reason, error.retry_delay) == (grpc.StatusCode.UNAVAILABLE, "STS_UNAVAILABLE", 1.5)
    assert error.metadata == {"sts": "x"}
    assert error.domain == helseid_broker_client.ERROR_DOMAIN
    assert "STS_UNAVAILABLE" in str(error)


def test_token_repr_hides_the_token() -> None:
    token = Token("secret-token", "Bearer", time.time() + 60)
    assert "secret-token" not in repr(token)
    assert token.authorization == "Bearer secret-token"


async def test_cached_token_is_not_handed_out_within_the_skew() -> None:
    # A cache holding a token inside the skew goes to the broker (here: nowhere, so the call fails).
    source = TokenSource("demo", "demo-api", broker=Broker("127.0.0.1:1"), skew=5, first_token_timeout=0.2)
    source._offer(Token("old", "Bearer", time.time() + 4))
    with pytest.raises(BrokerError) as failure:
        await source.token()
    assert failure.value.code == grpc.StatusCode.UNAVAILABLE
    assert source.get_token_calls == 1
    source._offer(Token("new", "Bearer", time.time() + 60))
    assert (await source.token()).access_token == "new"
    assert source.get_token_calls == 1
    await source.aclose()


def test_both_auth_classes_load_lazily() -> None:
    assert helseid_broker_client.BrokerAuth.__name__ == "BrokerAuth"
    assert helseid_broker_client.BrokerRequestsAuth.__name__ == "BrokerRequestsAuth"
    assert helseid_broker_client.__version__.startswith("1.")
