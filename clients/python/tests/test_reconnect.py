"""TokenSource against a fake broker (an in-process gRPC server): reconnect with back-off, GetToken fallback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import pytest

from helseid_broker_client import Broker, TokenSource
from helseid_broker_client._gen.broker.v1 import token_broker_service_pb2 as pb
from helseid_broker_client._gen.broker.v1 import token_broker_service_pb2_grpc as pb_grpc


def _token(value: str, expires_in: float) -> pb.AccessToken:
    token = pb.AccessToken(token=value, token_type=pb.TOKEN_TYPE_BEARER)
    token.expire_time.FromNanoseconds(int((time.time() + expires_in) * 1e9))
    return token


class FakeBroker(pb_grpc.TokenBrokerServiceServicer):
    """The first WatchToken sends one short-lived token and ends; later ones fail (the stream is down)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew
        self.watch_calls = 0
        self.get_token_calls = 0

    async def WatchToken(self, request: pb.WatchTokenRequest, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]  # noqa: N802
        self.watch_calls += 1
        if self.watch_calls > 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the broker is restarting")
        yield pb.WatchTokenResponse(access_token=_token("from-stream", self.skew + 0.5))

    async def GetToken(self, request: pb.GetTokenRequest, context: grpc.aio.ServicerContext) -> pb.GetTokenResponse:  # noqa: N802
        self.get_token_calls += 1
        return pb.GetTokenResponse(access_token=_token("from-get-token", 60))


@pytest.fixture
async def fake_broker() -> AsyncIterator[tuple[FakeBroker, str]]:
    fake = FakeBroker(skew=1.0)
    server = grpc.aio.server()
    pb_grpc.add_TokenBrokerServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield fake, f"127.0.0.1:{port}"
    await server.stop(None)


async def test_reconnects_with_backoff_and_falls_back_to_get_token(fake_broker: tuple[FakeBroker, str]) -> None:
    fake, address = fake_broker
    broker = Broker(address)
    source = TokenSource("t", "x", broker=broker, skew=fake.skew, backoff=(0.05, 0.2))
    assert (await source.token()).access_token == "from-stream"
    assert fake.get_token_calls == 0
    await asyncio.sleep(0.8)  # the stream's token passes its expiry minus the skew; the stream stays down
    assert fake.watch_calls >= 3  # reconnected, backing off
    assert source.last_error is not None and source.last_error.code == grpc.StatusCode.UNAVAILABLE
    assert (await source.token()).access_token == "from-get-token"
    assert (await source.token()).access_token == "from-get-token"
    assert fake.get_token_calls == 1  # the fallback's token is cached too
    await source.aclose()
    await broker.aclose()
