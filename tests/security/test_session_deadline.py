"""A caller's deadline never loses a user session.

Every RPC is bounded by the caller's deadline. A session refresh that HelseID has already answered (and so
rotated the refresh token) must still be saved when the caller that asked for it has given up; otherwise the
next refresh presents a burned refresh token and the user is logged out (`LOGIN_REQUIRED`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from broker.v1 import token_broker_service_pb2 as pb
from tests.fixtures.broker_server import broker_stub, running_broker
from tests.fixtures.cluster import set_sts_fault
from tests.fixtures.login import log_in
from tests.fixtures.sessions import REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import RunningSts
from tests.security.test_caller_matrix import reason


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSts, WebClient]]:
    client = WebClient()
    with sts_for_logins("devauthority", tmp_path_factory.mktemp("deadline-sts"), client) as running:
        yield running, client


async def test_a_refresh_the_caller_gave_up_on_is_still_saved_and_the_session_lives_on(
    sts: tuple[RunningSts, WebClient],
) -> None:
    running, client = sts
    async with running_broker(login_config(running.issuer, client)) as address, broker_stub(address) as stub:
        started = await stub.StartLogin(
            pb.StartLoginRequest(tenant="oslo", targets=["sfm", "pps"]), timeout=30
        )
        callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
        assert callback.iss is not None
        done = await stub.CompleteLogin(
            pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss), timeout=30
        )
        session_id = done.session.session_id
        # The login stored an sfm token; pps needs a refresh grant, which HelseID now answers after 1.5 s.
        set_sts_fault(running.issuer, "slow", delay_s=1.5)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as gave_up:
                await stub.GetSessionToken(
                    pb.GetSessionTokenRequest(session_id=session_id, target="pps"), timeout=0.5
                )
            await asyncio.sleep(2.0)  # HelseID answers, and rotates the refresh token, after the caller left
        finally:
            set_sts_fault(running.issuer, "ok")
        pps = await stub.GetSessionToken(
            pb.GetSessionTokenRequest(session_id=session_id, target="pps"), timeout=30
        )
    print(
        f"\ncaller gave up after 0.5 s ({gave_up.value.code().name}, {reason(gave_up.value)}); the refresh "
        "HelseID answered 1.5 s in was saved, and the next call was served from it (no LOGIN_REQUIRED)"
    )
    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert pps.access_token.token
