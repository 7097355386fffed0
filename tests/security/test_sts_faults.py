"""A hung STS (accepts TCP, never answers) costs a caller no more than its deadline, and opens the breaker.

Issue 7, point 7: every request to an STS (discovery included) passes the issuer's circuit breaker; a caller
bounded by a deadline (`asyncio.timeout`, as the RPC wrapper bounds each call by its gRPC deadline) gets
its answer within that deadline, however long the STS client's own request timeout is; a shared fetch goes
on for the other waiters when one caller gives up; a caller's cancellation is not counted as an outage; a
cancelled half-open trial frees the circuit for the next one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest

from broker.config import StsSettings
from broker.errors import IdpUnavailableError
from broker.idp.breaker import CircuitBreaker
from broker.idp.sts import StsClient
from broker.model import Client, Target, Tenancy, Tenant
from broker.protocol import keys
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import RouteTable
from broker.v1 import token_broker_service_pb2 as pb
from tests.fixtures.broker_server import broker_stub, running_broker
from tests.fixtures.hung_sts import WELL_KNOWN, hung_sts
from tests.fixtures.sessions import WebClient, login_config

DEADLINE_S = 1.0
# The deadline plus scheduling slack; far below any request timeout used here.
WITHIN_S = 1.5
TENANTS = ("a", "b", "c")


def clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Broker:
    engine: TokenEngine
    sts: StsClient
    issuer: str

    @property
    def breaker(self) -> CircuitBreaker:
        return self.sts.breaker(self.issuer)


@asynccontextmanager
async def broker_for(
    issuer: str, *, request_timeout_s: float, threshold: int, cool_down_s: float = 60
) -> AsyncIterator[Broker]:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", issuer, Tenancy.MULTI, key, key)
    target = Target("sfm", ("e-helse:sfm.api/sfm.api2",), "e-helse:sfm.api")
    tenants = {name: Tenant(name, "c", ("sfm",), orgnr_parent=f"{n}" * 9) for n, name in enumerate(TENANTS)}
    sts = StsClient(
        httpx.AsyncClient(timeout=httpx.Timeout(request_timeout_s, connect=1.0)),
        clock,
        breaker_factory=lambda name: CircuitBreaker(
            name, threshold=threshold, cool_down=timedelta(seconds=cool_down_s)
        ),
    )
    engine = TokenEngine(RouteTable({"c": client}, {"sfm": target}, tenants), sts, clock=clock)
    try:
        yield Broker(engine, sts, issuer)
    finally:
        await engine.close()
        await sts.close()


async def timed_call(broker: Broker, tenant: str, deadline_s: float = DEADLINE_S) -> tuple[float, str]:
    """How long a GetToken-like call took under a deadline, and how it ended."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(deadline_s):
            await broker.engine.get_token(tenant, "sfm")
    except TimeoutError:
        outcome = "deadline"
    except IdpUnavailableError:
        outcome = "unavailable"
    else:
        outcome = "token"
    return time.monotonic() - started, outcome


def at_once(elapsed: float, outcome: str) -> bool:
    return outcome == "unavailable" and elapsed < 0.1


async def test_callers_wait_no_longer_than_their_deadline_when_discovery_hangs_at_a_cold_start() -> None:
    async with hung_sts() as sts, broker_for(sts.issuer, request_timeout_s=10, threshold=5) as broker:
        calls = [timed_call(broker, TENANTS[n % 3]) for n in range(30)]
        results = await asyncio.gather(*calls)
        state = broker.breaker.state
    slowest = max(elapsed for elapsed, _ in results)
    print(
        f"\n30 callers, 3 tenants, hung discovery, 10 s request timeout, {DEADLINE_S} s deadline: "
        f"slowest answer {slowest:.2f} s, outcomes {sorted({o for _, o in results})}, "
        f"STS connections {sts.connections}, breaker {state}"
    )
    assert {outcome for _, outcome in results} == {"deadline"}
    assert slowest < WITHIN_S
    assert sts.connections == 1  # one discovery fetch, shared by every caller
    assert state == "closed"  # the callers' deadlines are not the STS's failures


