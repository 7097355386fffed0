"""WatchToken fan-out: one message per token for all streams of a key, the key kept once by the refresh
scheduler, nothing left per key once its streams close, and a burst of streams either all open or refused
with a clear status and a log line.

The hub is driven directly for what only it can tell (messages built, its per-key state); the rest goes
over real gRPC to a server built by `create_server`, as the broker builds it. Tokens come from a hand-written
source that issues a new one per fetch, with a real clock: a short lifetime makes the scheduler renew them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broker.api.fanout import WatchHub
from broker.api.server import create_server
from broker.errors import IdpUnavailableError, TooManyStreamsError
from broker.model import AccessToken, Client, Target, Tenancy, Tenant, TokenType
from broker.protocol import keys
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import Backoff, FreshnessPolicy
from broker.tokens.routes import Route, RouteTable
from broker.tokens.scheduler import RefreshScheduler
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

LIFETIME = timedelta(seconds=2)  # renewed at half of it by the scheduler


class Source:
    """Issues a new token per fetch; can be told to fail."""

    def __init__(self, lifetime: timedelta = LIFETIME) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.fail: Exception | None = None

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        now = datetime.now(UTC)
        return AccessToken(f"token-{self.calls}", TokenType.DPOP, now, now + self.lifetime, target.scopes)


def route_table(tenants: int) -> RouteTable:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", "https://sts.test", Tenancy.MULTI, key, key)
    target = Target("sfm", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api")
    named = {f"t{n}": Tenant(f"t{n}", "c", ("sfm",), orgnr_parent=f"{100000000 + n}") for n in range(tenants)}
    return RouteTable({"c": client}, {"sfm": target}, named)


def engine_for(routes: RouteTable, source: Source) -> TokenEngine:
    policy = FreshnessPolicy(refresh_fraction=0.5, jitter_fraction=0, expiry_skew=timedelta(milliseconds=200))
    backoff = Backoff(initial=timedelta(milliseconds=20), maximum=timedelta(milliseconds=100))
    return TokenEngine(routes, source, policy=policy, backoff=backoff)


@contextlib.asynccontextmanager
async def scheduled(engine: TokenEngine) -> AsyncIterator[RefreshScheduler]:
    scheduler = RefreshScheduler(engine, retry_after=timedelta(milliseconds=200))
    running = asyncio.create_task(scheduler.run())
    try:
        yield scheduler
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await engine.close()


async def consume(hub: WatchHub[Any], route: Route, seen: list[str], wanted: int | None = None) -> None:
    async for token, _ in hub.watch(route):
        seen.append(token.value)
        if wanted is not None and len(seen) >= wanted:
            return


async def until(condition: Any, seconds: float = 10.0) -> None:
    """Waits until `condition()` holds, at most `seconds` (a count or a state is asserted, not a duration)."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


async def test_every_stream_of_a_key_gets_each_token_in_the_one_message_built_for_it() -> None:
    routes = route_table(1)
    source = Source()
    engine = engine_for(routes, source)
    built: list[AccessToken] = []

    def build(token: AccessToken) -> object:
        built.append(token)
        return object()

    async with scheduled(engine) as scheduler:
        hub: WatchHub[object] = WatchHub(engine, build, scheduler=scheduler)
        route = routes.resolve("t0", "sfm")
        await engine.token_for(route)
        messages: list[list[tuple[str, object]]] = [[] for _ in range(500)]

        async def stream(into: list[tuple[str, object]]) -> None:
            async for token, message in hub.watch(route):
                into.append((token.value, message))
                if len(into) == 3:  # the current token and two renewals
                    return

        await asyncio.wait_for(asyncio.gather(*(stream(into) for into in messages)), 20)
    tokens = {value for received in messages for value, _ in received}
    by_token = {
        value: {id(message) for received in messages for v, message in received if v == value}
        for value in tokens
    }
    print(f"\n500 streams, {len(tokens)} tokens, {len(built)} messages built, STS fetches {source.calls}")
    assert all(len(received) == 3 for received in messages)
    assert all([value for value, _ in received] == sorted(tokens) for received in messages)
    assert len(tokens) == 3
    # One message per token, the same object in every stream (the first token's may be the follower's or,
    # when the first stream came before it, that stream's own: one more at most).
    assert all(len(ids) == 1 for ids in by_token.values())
    assert len(built) <= 4


