"""Issue 7 point 4: callers cannot make the broker hammer HelseID.

A real broker server in front of the dev authority process, which counts every request it gets. Tokens live
20 s and the broker's expiry skew is 5 s, so a fresh token can give a caller 14 s (20 - 5, minus a margin of a
twentieth for the round trip); 16 s is more than any token of this STS could ever give.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broker.config import CacheSettings, LimitsSettings
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import broker_config, broker_stub, running_broker, sfm_clients
from tests.fixtures.login import log_in
from tests.fixtures.sessions import REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import RunningSts, TestClient, running_sts

LIFETIME_S = 20
CACHE = CacheSettings(expiry_skew=timedelta(seconds=5))
IMPOSSIBLE = duration_pb2.Duration(seconds=16)
CALLS = 100


@pytest.fixture(scope="module")
def client_sts(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningSts, tuple[TestClient, ...]]]:
    clients = sfm_clients()
    with running_sts(
        "devauthority", tmp_path_factory.mktemp("amplification"), clients, token_lifetime=LIFETIME_S
    ) as running:
        yield running, clients


@pytest.fixture(scope="module")
def login_sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSts, WebClient]]:
    client = WebClient()
    workdir = tmp_path_factory.mktemp("amplification-logins")
    with sts_for_logins("devauthority", workdir, client, token_lifetime=LIFETIME_S) as running:
        yield running, client


def details(error: grpc.aio.AioRpcError) -> tuple[str, str, timedelta | None]:
    """The ErrorInfo reason, the BadRequest field (if any) and the RetryInfo delay (if any)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    reason, field, retry = "", "", None
    for detail in status.details:
        info, bad, retry_info = (
            error_details_pb2.ErrorInfo(),
            error_details_pb2.BadRequest(),
            error_details_pb2.RetryInfo(),
        )
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            field = bad.field_violations[0].field
        elif detail.Unpack(retry_info):
            retry = retry_info.retry_delay.ToTimedelta()
    return reason, field, retry


async def failure(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def token_requests(running: RunningSts, grant: str) -> tuple[int, int]:
    """Requests of the grant at the token endpoint, and those of them that were DPoP nonce challenges (each
    first request of a client is answered `use_dpop_nonce` and retried with the nonce: one fetch, two)."""
    stats = running.stats()
    return int(stats["token_requests_by_grant"].get(grant, 0)), int(stats["nonce_challenges"])


async def login(stub: pb_grpc.TokenBrokerServiceStub) -> str:
    started = await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm", "pps"]), timeout=30)
    callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
    assert callback.state is not None
    assert callback.iss is not None
    completed = await stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss), timeout=30
    )
    return str(completed.session.session_id)


async def test_100_get_token_with_an_impossible_lifetime_cost_at_most_one_sts_request(
    client_sts: tuple[RunningSts, tuple[TestClient, ...]],
) -> None:
    running, clients = client_sts
    config = dataclasses.replace(broker_config(running.issuer, clients), cache=CACHE)
    before = token_requests(running, "client_credentials")
    async with running_broker(config) as address, broker_stub(address) as stub:
        errors = []
        for _ in range(CALLS):
            request = pb.GetTokenRequest(tenant="oslo", target="sfm", min_remaining_lifetime=IMPOSSIBLE)
            errors.append(await failure(stub.GetToken(request, timeout=30)))
        served = await stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), timeout=30)
    after = token_requests(running, "client_credentials")
    requests, challenges = after[0] - before[0], after[1] - before[1]
    codes = {error.code().name for error in errors}
    fields = {details(error)[1] for error in errors}
    print(
        f"\n{CALLS} GetToken asking 16 s of 20 s tokens: {requests - challenges} STS token request(s) "
        f"(+{challenges} nonce challenge), answers {codes}"
    )
    assert requests - challenges <= 1
    assert codes == {"INVALID_ARGUMENT"}
    assert fields == {"min_remaining_lifetime"}
    assert {details(error)[0] for error in errors} == {"LIFETIME_UNAVAILABLE"}
    assert served.access_token.token  # the route itself works, and its token was the one request