async def test_breaker_opens_after_threshold_outages_and_then_answers_at_once_when_discovery_hangs() -> None:
    threshold, timeout_s = 2, 2.0
    async with (
        hung_sts() as sts,
        broker_for(sts.issuer, request_timeout_s=timeout_s, threshold=threshold) as broker,
    ):
        # Calls one after another, each with its deadline, until the breaker has counted its outages (each
        # a discovery fetch that ran into its own timeout; on a loaded machine that takes longer).
        results: list[tuple[float, str]] = []
        began = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - began < 60 and broker.breaker.state != "open":
            results.append(await timed_call(broker, "a"))
        state = broker.breaker.state
        fast = [await timed_call(broker, tenant) for tenant in TENANTS]
    print(
        f"\nhung discovery, {timeout_s} s request timeout, threshold {threshold}: {len(results)} calls ended "
        f"within their {DEADLINE_S} s deadline (slowest {max(e for e, _ in results):.2f} s; outcomes "
        f"{[o for _, o in results]}), then the breaker was {state} and {len(fast)} calls answered "
        f"{sorted({o for _, o in fast})} in {max(e for e, _ in fast) * 1000:.1f} ms at most; "
        f"STS connections {sts.connections}"
    )
    assert max(elapsed for elapsed, _ in results) < WITHIN_S
    assert state == "open"
    assert all(at_once(*result) for result in fast)
    # Only the discovery fetches that timed out on their own reached the STS: one per counted outage.
    assert sts.connections == threshold
    assert sts.requests == {f"GET {WELL_KNOWN}": threshold}


async def test_a_shared_token_fetch_goes_on_for_others_when_one_caller_gives_up() -> None:
    async with (
        hung_sts(answer_discovery=True) as sts,
        broker_for(sts.issuer, request_timeout_s=2.0, threshold=3) as broker,
    ):
        first = await timed_call(broker, "a")
        # The first caller is gone; its fetch is not: a second caller joins it instead of sending another.
        second = await timed_call(broker, "a")
        token_requests_after_two = sts.requests["POST /connect/token"]
        state_after_two = broker.breaker.state
        # Three tenants' fetches hang until the STS client's own timeout: three outages, the circuit opens.
        await asyncio.gather(*(timed_call(broker, tenant) for tenant in TENANTS))
        await asyncio.sleep(2.2)
        fast = await timed_call(broker, "c")
        state = broker.breaker.state
    print(
        f"\nhung token endpoint: callers ended after {first[0]:.2f} s and {second[0]:.2f} s "
        f"({token_requests_after_two} token request between them, breaker {state_after_two}); "
        f"after 3 tenants' fetches timed out the breaker was {state} and the next call answered "
        f"{fast[1]} in {fast[0] * 1000:.1f} ms; token requests {sts.requests['POST /connect/token']}"
    )
    assert (first[1], second[1]) == ("deadline", "deadline")
    assert max(first[0], second[0]) < WITHIN_S
    assert token_requests_after_two == 1
    assert state_after_two == "closed"
    assert state == "open"
    assert fast[1] == "unavailable"
    assert fast[0] < 0.1
    assert sts.requests["POST /connect/token"] == 3


async def test_a_cancelled_half_open_trial_frees_the_circuit_for_the_next_request() -> None:
    async with (
        hung_sts(answer_discovery=True) as sts,
        broker_for(sts.issuer, request_timeout_s=0.5, threshold=1, cool_down_s=0.3) as broker,
    ):
        route = broker.engine.routes.resolve("a", "sfm")
        exchange = broker.sts.exchange
        with pytest.raises(IdpUnavailableError):  # one outage opens the circuit (threshold 1)
            await exchange(route.client, subject_token="t", target=route.target, details=())
        assert broker.breaker.state == "open"
        await asyncio.sleep(0.35)
        assert broker.breaker.state == "half-open"
        # The trial's caller gives up (a token exchange is the caller's own request: not shared).
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await exchange(route.client, subject_token="t", target=route.target, details=())
        before = sts.requests["POST /connect/token"]
        # The next request is let through as the new trial instead of being refused at once.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await exchange(route.client, subject_token="t", target=route.target, details=())
        after = sts.requests["POST /connect/token"]
        state = broker.breaker.state
    print(f"\nhalf-open: a cancelled trial; the next request reached the STS ({before} -> {after} requests)")
    assert after == before + 1
    assert state == "half-open"


