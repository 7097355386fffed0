"""The caller matrix: every caller, every RPC, every tenant and every target, each cell asserted.

One broker (a real gRPC server) on real Redis, in front of the dev authority process. Callers differ in the
tenants, targets and sessions they are granted; each cell's expected answer comes from a small oracle that
reads the grants the way the README states them, and the broker's actual answer must equal it exactly.
Sessions and pending logins: a login is completed only by the caller that started it; a session is used or
ended by any caller granted user sessions, the session's tenant and the target.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from broker.config import BrokerConfig, StoreSettings
from broker.model import Caller
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import running_broker
from tests.fixtures.login import log_in
from tests.fixtures.redis_server import RunningRedis, start_redis
from tests.fixtures.sessions import REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import RunningSts

TENANTS = ("oslo", "bergen")  # oslo has sfm and pps; bergen has sfm only
TARGETS = ("sfm", "pps")
URLS = {"sfm": "https://sfm.test.nhn.no/api/x", "pps": "https://pps.test.nhn.no/v2/results"}
TENANT_TARGETS = {"oslo": {"sfm", "pps"}, "bergen": {"sfm"}}


@dataclasses.dataclass(frozen=True)
class Grant:
    name: str
    tenants: frozenset[str] | None
    targets: frozenset[str] | None
    sessions: bool

    @property
    def secret(self) -> str:
        return f"{self.name}-" + hashlib.sha256(self.name.encode()).hexdigest()

    def may(self, tenant: str | None, targets: tuple[str, ...] = (), *, sessions: bool = False) -> bool:
        if sessions and not self.sessions:
            return False
        if tenant is not None and self.tenants is not None and tenant not in self.tenants:
            return False
        return self.targets is None or all(target in self.targets for target in targets)


GRANTS = (
    Grant("oslo-all", frozenset({"oslo"}), None, sessions=True),
    Grant("oslo-sfm", frozenset({"oslo"}), frozenset({"sfm"}), sessions=True),
    Grant("bergen", frozenset({"bergen"}), None, sessions=True),
    Grant("machines", None, None, sessions=False),
)
# Presented credentials that are not a caller's: nothing at all, and an unknown secret.
STRANGERS = ("no-credential", "unknown-credential")


def reason(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return error.code().name
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Unpack(info):
            return str(info.reason)
    return error.code().name


def metadata(who: str) -> tuple[tuple[str, str], ...]:
    if who == "no-credential":
        return ()
    if who == "unknown-credential":
        return (("authorization", "Bearer " + "z" * 48),)
    grant = next(g for g in GRANTS if g.name == who)
    return (("authorization", f"Bearer {grant.secret}"),)


def expected(who: str, tenant: str | None, targets: tuple[str, ...], *, sessions: bool = False) -> str:
    """What the broker must answer: the grant decides first, then the configuration."""
    if who in STRANGERS:
        return "CALLER_UNAUTHENTICATED"
    grant = next(g for g in GRANTS if g.name == who)
    if not grant.may(tenant, targets, sessions=sessions):
        return "CALLER_NOT_ALLOWED"
    if tenant is not None and any(t not in TENANT_TARGETS[tenant] for t in targets):
        return "TARGET_NOT_ALLOWED"
    return "OK"


async def outcome(call: object) -> str:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return reason(error)
    return "OK"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningSts, WebClient, RunningRedis]]:
    client = WebClient()
    workdir = tmp_path_factory.mktemp("matrix")
    redis = start_redis(workdir / "redis")
    try:
        with sts_for_logins("devauthority", workdir / "sts", client) as running:
            yield running, client, redis
    finally:
        redis.stop()


def matrix_config(running: RunningSts, client: WebClient, redis: RunningRedis) -> BrokerConfig:
    store = StoreSettings(kind="redis", url=redis.url, encryption_key=b"k" * 32)
    config = login_config(running.issuer, client, store)
    callers = {
        g.name: Caller(
            name=g.name,
            credential_sha256=hashlib.sha256(g.secret.encode()).digest(),
            tenants=g.tenants,
            targets=g.targets,
            sessions=g.sessions,
        )
        for g in GRANTS
    }
    return dataclasses.replace(config, callers=callers)


@asynccontextmanager
async def stub_for(address: str) -> AsyncIterator[pb_grpc.TokenBrokerServiceStub]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield pb_grpc.TokenBrokerServiceStub(channel)


async def first_watch(stub: pb_grpc.TokenBrokerServiceStub, request: pb.WatchTokenRequest, who: str) -> str:
    stream = stub.WatchToken(request, metadata=metadata(who), timeout=30)
    try:
        async for _ in stream:
            return "OK"
    except grpc.aio.AioRpcError as error:
        return reason(error)
    finally:
        stream.cancel()
    return "EMPTY"


async def login(stub: pb_grpc.TokenBrokerServiceStub, who: str, tenant: str, targets: list[str]) -> str:
    """A whole login by `who`; returns the session id."""
    started = await stub.StartLogin(
        pb.StartLoginRequest(tenant=tenant, targets=targets), metadata=metadata(who), timeout=30
    )
    callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
    assert callback.iss is not None
    done = await stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss),
        metadata=metadata(who),
        timeout=30,
    )
    return str(done.session.session_id)


async def test_every_caller_reaches_exactly_its_grants_in_every_rpc(
    stack: tuple[RunningSts, WebClient, RunningRedis],
) -> None:
    running, client, redis = stack
    callers = [g.name for g in GRANTS] + list(STRANGERS)
    cells: Counter[str] = Counter()
    mismatches: list[str] = []

    def check(rpc: str, who: str, tenant: str, target: str, want: str, got: str) -> None:  # noqa: PLR0917
        cells[want] += 1
        if want != got:
            mismatches.append(f"{rpc} caller={who} tenant={tenant} target={target}: want {want}, got {got}")

    async with running_broker(matrix_config(running, client, redis)) as address, stub_for(address) as stub:
        # Sessions to use: one of oslo (sfm, pps) and one of bergen (sfm), each made by a caller granted it.
        sessions = {
            "oslo": await login(stub, "oslo-all", "oslo", ["sfm", "pps"]),
            "bergen": await login(stub, "bergen", "bergen", ["sfm"]),
        }
        subject = (
            await stub.GetSessionToken(
                pb.GetSessionTokenRequest(session_id=sessions["oslo"], target="pps"),
                metadata=metadata("oslo-all"),
                timeout=30,
            )
        ).access_token.token

        for who in callers:
            md = metadata(who)
            check(
                "GetBrokerInfo",
                who,
                "-",
                "-",
                expected(who, None, ()),
                await outcome(stub.GetBrokerInfo(pb.GetBrokerInfoRequest(), metadata=md, timeout=30)),
            )
            for tenant in TENANTS:
                for target in TARGETS:
                    want = expected(who, tenant, (target,))
                    get = pb.GetTokenRequest(tenant=tenant, target=target)
                    check(
                        "GetToken",
                        who,
                        tenant,
                        target,
                        want,
                        await outcome(stub.GetToken(get, metadata=md, timeout=30)),
                    )
                    authorize = pb.AuthorizeRequestRequest(
                        tenant=tenant, target=target, http_method="GET", url=URLS[target]
                    )
                    check(
                        "AuthorizeRequest",
                        who,
                        tenant,
                        target,
                        want,
                        await outcome(stub.AuthorizeRequest(authorize, metadata=md, timeout=30)),
                    )
                    watch = pb.WatchTokenRequest(tenant=tenant, target=target)
                    check("WatchToken", who, tenant, target, want, await first_watch(stub, watch, who))
                    exchange = pb.ExchangeTokenRequest(tenant=tenant, target=target, subject_token=subject)
                    check(
                        "ExchangeToken",
                        who,
                        tenant,
                        target,
                        want,
                        await outcome(stub.ExchangeToken(exchange, metadata=md, timeout=30)),
                    )
                    start = pb.StartLoginRequest(tenant=tenant, targets=[target])
                    check(
                        "StartLogin",
                        who,
                        tenant,
                        target,
                        expected(who, tenant, (target,), sessions=True),
                        await outcome(stub.StartLogin(start, metadata=md, timeout=30)),
                    )
                    # A session's tenant is what the call touches, though the request names none.
                    session_want = expected(who, tenant, (target,), sessions=True)
                    session_token = pb.GetSessionTokenRequest(session_id=sessions[tenant], target=target)
                    check(
                        "GetSessionToken",
                        who,
                        tenant,
                        target,
                        session_want,
                        await outcome(stub.GetSessionToken(session_token, metadata=md, timeout=30)),
                    )
                    session_headers = pb.AuthorizeSessionRequestRequest(
                        session_id=sessions[tenant], target=target, http_method="GET", url=URLS[target]
                    )
                    check(
                        "AuthorizeSessionRequest",
                        who,
                        tenant,
                        target,
                        session_want,
                        await outcome(stub.AuthorizeSessionRequest(session_headers, metadata=md, timeout=30)),
                    )

        # CompleteLogin: a login started by one caller, completed by every other; only its own caller may.
        for starter in ("oslo-all", "bergen"):
            tenant = "oslo" if starter == "oslo-all" else "bergen"
            for who in callers:
                started = await stub.StartLogin(
                    pb.StartLoginRequest(tenant=tenant, targets=["sfm"]),
                    metadata=metadata(starter),
                    timeout=30,
                )
                callback = await asyncio.to_thread(
                    log_in, started.authorization_url, redirect_uri=REDIRECT_URI
                )
                assert callback.iss is not None
                complete = pb.CompleteLoginRequest(
                    state=callback.state, code=callback.code, issuer=callback.iss
                )
                want = expected(who, tenant, ("sfm",), sessions=True)
                if want == "OK" and who != starter:
                    want = "CALLER_NOT_ALLOWED"
                check(
                    "CompleteLogin",
                    who,
                    tenant,
                    "sfm",
                    want,
                    await outcome(stub.CompleteLogin(complete, metadata=metadata(who), timeout=30)),
                )

        # EndSession last: every caller not granted the session's tenant is refused and the session lives
        # on; then the caller that may ends it.
        for tenant, owner in (("oslo", "oslo-all"), ("bergen", "bergen")):
            for who in [*(c for c in callers if c != owner), owner]:
                want = expected(who, tenant, (), sessions=True)
                end = pb.EndSessionRequest(session_id=sessions[tenant])
                got = await outcome(stub.EndSession(end, metadata=metadata(who), timeout=30))
                check("EndSession", who, tenant, "-", want, got)
                if got == "OK" and who != owner:  # another caller granted the tenant may end it; log in anew
                    sessions[tenant] = await login(stub, owner, tenant, sorted(TENANT_TARGETS[tenant]))

    summary = ", ".join(f"{name} {count}" for name, count in sorted(cells.items()))
    print(f"\ncaller matrix: {sum(cells.values())} cells ({summary}); {len(mismatches)} wrong")
    assert not mismatches, "\n".join(mismatches)