async def test_a_keys_streams_are_kept_once_by_the_scheduler_and_leave_nothing_of_the_key_behind() -> None:
    routes = route_table(20)
    source = Source(timedelta(seconds=600))
    engine = engine_for(routes, source)
    async with scheduled(engine) as scheduler:
        hub: WatchHub[str] = WatchHub(engine, lambda token: token.value, scheduler=scheduler)
        streams = [
            asyncio.create_task(consume(hub, routes.resolve(f"t{n % 20}", "sfm"), [])) for n in range(20 * 50)
        ]
        await until(lambda: hub.waiting() == 1000)
        assert (hub.open, hub.keys, hub.waiting()) == (1000, 20, 1000)
        # Each key once in the scheduler's queue (its token's refresh instant), not once per stream.
        assert len(scheduler._due) == 20
        assert sorted(scheduler._kept.values()) == [1] * 20
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)
        await asyncio.sleep(0)  # the followers' cancellation
        # What the closed streams freed is handed back to the system (glibc), once for the 1,000 of them.
        await until(lambda: hub.heap.trims > 0 or not hub.heap.available)
        print(f"\n1,000 streams of 20 keys closed: open {hub.open}, keys {hub.keys}, trims {hub.heap.trims}")
        assert (hub.open, hub.keys, hub.waiting()) == (0, 0, 0)
        assert scheduler._kept == {}
        assert hub.heap.trims == (1 if hub.heap.available else 0)
    assert source.calls == 20  # one fetch per key, shared by its 50 streams


@pytest.mark.parametrize("stalled_s", [60.0, 0.2])
async def test_a_push_wakes_no_more_streams_than_its_window_until_their_messages_are_written(
    stalled_s: float,
) -> None:
    """With 20 streams and a window of 4, a renewal reaches 4 streams until their writes are done; a write
    that waits longer than `stalled_s` (a reader that stopped reading) stops holding up the others."""
    routes = route_table(1)
    engine = engine_for(routes, Source())
    written = asyncio.Event()
    renewed: list[int] = []

    async def slow_writer(number: int) -> None:
        # Asks for its next message only once `written` is set: as gRPC does once a write is done.
        first = True
        async for _ in hub.watch(route):
            if not first:
                renewed.append(number)
                await written.wait()
                return
            first = False

    async with scheduled(engine) as scheduler:
        hub: WatchHub[str] = WatchHub(
            engine, lambda token: token.value, scheduler=scheduler, batch=2, window=4, stalled_s=stalled_s
        )
        route = routes.resolve("t0", "sfm")
        streams = [asyncio.create_task(slow_writer(number)) for number in range(20)]
        if stalled_s > 10:
            await until(lambda: len(renewed) == 4)  # the renewal comes within about 1 s
            await asyncio.sleep(0.3)
            assert len(renewed) == 4  # the other 16 wait for room
        else:
            await until(lambda: len(renewed) == 20)  # none written, yet every stream got it
            assert len(renewed) == 20
        written.set()
        await until(lambda: len(renewed) == 20)
        assert sorted(renewed) == list(range(20))
        await asyncio.gather(*streams)
        assert (hub.open, hub.keys) == (0, 0)


async def test_many_keeps_of_one_key_queue_it_once_and_a_release_to_none_stops_its_renewals() -> None:
    routes = route_table(1)
    source = Source(timedelta(seconds=600))
    engine = engine_for(routes, source)
    route = routes.resolve("t0", "sfm")
    await engine.token_for(route)
    scheduler = RefreshScheduler(engine)
    for _ in range(1000):
        scheduler.keep(route)
    assert len(scheduler._due) == 1
    for _ in range(1000):
        scheduler.release(route)
    for _ in range(1000):  # a watcher that comes and goes: the same instant is queued once
        scheduler.keep(route)
        scheduler.release(route)
    assert len(scheduler._due) == 1
    assert scheduler._kept == {}
    # Released to none: its instant comes, and the scheduler starts no refresh for it.
    entry = engine.cached(route)
    assert entry is not None
    later = RefreshScheduler(engine, clock=lambda: entry.refresh_at + timedelta(seconds=1))
    later.keep(route)
    later.release(route)
    running = asyncio.create_task(later.run())
    await asyncio.sleep(0.1)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    assert (later.started, source.calls, later._due) == (0, 1, [])
    await engine.close()


async def test_a_failed_first_fetch_answers_every_stream_of_the_key_and_leaves_nothing_behind() -> None:
    routes = route_table(1)
    source = Source()
    source.fail = IdpUnavailableError("the STS is down", issuer="https://sts.test")
    engine = engine_for(routes, source)
    async with scheduled(engine) as scheduler:
        hub: WatchHub[str] = WatchHub(engine, lambda token: token.value, scheduler=scheduler)
        route = routes.resolve("t0", "sfm")
        outcomes = await asyncio.gather(
            *(consume(hub, route, [], wanted=1) for _ in range(50)), return_exceptions=True
        )
        assert all(isinstance(outcome, IdpUnavailableError) for outcome in outcomes)
        assert (hub.open, hub.keys, hub.waiting()) == (0, 0, 0)
        assert scheduler._kept == {}


