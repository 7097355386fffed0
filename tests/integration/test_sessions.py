"""User sessions end to end, against both STS processes: a full login over plain HTTP, single-audience tokens
for two targets, a token exchange, the session's end, and the errors a front end can cause."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet

from broker.config import BrokerConfig, StoreSettings
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import broker_stub, running_broker
from tests.fixtures.login import log_in
from tests.fixtures.redis_server import RunningRedis, start_redis
from tests.fixtures.sessions import DEFAULT_PID, REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import STS_KINDS, RunningSts

ORG = "helseid://claims/client/claims/orgnr_"
STS = tuple[RunningSts, WebClient]


@pytest.fixture(scope="module", params=STS_KINDS)
def sts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[STS]:
    client = WebClient()
    with sts_for_logins(str(request.param), tmp_path_factory.mktemp("login-sts"), client) as running:
        yield running, client


def claims(issuer: str, token: str) -> dict[str, Any]:
    discovery = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()
    key_set = KeySet.import_key_set(httpx.get(discovery["jwks_uri"], timeout=5).json())
    return dict(jwt.decode(token, key_set, algorithms=["RS256", "PS256", "ES256"]).claims)


def audiences(token_claims: dict[str, Any]) -> list[str]:
    aud = token_claims["aud"]
    return aud if isinstance(aud, list) else [aud]


async def login(
    stub: pb_grpc.TokenBrokerServiceStub, tenant: str = "oslo", targets: tuple[str, ...] = ("sfm", "pps")
) -> pb.UserSession:
    started = await stub.StartLogin(pb.StartLoginRequest(tenant=tenant, targets=list(targets)), timeout=30)
    callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
    assert callback.state == started.state
    assert callback.iss is not None
    response = await stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss), timeout=30
    )
    return response.session


async def session_token(stub: pb_grpc.TokenBrokerServiceStub, session_id: str, target: str) -> pb.AccessToken:
    response = await stub.GetSessionToken(
        pb.GetSessionTokenRequest(session_id=session_id, target=target), timeout=30
    )
    return response.access_token


def reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Unpack(info):
            return str(info.reason)
    return ""


async def test_login_gives_single_audience_tokens_for_two_targets_and_an_exchange(sts: STS) -> None:
    running, client = sts
    async with running_broker(login_config(running.issuer, client)) as address, broker_stub(address) as stub:
        session = await login(stub)
        sfm = await session_token(stub, session.session_id, "sfm")
        pps = await session_token(stub, session.session_id, "pps")
        headers = await stub.AuthorizeSessionRequest(
            pb.AuthorizeSessionRequestRequest(
                session_id=session.session_id,
                target="pps",
                http_method="GET",
                url="https://pps.test.nhn.no/v2/results",
            ),
            timeout=30,
        )
        exchanged = (
            await stub.ExchangeToken(
                pb.ExchangeTokenRequest(tenant="oslo", target="sfm", subject_token=pps.token), timeout=30
            )
        ).access_token
        ended = await stub.EndSession(pb.EndSessionRequest(session_id=session.session_id), timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as after_end:
            await session_token(stub, session.session_id, "pps")
    assert session.user.pid == DEFAULT_PID[running.kind]
    assert session.user.security_level == "4"
    assert session.user.hpr_number
    assert list(session.targets) == ["sfm", "pps"]
    sfm_claims, pps_claims = claims(running.issuer, sfm.token), claims(running.issuer, pps.token)
    assert audiences(sfm_claims) == ["e-helse:sfm.api"]
    assert audiences(pps_claims) == ["nhn:pps"]
    for token_claims in (sfm_claims, pps_claims):
        assert token_claims["helseid://claims/identity/pid"] == session.user.pid
        assert token_claims[ORG + "parent"] == "912345678"
        assert token_claims["cnf"]["jkt"] == client.signing_key.thumbprint
    assert headers.authorization == f"DPoP {pps.token}"
    proof_header = jws.extract_compact(headers.dpop.encode()).protected
    proof = jwt.decode(headers.dpop, ECKey.import_key(proof_header["jwk"]), algorithms=["ES256"]).claims
    assert proof["htu"] == "https://pps.test.nhn.no/v2/results"
    assert (
        proof["ath"]
        == base64.urlsafe_b64encode(hashlib.sha256(pps.token.encode()).digest()).rstrip(b"=").decode()
    )
    exchanged_claims = claims(running.issuer, exchanged.token)
    assert audiences(exchanged_claims) == ["e-helse:sfm.api"]
    assert exchanged_claims["act"]["client_id"] == client.client_id
    assert exchanged_claims["helseid://claims/identity/pid"] == session.user.pid
    assert ended.revoked
    assert after_end.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(after_end.value) == "SESSION_NOT_FOUND"
    print(
        f"\n{running.kind}: login -> session; sfm and pps tokens with one audience each; exchange pps -> sfm"
    )


async def test_bad_state_replayed_callback_and_unknown_session_leave_other_sessions_untouched(
    sts: STS,
) -> None:
    running, client = sts
    async with running_broker(login_config(running.issuer, client)) as address, broker_stub(address) as stub:
        survivor = await login(stub)
        started = await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm"]), timeout=30)
        callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
        assert callback.iss is not None
        with pytest.raises(grpc.aio.AioRpcError) as bad_state:
            await stub.CompleteLogin(
                pb.CompleteLoginRequest(state="forged", code=callback.code, issuer=callback.iss), timeout=30
            )
        with pytest.raises(grpc.aio.AioRpcError) as wrong_issuer:
            await stub.CompleteLogin(
                pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer="https://evil.test"),
                timeout=30,
            )
        good = pb.CompleteLoginRequest(state=started.state, code=callback.code, issuer=callback.iss)
        with pytest.raises(grpc.aio.AioRpcError) as replayed:  # the wrong issuer used up the state
            await stub.CompleteLogin(good, timeout=30)
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await session_token(stub, "no-such-session", "sfm")
        with pytest.raises(grpc.aio.AioRpcError) as not_in_session:
            await stub.GetSessionToken(
                pb.GetSessionTokenRequest(session_id=survivor.session_id, target="nothing")
            )
        token = await session_token(stub, survivor.session_id, "pps")
    assert (bad_state.value.code(), reason(bad_state.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "LOGIN_STATE_UNKNOWN",
    )
    assert (wrong_issuer.value.code(), reason(wrong_issuer.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "ISSUER_MISMATCH",
    )
    assert reason(replayed.value) == "LOGIN_STATE_UNKNOWN"
    assert (unknown.value.code(), reason(unknown.value)) == (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    assert not_in_session.value.code() == grpc.StatusCode.NOT_FOUND
    assert audiences(claims(running.issuer, token.token)) == ["nhn:pps"]


@asynccontextmanager
async def cluster(config: BrokerConfig, count: int) -> AsyncIterator[list[pb_grpc.TokenBrokerServiceStub]]:
    async with AsyncExitStack() as stack:
        addresses = [await stack.enter_async_context(running_broker(config)) for _ in range(count)]
        yield [await stack.enter_async_context(broker_stub(address)) for address in addresses]


@pytest.mark.parametrize("kind", STS_KINDS)
async def test_100_callers_on_3_replicas_refresh_an_expired_session_token_once(
    kind: str, redis_server: RunningRedis, tmp_path: Path
) -> None:
    client = WebClient()
    with sts_for_logins(kind, tmp_path, client, token_lifetime=4) as running:
        store = StoreSettings(kind="redis", url=redis_server.url, encryption_key=os.urandom(32))
        async with cluster(login_config(running.issuer, client, store), 3) as stubs:
            session = await login(stubs[0])
            first = await session_token(stubs[1], session.session_id, "sfm")
            await asyncio.sleep(4.2)  # the login's sfm token has expired
            before = running.stats()["token_requests"]
            calls = [session_token(stubs[n % 3], session.session_id, "sfm") for n in range(100)]
            tokens = await asyncio.gather(*calls)
            requests = running.stats()["token_requests"] - before
            again = await session_token(stubs[2], session.session_id, "pps")  # the session lives on
        again_audiences = audiences(claims(running.issuer, again.token))
    print(
        f"\n{kind}: 100 callers on 3 replicas, expired session token -> {requests} token request(s), "
        f"{len({t.token for t in tokens})} distinct token"
    )
    assert len({token.token for token in tokens}) == 1
    assert tokens[0].token != first.token
    assert requests == 1
    assert again_audiences == ["nhn:pps"]


@pytest.mark.parametrize("kind", STS_KINDS)
async def test_expired_session_gives_a_clear_error(kind: str, tmp_path: Path) -> None:
    client = WebClient()
    with sts_for_logins(kind, tmp_path, client, token_lifetime=2, refresh_token_lifetime=3) as running:
        async with (
            running_broker(login_config(running.issuer, client)) as address,
            broker_stub(address) as stub,
        ):
            session = await login(stub)
            await asyncio.sleep(3.5)
            with pytest.raises(grpc.aio.AioRpcError) as expired:
                await session_token(stub, session.session_id, "pps")
    assert expired.value.code() == grpc.StatusCode.NOT_FOUND
    assert reason(expired.value) in {"SESSION_NOT_FOUND", "SESSION_EXPIRED"}


async def test_session_survives_a_broker_restart_and_a_redis_restart_when_redis_persists(
    tmp_path: Path,
) -> None:
    client = WebClient()
    redis = start_redis(tmp_path / "redis", persist=True)
    try:
        with sts_for_logins("devauthority", tmp_path / "sts", client, token_lifetime=2) as running:
            store = StoreSettings(kind="redis", url=redis.url, encryption_key=os.urandom(32))
            config = login_config(running.issuer, client, store)
            async with running_broker(config) as address, broker_stub(address) as stub:
                session = await login(stub)
                await session_token(stub, session.session_id, "pps")
            redis.stop()
            redis = start_redis(tmp_path / "redis", redis.port, persist=True)
            await asyncio.sleep(
                2.1
            )  # every access token of the session has expired: the next needs a refresh
            async with running_broker(config) as address, broker_stub(address) as stub:
                token = await session_token(stub, session.session_id, "pps")
                again = await session_token(stub, session.session_id, "sfm")
            refreshes = running.stats()["refreshes"]
            token_audiences = audiences(claims(running.issuer, token.token))
            sfm_audiences = audiences(claims(running.issuer, again.token))
    finally:
        redis.stop()
    print(
        f"\nsession after broker and Redis restarts: {refreshes} refreshes at the STS, tokens for pps and sfm"
    )
    assert token_audiences == ["nhn:pps"]
    assert sfm_audiences == ["e-helse:sfm.api"]
    assert refreshes == 3  # pps before the restarts, pps and sfm after: the rotated refresh token was kept