async def test_100_get_session_token_with_an_impossible_lifetime_refresh_at_most_once(
    login_sts: tuple[RunningSts, WebClient],
) -> None:
    running, client = login_sts
    config = dataclasses.replace(login_config(running.issuer, client), cache=CACHE)
    async with running_broker(config) as address, broker_stub(address) as stub:
        session_id = await login(stub)
        before = running.stats()["refreshes"]
        errors = []
        for _ in range(CALLS):
            request = pb.GetSessionTokenRequest(
                session_id=session_id, target="sfm", min_remaining_lifetime=IMPOSSIBLE
            )
            errors.append(await failure(stub.GetSessionToken(request, timeout=30)))
        refreshes = running.stats()["refreshes"] - before
    print(f"\n{CALLS} GetSessionToken asking 16 s of 20 s tokens: {refreshes} refresh(es)")
    assert refreshes <= 1
    assert {error.code().name for error in errors} == {"INVALID_ARGUMENT"}
    assert {details(error)[1] for error in errors} == {"min_remaining_lifetime"}


async def test_a_session_token_longer_than_the_cached_one_costs_exactly_one_refresh(
    login_sts: tuple[RunningSts, WebClient],
) -> None:
    running, client = login_sts
    config = dataclasses.replace(login_config(running.issuer, client), cache=CACHE)
    asked = duration_pb2.Duration(seconds=13)
    async with running_broker(config) as address, broker_stub(address) as stub:
        session_id = await login(stub)
        plain = pb.GetSessionTokenRequest(session_id=session_id, target="sfm")
        cached = (await stub.GetSessionToken(plain, timeout=30)).access_token
        await asyncio.sleep(2.5)  # the cached token now has less than 13 s of its 15 usable left
        before = running.stats()["refreshes"]
        request = pb.GetSessionTokenRequest(session_id=session_id, target="sfm", min_remaining_lifetime=asked)
        answers = await asyncio.gather(*(stub.GetSessionToken(request, timeout=30) for _ in range(50)))
        answered_at = time.time()
        refreshes = running.stats()["refreshes"] - before
    remaining = min(answer.access_token.expire_time.ToSeconds() for answer in answers) - answered_at
    print(
        f"\n50 concurrent GetSessionToken asking 13 s, cached token 2.5 s old: {refreshes} refresh(es), "
        f"shortest answer {remaining:.1f} s to expiry"
    )
    assert refreshes == 1
    assert {answer.access_token.token for answer in answers} != {cached.token}
    assert len({answer.access_token.token for answer in answers}) == 1
    assert remaining >= asked.seconds


async def test_a_burst_of_start_login_is_limited_with_retry_info_after_the_burst(
    login_sts: tuple[RunningSts, WebClient],
) -> None:
    running, client = login_sts
    burst = 5
    limits = LimitsSettings(sts_requests_per_caller_per_s=0.01, sts_burst=burst)
    config = dataclasses.replace(login_config(running.issuer, client), limits=limits)
    before = running.stats()["par_requests"]
    outcomes: list[str] = []
    retry: set[timedelta | None] = set()
    async with running_broker(config) as address, broker_stub(address) as stub:
        for _ in range(3 * burst):
            try:
                await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm"]), timeout=30)
            except grpc.aio.AioRpcError as error:
                outcomes.append(error.code().name)
                reason, _, delay = details(error)
                assert reason == "RATE_LIMITED"
                retry.add(delay)
            else:
                outcomes.append("OK")
    par = running.stats()["par_requests"] - before
    print(
        f"\n{3 * burst} StartLogin, burst {burst}: {outcomes.count('OK')} OK, "
        f"{outcomes.count('RESOURCE_EXHAUSTED')} RESOURCE_EXHAUSTED, {par} PAR requests at the STS"
    )
    assert outcomes == ["OK"] * burst + ["RESOURCE_EXHAUSTED"] * (2 * burst)
    assert par == burst
    assert None not in retry
    assert all(
        delay is not None and timedelta(seconds=1) < delay <= timedelta(seconds=100) for delay in retry
    )