# --- end to end: a real broker server, the RPC wrapper bounding each call by the caller's gRPC deadline ---


async def grpc_call(call: Awaitable[object]) -> tuple[float, grpc.StatusCode]:
    started = time.monotonic()
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return time.monotonic() - started, error.code()
    return time.monotonic() - started, grpc.StatusCode.OK


def answered_at_once(elapsed: float, code: grpc.StatusCode) -> bool:
    return code is grpc.StatusCode.UNAVAILABLE and elapsed < 0.2


async def test_through_grpc_deadlines_bound_every_call_and_an_open_breaker_answers_at_once() -> None:
    threshold = 2
    async with hung_sts() as sts:
        config = dataclasses.replace(
            login_config(sts.issuer, WebClient()),
            sts=StsSettings(
                # Not a multiple of the deadline: no call starts just as a shared fetch times out.
                request_timeout=timedelta(seconds=2.5),
                breaker_threshold=threshold,
                breaker_cool_down=timedelta(seconds=60),
            ),
        )
        async with running_broker(config) as address, broker_stub(address) as stub:
            results: list[tuple[float, grpc.StatusCode]] = []
            # Until one is answered at once (an UNAVAILABLE within the deadline may also be a shared fetch
            # that timed out while this caller waited: an outage, counted, but not yet the open circuit).
            while len(results) < 12 and not (results and answered_at_once(*results[-1])):
                request = pb.GetTokenRequest(tenant="oslo", target="sfm")
                results.append(await grpc_call(stub.GetToken(request, timeout=DEADLINE_S)))
            login = pb.StartLoginRequest(tenant="oslo", targets=["sfm"])
            open_login = await grpc_call(stub.StartLogin(login, timeout=DEADLINE_S))
    codes = [code.name for _, code in results]
    print(
        f"\ngRPC, hung STS, 2.5 s request timeout, threshold {threshold}, {DEADLINE_S} s deadlines: "
        f"GetToken answers {codes} (slowest {max(e for e, _ in results):.2f} s, last in "
        f"{results[-1][0] * 1000:.0f} ms); StartLogin then answered {open_login[1].name} in "
        f"{open_login[0] * 1000:.0f} ms; STS connections {sts.connections}"
    )
    assert max(elapsed for elapsed, _ in results) < WITHIN_S
    assert set(codes[:-1]) <= {"DEADLINE_EXCEEDED", "UNAVAILABLE"}
    assert answered_at_once(*results[-1])
    assert answered_at_once(*open_login)  # PAR passes the same breaker as discovery
    assert sts.connections == threshold


async def test_through_grpc_a_cancelled_par_request_is_dropped_at_the_deadline_and_is_no_outage() -> None:
    async with hung_sts(answer_discovery=True) as sts:
        config = dataclasses.replace(
            login_config(sts.issuer, WebClient()),
            sts=StsSettings(request_timeout=timedelta(seconds=10), breaker_threshold=1),
        )
        async with running_broker(config) as address, broker_stub(address) as stub:
            login = pb.StartLoginRequest(tenant="oslo", targets=["sfm"])
            first = await grpc_call(stub.StartLogin(login, timeout=DEADLINE_S))
            await asyncio.sleep(0.3)  # the broker's own cancellation reaches the STS connection
            second = await grpc_call(stub.StartLogin(login, timeout=DEADLINE_S))
            await asyncio.sleep(0.3)
            dropped = list(sts.dropped_after)
            pushes = sts.requests["POST /connect/par"]
    print(
        f"\ngRPC StartLogin, hung PAR endpoint, 10 s request timeout, threshold 1: answers "
        f"{first[1].name} in {first[0]:.2f} s and {second[1].name} in {second[0]:.2f} s; the broker dropped "
        f"its PAR requests after {[round(after, 2) for _, after in dropped]} s; PAR requests {pushes}"
    )
    assert (first[1], second[1]) == (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.DEADLINE_EXCEEDED)
    # The broker stopped waiting for the STS at the caller's deadline, not at its own 10 s timeout ...
    assert [request for request, _ in dropped] == ["POST /connect/par"] * 2
    assert all(after < WITHIN_S for _, after in dropped)
    # ... and a caller giving up is not an outage: with a threshold of 1, the second login still went out.
    assert pushes == 2