async def test_a_stream_past_the_limit_is_refused_and_one_more_opens_when_another_closes() -> None:
    routes = route_table(1)
    engine = engine_for(routes, Source(timedelta(seconds=600)))
    async with scheduled(engine) as scheduler:
        hub: WatchHub[str] = WatchHub(engine, lambda token: token.value, scheduler=scheduler, max_streams=3)
        route = routes.resolve("t0", "sfm")
        held = [asyncio.create_task(consume(hub, route, [])) for _ in range(3)]
        await until(lambda: hub.waiting() == 3)
        with pytest.raises(TooManyStreamsError) as refused:
            await consume(hub, route, [], wanted=1)
        assert refused.value.metadata == {"maxStreams": "3"}
        assert hub.refused == 1
        held[0].cancel()
        await asyncio.gather(held[0], return_exceptions=True)
        seen: list[str] = []
        await consume(hub, route, seen, wanted=1)
        assert seen == ["token-1"]
        for task in held[1:]:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)


async def open_streams(
    stub: pb_grpc.TokenBrokerServiceStub, count: int
) -> tuple[list[Any], list[pb.WatchTokenResponse | grpc.aio.AioRpcError]]:
    """Opens `count` streams at once; each one's first message, or its error."""
    request = pb.WatchTokenRequest(tenant="t0", target="sfm")
    calls = [stub.WatchToken(request, timeout=60) for _ in range(count)]

    async def first(call: Any) -> pb.WatchTokenResponse | grpc.aio.AioRpcError:
        try:
            message: pb.WatchTokenResponse = await call.read()
        except grpc.aio.AioRpcError as exc:
            return exc
        return message

    return calls, list(await asyncio.gather(*(first(call) for call in calls)))


@contextlib.asynccontextmanager
async def served(engine: TokenEngine, scheduler: RefreshScheduler, **options: Any) -> AsyncIterator[str]:
    server, port, _ = create_server(engine, "127.0.0.1:0", scheduler=scheduler, **options)
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


async def test_a_burst_of_streams_over_grpc_all_open_and_each_gets_the_renewals() -> None:
    routes = route_table(1)
    engine = engine_for(routes, Source())
    async with scheduled(engine) as scheduler, served(engine, scheduler) as address:
        # Several connections, as callers have them; gRPC core once refused part of such a burst (CANCELLED,
        # nothing logged) beyond 1,000 calls waiting to be taken up by the event loop.
        channels = [
            grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1), ("n", n)])
            for n in range(4)
        ]
        try:
            stubs = [pb_grpc.TokenBrokerServiceStub(channel) for channel in channels]  # type: ignore[no-untyped-call]
            opened = await asyncio.gather(*(open_streams(stub, 1000) for stub in stubs))
            firsts = [first for _, answers in opened for first in answers]
            failed = [first.code().name for first in firsts if isinstance(first, grpc.aio.AioRpcError)]
            print(f"\nburst of 4,000 streams: {len(firsts) - len(failed)} open, refused {failed[:3]}...")
            assert failed == []
            calls = [call for opened_calls, _ in opened for call in opened_calls]
            # A renewal reaches every stream (tokens live 2 s: opening them took one or two), a token in the
            # same bytes for every stream that gets it.
            renewals = await asyncio.wait_for(asyncio.gather(*(call.read() for call in calls)), 30)
            assert all(
                renewal.access_token.expire_time.ToNanoseconds()
                > first.access_token.expire_time.ToNanoseconds()
                for renewal, first in zip(renewals, firsts, strict=True)
                if isinstance(first, pb.WatchTokenResponse)
            )
            sent: dict[str, set[bytes]] = {}
            for renewal in renewals:
                sent.setdefault(renewal.access_token.token, set()).add(renewal.SerializeToString())
            assert all(len(encodings) == 1 for encodings in sent.values())
            for call in calls:
                call.cancel()
        finally:
            for channel in channels:
                await channel.close(None)


async def test_a_stream_past_the_limit_gets_resource_exhausted_with_its_reason_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="broker.api.fanout")
    routes = route_table(1)
    engine = engine_for(routes, Source(timedelta(seconds=600)))
    async with (
        scheduled(engine) as scheduler,
        served(engine, scheduler, max_watch_streams=20) as address,
        grpc.aio.insecure_channel(address) as channel,
    ):
        stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
        calls, answers = await open_streams(stub, 25)
        refusals = [answer for answer in answers if isinstance(answer, grpc.aio.AioRpcError)]
        assert len(refusals) == 5
        for refusal in refusals:
            assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(refusal)  # type: ignore[arg-type]
            assert status is not None
            kinds = {detail.type_url.rsplit("/", 1)[-1]: detail for detail in status.details}
            info = error_details_pb2.ErrorInfo()
            kinds["google.rpc.ErrorInfo"].Unpack(info)
            assert (info.reason, info.domain, dict(info.metadata)) == (
                "TOO_MANY_STREAMS",
                "broker.helseid",
                {"maxStreams": "20"},
            )
            assert "google.rpc.RetryInfo" in kinds
        for call in calls:
            call.cancel()
    lines = [record.getMessage() for record in caplog.records if record.name == "broker.api.fanout"]
    print(f"\nlog: {lines}")
    assert len(lines) == 1  # one line for the burst of refusals, not one per stream
    assert "refused 1 WatchToken stream" in lines[0]
    assert "20 streams open" in lines[0]
