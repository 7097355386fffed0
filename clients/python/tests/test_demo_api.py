"""The client against the running broker and the demo API (which demands its own DPoP nonce)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc
import httpx
import pytest
import requests

from helseid_broker_client import (
    INSUFFICIENT_AUTHORIZATION_DETAILS,
    Broker,
    BrokerAuth,
    BrokerError,
    BrokerRequestsAuth,
    SyncTokenSource,
    TokenSource,
)

if TYPE_CHECKING:
    from conftest import Demo


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in ("requests", "nonce_challenges", "accepted", "rejected")}


async def test_get_and_post_take_one_nonce_retry_then_none(demo: Demo) -> None:
    auth = BrokerAuth(demo.tenant, demo.target)
    async with httpx.AsyncClient(auth=auth) as client:
        before = demo.stats()
        response = await client.get(demo.api_url + "records?x=1")
        assert response.status_code == 200, response.text
        assert response.json()["token_type"] == "DPoP"
        assert len(response.history) == 1 and response.history[0].status_code == 401
        assert auth.authorizer.calls == 2
        assert _delta(before, demo.stats()) == {"requests": 2, "nonce_challenges": 1, "accepted": 1, "rejected": 0}

        # The nonce of the last answer is remembered: the next request takes one round trip.
        before = demo.stats()
        response = await client.post(demo.api_url + "records", json={"note": "x" * 100})
        assert response.status_code == 200, response.text
        assert (response.json()["method"], response.json()["body_bytes"]) == ("POST", len(response.request.content))
        assert response.history == []
        assert auth.authorizer.calls == 3
        assert _delta(before, demo.stats()) == {"requests": 1, "nonce_challenges": 0, "accepted": 1, "rejected": 0}

        # A rotated nonce: the POST (its body sent twice) succeeds after exactly one retry with the new one.
        demo.rotate_nonce()
        before = demo.stats()
        response = await client.post(demo.api_url + "records", content=b"payload")
        assert response.status_code == 200, response.text
        assert response.json()["body_bytes"] == len(b"payload")
        assert len(response.history) == 1
        assert _delta(before, demo.stats()) == {"requests": 2, "nonce_challenges": 1, "accepted": 1, "rejected": 0}


def test_sync_httpx_client(demo: Demo) -> None:
    auth = BrokerAuth(demo.tenant, demo.target)
    with httpx.Client(auth=auth) as client:
        first = client.get(demo.api_url + "a")
        second = client.delete(demo.api_url + "b")
    assert (first.status_code, len(first.history)) == (200, 1)
    assert (second.status_code, len(second.history), second.json()["method"]) == (200, 0, "DELETE")
    assert auth.authorizer.calls == 3


def test_requests_auth_retries_once_with_a_streamed_body(demo: Demo) -> None:
    auth = BrokerRequestsAuth(demo.tenant, demo.target)
    with requests.Session() as session:
        session.auth = auth
        before = demo.stats()
        response = session.post(demo.api_url + "upload", data=iter([b"chunk-1", b"chunk-2"]))
        assert response.status_code == 200, response.text
        assert response.json()["body_bytes"] == len(b"chunk-1chunk-2")
        assert len(response.history) == 1
        second = session.get(demo.api_url + "again")
        assert (second.status_code, second.history) == (200, [])
        assert auth.authorizer.calls == 3
        assert _delta(before, demo.stats()) == {"requests": 3, "nonce_challenges": 1, "accepted": 2, "rejected": 0}


async def test_bearer_target(demo: Demo) -> None:
    async with httpx.AsyncClient(auth=BrokerAuth(demo.tenant, demo.bearer_target)) as client:
        response = await client.get(demo.bearer_url + "patients")
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert response.request.headers["Authorization"].startswith("Bearer ")
    assert "DPoP" not in response.request.headers
    assert response.history == []
    requests_response = requests.get(demo.bearer_url + "x", auth=BrokerRequestsAuth(demo.tenant, demo.bearer_target))
    assert requests_response.json()["token_type"] == "Bearer"


async def test_errors_carry_the_broker_reason(demo: Demo) -> None:
    async with httpx.AsyncClient(auth=BrokerAuth("nope", demo.target)) as client:
        with pytest.raises(BrokerError) as failure:
            await client.get(demo.api_url)
    assert (failure.value.reason, failure.value.code) == ("TENANT_NOT_FOUND", grpc.StatusCode.NOT_FOUND)
    with pytest.raises(BrokerError) as failure:
        requests.get("https://elsewhere.example/x", auth=BrokerRequestsAuth(demo.tenant, demo.target))
    assert (failure.value.reason, failure.value.code) == ("URL_NOT_ALLOWED", grpc.StatusCode.PERMISSION_DENIED)
    source = TokenSource("nope", demo.target)
    with pytest.raises(BrokerError) as failure:
        await source.token()
    assert failure.value.reason == "TENANT_NOT_FOUND"
    await source.aclose()


async def test_attest_path_without_attest_raises_insufficient_authorization_details(demo: Demo) -> None:
    # The demo API's attest/ path answers 403 DPoP error="insufficient_authorization_details" to a token
    # without the trust framework's attest; the tenant's client-credentials tokens never have one.
    url = demo.api_url + "attest/records"
    auth = BrokerAuth(demo.tenant, demo.target)
    failures = []
    async with httpx.AsyncClient(auth=auth) as client:
        with pytest.raises(BrokerError) as failure:
            await client.get(url)
        failures.append(failure.value)
        assert (await client.get(demo.api_url + "records")).status_code == 200  # the same auth, another path
    with httpx.Client(auth=auth) as sync_client, pytest.raises(BrokerError) as failure:
        sync_client.post(url, json={"note": "x"})
    failures.append(failure.value)
    with requests.Session() as session:
        session.auth = BrokerRequestsAuth(demo.tenant, demo.target)
        with pytest.raises(BrokerError) as failure:
            session.get(url)
        failures.append(failure.value)
        assert session.get(demo.api_url + "records").status_code == 200
    for error in failures:
        assert (error.reason, error.code) == (INSUFFICIENT_AUTHORIZATION_DETAILS, grpc.StatusCode.PERMISSION_DENIED)
        assert "care context" in error.message and "attest" in error.message
        assert (error.metadata["status"], error.metadata["scheme"], error.metadata["url"]) == ("403", "DPoP", url)


async def test_token_source_sees_the_renewal_without_rpcs_per_read(demo: Demo) -> None:
    async with TokenSource(demo.tenant, demo.bearer_target, skew=2) as source:
        first = await source.token()
        assert first.token_type == "Bearer"
        reads, deadline = 0, time.monotonic() + 25
        token = first
        while token.access_token == first.access_token and time.monotonic() < deadline:
            for _ in range(100):
                token = await source.token()
                reads += 1
            await asyncio.sleep(0.05)
        assert token.access_token != first.access_token, "no renewal reached the cache within 25 s"
        assert token.expires_at > first.expires_at
        # Thousands of reads, one stream, no GetToken: the renewal came through WatchToken.
        assert reads > 1000
        assert (source.watch_calls, source.get_token_calls) == (1, 0)
        assert source.watch_messages >= 2


def test_sync_token_source(demo: Demo) -> None:
    with SyncTokenSource(demo.tenant, demo.target) as source:
        token = source.token()
        assert token.token_type == "DPoP" and token.dpop_jkt
        for _ in range(1000):
            assert source.token() is token or source.token().expires_at >= token.expires_at
        assert source.get_token_calls == 0


def test_broker_address_from_the_environment(demo: Demo) -> None:
    assert Broker().address == demo.address


def test_benchmark_runs(demo: Demo, capsys: pytest.CaptureFixture[str]) -> None:
    from helseid_broker_client.bench import main  # noqa: PLC0415

    assert main(["--token-calls", "1000", "--requests", "20"]) == 0
    output = capsys.readouterr().out
    assert "wrapper overhead" in output and "TokenSource.token()" in output
