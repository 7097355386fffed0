"""Pieces that need no broker: challenges, origins, the plaintext rule, error details, the cache's skew."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import helseid_broker_client
from helseid_broker_client import Broker, BrokerError, NonceMemory, Token, TokenSource, is_nonce_challenge, origin_of


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
