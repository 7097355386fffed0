"""CallerPolicy with workload identities, call by call: what each costs on the hit path, and that every map
keyed by what callers send stays bounded. A hand-written context stands in for grpc's (auth context and
metadata only); the real server is in tests/security/test_workload_identity.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from broker.api import identity
from broker.api.identity import CertificateCallers
from broker.api.policy import CallerPolicy
from broker.api.serviceaccounts import ServiceAccountCallers
from broker.errors import UnauthenticatedError
from broker.idp.jwks import IssuerKeys
from broker.model import Caller, ServiceAccountIssuer
from tests.fixtures.workload_identity import AUDIENCE, ClusterIssuer, TestCa

SPIFFE_ID = "spiffe://cluster.test/ns/payments/sa/billing"
SECRET = "batch-" + "s" * 40


class FakeContext:
    """The two things CallerPolicy reads from a grpc.aio.ServicerContext."""

    def __init__(self, pem: bytes | None = None, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self._pem = pem
        self._metadata = tuple(metadata)

    def auth_context(self) -> dict[str, list[bytes]]:
        # grpc builds a fresh mapping with fresh bytes on every call; so does this.
        return {"x509_pem_cert": [bytes(self._pem)]} if self._pem else {}

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def callers() -> dict[str, Caller]:
    oslo = frozenset({"oslo"})
    return {
        "billing": Caller("billing", None, oslo, None, spiffe_id=SPIFFE_ID),
        "reports": Caller("reports", None, oslo, None, dns_name="reports.cluster.test"),
        "batch": Caller("batch", hashlib.sha256(SECRET.encode()).digest(), oslo, None),
        "ledger": Caller("ledger", None, oslo, None, service_account="payments:ledger"),
    }


def per_call_us(policy: CallerPolicy, context: Any, calls: int = 20_000) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        policy.caller(context)
    return (time.perf_counter() - started) / calls * 1e6


def test_a_known_certificate_is_parsed_once_and_a_secret_caller_never_parses_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[bytes] = []
    real_parse = identity.certificate_identity

    def counting(pem: bytes) -> identity.CertificateIdentity:
        parsed.append(pem)
        return real_parse(pem)

    monkeypatch.setattr(identity, "certificate_identity", counting)
    ca = TestCa()
    policy = CallerPolicy(callers())
    billing = FakeContext(ca.client(uris=(SPIFFE_ID,)).certificate)
    secret = FakeContext(metadata=[("authorization", f"Bearer {SECRET}")])
    assert policy.caller(billing).name == "billing"  # type: ignore[arg-type,union-attr]
    certificate_us, secret_us = per_call_us(policy, billing), per_call_us(policy, secret)
    secrets_only = CallerPolicy({"batch": callers()["batch"]})
    secret_only_us = per_call_us(secrets_only, secret)
    # Figures for the reader; the assertions are on the work done, not on time.
    print(
        f"\nper call: certificate caller {certificate_us:.2f} us, secret caller {secret_us:.2f} us "
        f"({secret_only_us:.2f} us without certificate callers configured)"
    )
    assert len(parsed) == 1  # 40,001 calls with the same certificate, one parse


def test_the_certificate_map_is_bounded_however_many_certificates_arrive() -> None:
    ca = TestCa()
    certificates = CertificateCallers(callers().values(), capacity=16)
    named = [
        certificates.caller(FakeContext(ca.client(dns_names=(f"w{index}.cluster.test",)).certificate))  # type: ignore[arg-type]
        for index in range(100)
    ]
    print(f"\n100 distinct certificates: {certificates.cached} kept (capacity 16)")
    assert named == [None] * 100
    assert certificates.cached == 16


def test_a_certificate_naming_two_callers_is_refused() -> None:
    ca = TestCa()
    both = FakeContext(ca.client(uris=(SPIFFE_ID,), dns_names=("reports.cluster.test",)).certificate)
    with pytest.raises(UnauthenticatedError) as refused:
        CallerPolicy(callers()).caller(both)  # type: ignore[arg-type]
    assert "more than one caller" in refused.value.message


def test_spellings_of_a_known_secret_do_not_grow_the_policy_without_bound() -> None:
    policy = CallerPolicy(callers())
    for spaces in range(3000):
        context = FakeContext(metadata=[("authorization", "Bearer " + " " * spaces + SECRET)])
        assert policy.caller(context).name == "batch"  # type: ignore[arg-type,union-attr]
    kept = len(policy._known)  # private, but the bound is the point of this test
    print(f"\n3000 spellings of one secret: {kept} kept")
    assert kept <= 1024


async def test_validated_tokens_are_cached_until_they_expire_and_the_cache_is_bounded(tmp_path: Path) -> None:
    issuer = ClusterIssuer("https://cluster.test")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    settings = ServiceAccountIssuer(issuer.issuer, AUDIENCE, jwks_file=str(jwks))
    now = [time.time()]
    accounts = ServiceAccountCallers(
        callers().values(), settings, IssuerKeys(settings), capacity=8, clock=lambda: now[0]
    )
    token = issuer.token("payments:ledger", lifetime_s=60)
    await accounts.prepare(token)
    assert accounts.caller(token).name == "ledger"
    for _ in range(20):
        other = issuer.token("payments:ledger", lifetime_s=600)
        await accounts.prepare(other)
        accounts.caller(other)
    cached = accounts.cached
    now[0] += 60 + 11  # past exp and the 10 s leeway
    with pytest.raises(UnauthenticatedError) as expired:
        accounts.caller(token)
    print(f"\n21 valid tokens: {cached} kept (capacity 8); after exp: {expired.value.message}")
    assert cached == 8
    assert "expired" in expired.value.message


async def test_an_unknown_kid_reads_the_keys_at_most_once_per_interval(tmp_path: Path) -> None:
    issuer = ClusterIssuer("https://cluster.test")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(issuer.jwks()))
    settings = ServiceAccountIssuer(
        issuer.issuer, AUDIENCE, jwks_file=str(jwks), refetch_interval=timedelta(seconds=30)
    )
    now = [1000.0]
    keys = IssuerKeys(settings, clock=lambda: now[0])
    loads = 0
    load = keys._load  # counting the reads (file or HTTP) is the point of this test

    async def counted() -> Any:
        nonlocal loads
        loads += 1
        return await load()

    keys._load = counted  # type: ignore[method-assign]
    for _ in range(100):
        await keys.fetch_for("made-up")
    first = loads
    now[0] += 30
    for _ in range(100):
        await keys.fetch_for("made-up")
    print(f"\n200 calls with an unknown kid over 30 s: {loads} key reads")
    assert (first, loads) == (1, 2)
