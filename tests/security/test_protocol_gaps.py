"""Issue 7, point 7: the login URL's real expiry, and a token's expiry from its own `exp`.

- `StartLogin.expire_time` is when the PAR URL stops working (the PAR `expires_in`, or the request object's
  `exp` if earlier), not now + 10 min; the request object lives as long as the URL needs; the pending login
  keeps its own, longer lifetime.
- With `expiry_skew_s = 0` no token is served at or past its JWT `exp`: at the unit level with a clock the
  test moves, and at the integration level with real 2 s tokens from the dev authority.
The DPoP binding (`cnf.jkt`) is tested with the token-response parser in tests/unit/protocol/test_rfc6749.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jws

from broker.config import CacheSettings
from broker.idp.endpoints import UserEndpoints
from broker.idp.sts import StsClient
from broker.model import AccessToken, Client, Target, Tenancy, Tenant
from broker.protocol import keys, rfc6749
from broker.protocol.http import HTTPResponse
from broker.sessions.login import LOGIN_LIFETIME, LoginService
from broker.store.memory import MemorySessionStore
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.routes import RouteTable
from broker.v1 import token_broker_service_pb2 as pb
from tests.fixtures.broker_server import broker_config, broker_stub, running_broker, sfm_clients
from tests.fixtures.login import log_in
from tests.fixtures.sessions import REDIRECT_URI, WebClient, login_config, sts_for_logins
from tests.fixtures.sts import STS_KINDS, RunningSts, running_sts

# --- the login URL's expiry -------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=STS_KINDS)
def login_sts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningSts, WebClient]]:
    client = WebClient()
    with sts_for_logins(str(request.param), tmp_path_factory.mktemp("par-expiry"), client) as running:
        yield running, client


async def test_start_login_expire_time_is_when_the_par_url_stops_working_and_the_url_works(
    login_sts: tuple[RunningSts, WebClient],
) -> None:
    running, client = login_sts
    async with running_broker(login_config(running.issuer, client)) as address, broker_stub(address) as stub:
        before = time.time()
        started = await stub.StartLogin(pb.StartLoginRequest(tenant="oslo", targets=["sfm"]), timeout=30)
        after = time.time()
        callback = await asyncio.to_thread(log_in, started.authorization_url, redirect_uri=REDIRECT_URI)
        assert callback.iss is not None
        completed = await stub.CompleteLogin(
            pb.CompleteLoginRequest(state=started.state, code=callback.code, issuer=callback.iss), timeout=30
        )
    expire_time = started.expire_time.ToDatetime(tzinfo=UTC).timestamp()
    print(
        f"\n{running.kind}: StartLogin.expire_time = start + {expire_time - before:.1f} s "
        f"(was start + {LOGIN_LIFETIME.total_seconds():.0f} s); the URL, opened at once, logged the user in"
    )
    # Both STSs let a pushed request live 60 s (oidc-provider: no longer than its request object).
    assert before + 58 <= expire_time <= after + 60
    assert completed.session.session_id


async def test_request_object_covers_the_par_lifetime_and_the_pending_login_outlives_the_url(
    tmp_path: Path,
) -> None:
    client = WebClient()
    pushed: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []

    async def on_request(request: httpx.Request) -> None:
        if request.url.path.endswith("/par"):
            form = parse_qs((await request.aread()).decode())
            pushed.append(json.loads(jws.extract_compact(form["request"][0].encode()).payload))

    async def on_response(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/par"):
            answers.append(json.loads(await response.aread()))

    with sts_for_logins("devauthority", tmp_path, client) as running:
        config = login_config(running.issuer, client)
        http = httpx.AsyncClient(timeout=10, event_hooks={"request": [on_request], "response": [on_response]})
        sts = StsClient(http, lambda: datetime.now(UTC))
        store = MemorySessionStore()
        routes = RouteTable(config.clients, config.targets, config.tenants)
        endpoints = UserEndpoints(http, sts.discovery, lambda: datetime.now(UTC))
        login = LoginService(routes, endpoints, sts, store, lambda: datetime.now(UTC))
        try:
            before = datetime.now(UTC)
            start = await login.start("oslo", ["sfm"])
            pending = await store.take_pending(start.state)
        finally:
            await sts.close()
    request_object, answer = pushed[0], answers[0]
    object_lifetime = request_object["exp"] - request_object["iat"]
    assert pending is not None
    print(
        f"\nPAR expires_in {answer['expires_in']} s; request object lifetime {object_lifetime} s; "
        f"URL expires at start + {(start.url_expires_at - before).total_seconds():.1f} s; pending login "
        f"lives start + {(pending.expires_at - before).total_seconds():.0f} s"
    )
    assert object_lifetime >= answer["expires_in"]
    assert start.url_expires_at <= before + timedelta(seconds=answer["expires_in"] + 1)
    assert start.url_expires_at <= datetime.fromtimestamp(request_object["exp"], UTC)
    assert start.url_expires_at >= before + timedelta(seconds=58)
    assert pending.expires_at >= before + LOGIN_LIFETIME


# --- a token's expiry: the earlier of expires_in and its exp ----------------------------------------------

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class JwtIssuingSource:
    """Answers like a real STS (a DPoP-bound JWT, iat/exp in whole seconds), read by the real parser."""

    def __init__(self, clock: Clock, dpop_jkt: str, lifetime_s: int = 60) -> None:
        self.clock = clock
        self.dpop_jkt = dpop_jkt
        self.lifetime_s = lifetime_s
        self.sts_key = keys.generate_signing_key("ES256")
        self.calls = 0

    async def fetch_client_credentials(
        self, client: Client, target: Target, details: Sequence[Mapping[str, Any]]
    ) -> AccessToken:
        self.calls += 1
        iat = int(self.clock().timestamp())  # the STS truncates its clock to whole seconds
        claims = {
            "iat": iat,
            "exp": iat + self.lifetime_s,
            "jti": str(self.calls),
            "cnf": {"jkt": self.dpop_jkt},
        }
        token = keys.sign_jwt(self.sts_key, {"alg": "ES256", "typ": "at+jwt"}, claims)
        body = {"access_token": token, "token_type": "DPoP", "expires_in": self.lifetime_s}
        response = HTTPResponse(200, {}, json.dumps(body).encode())
        return rfc6749.parse_token_response(
            response, now=self.clock(), issuer="https://sts.test", expected_jkt=self.dpop_jkt
        )


async def test_with_skew_zero_a_token_is_not_served_at_its_jwt_exp_on_a_clock_the_test_moves() -> None:
    key = keys.generate_signing_key("ES256")
    client = Client("c", "client-id", "https://sts.test", Tenancy.MULTI, key, key)
    routes = RouteTable({"c": client}, {"sfm": Target("sfm", ("s",))}, {"a": Tenant("a", "c", ("sfm",))})
    # The request starts 0.8 s into the second the STS issues the token in.
    clock = Clock(START + timedelta(milliseconds=800))
    source = JwtIssuingSource(clock, key.thumbprint)
    policy = FreshnessPolicy(refresh_fraction=1.0, jitter_fraction=0.0, expiry_skew=timedelta(0))
    engine = TokenEngine(routes, source, clock=clock, policy=policy)
    first = await engine.get_token("a", "sfm")
    exp = START + timedelta(seconds=60)
    clock.now = exp - timedelta(microseconds=1)
    just_before = await engine.get_token("a", "sfm")
    clock.now = exp
    at_exp = await engine.get_token("a", "sfm")
    await engine.close()
    print(
        f"\nskew 0, token exp at +60 s, requested at +0.8 s: served until +59.999999 s "
        f"(same token: {just_before is first}); at +60 s a new one (STS fetches: {source.calls})"
    )
    assert first.expires_at == exp
    assert just_before is first
    assert at_exp is not first
    assert at_exp.expires_at > clock.now
    assert source.calls == 2


async def test_with_skew_zero_no_real_token_is_served_at_or_past_its_exp(tmp_path: Path) -> None:
    clients = sfm_clients()
    lifetime_s = 2
    with running_sts("devauthority", tmp_path, clients, token_lifetime=lifetime_s) as sts:
        cache = CacheSettings(expiry_skew=timedelta(0), refresh_fraction=1.0, jitter_fraction=0.0)
        config = broker_config(sts.issuer, clients, cache=cache)
        async with running_broker(config) as address, broker_stub(address) as stub:
            # Start 0.7 s into a second: the dev authority truncates iat to the second, so an expiry
            # computed from the request's start plus expires_in would run 0.7 s past the token's exp.
            await asyncio.sleep((0.7 - time.time() % 1) % 1)
            served: list[tuple[float, float, str]] = []
            deadline = time.time() + 2.5 * lifetime_s
            while time.time() < deadline:
                asked_at = time.time()
                response = await stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), timeout=10)
                token = response.access_token.token
                served.append((asked_at, _exp(token), token))
                await asyncio.sleep(0.005)
    late = [(asked, exp) for asked, exp, _ in served if asked >= exp]
    distinct = len({token for _, _, token in served})
    closest = min(exp - asked for asked, exp, _ in served)
    print(
        f"\nskew 0, {lifetime_s} s tokens from the dev authority: {len(served)} GetToken calls, {distinct} "
        f"tokens, {len(late)} served at or past their exp; closest to exp: {closest * 1000:.0f} ms before"
    )
    assert distinct >= 2
    assert late == []


def _exp(token: str) -> float:
    return float(json.loads(jws.extract_compact(token.encode()).payload)["exp"])
