"""One caller cannot grow the broker's memory: large and distinct inputs in every field leave RSS flat.

Seen before the fix: 60 AuthorizeRequest calls with distinct ~4 MB URLs grew a broker by 735 MB for good (a
cache keyed by the caller's URL). Now a request over 64 KB is refused by gRPC before it is decoded, every
field has a size limit checked before anything parses it, and no cache is keyed by a caller's input.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import sfm_clients
from tests.fixtures.redis_server import free_port
from tests.fixtures.sts import running_sts
from tests.observability.broker_process import (
    BrokerProcess,
    broker_process,
    has_started,
    wait_until,
    write_config,
)

MAX_GROWTH_MB = 25


def rss_mb(broker: BrokerProcess) -> float:
    status = Path(f"/proc/{broker.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    workdir = tmp_path_factory.mktemp("memory")
    clients = sfm_clients()
    with running_sts("devauthority", workdir, clients) as sts:
        config = write_config(workdir, sts.issuer, clients, 'log_level = "INFO"')
        with broker_process(config, free_port()) as running:
            wait_until(running, lambda: has_started(running), "the broker's start")
            yield running


def answer(call: object) -> str:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as error:
        return str(error.code().name)  # type: ignore[attr-defined]
    return "OK"


def test_large_distinct_inputs_in_every_field_leave_memory_flat(broker: BrokerProcess) -> None:
    codes: Counter[str] = Counter()
    sent_mb = 0.0
    with grpc.insecure_channel(broker.address) as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)
        # Warm up: the first token, the first proof, the first of each error path.
        stub.AuthorizeRequest(
            pb.AuthorizeRequestRequest(
                tenant="oslo", target="sfm", http_method="GET", url="https://sfm.test.nhn.no/api/x"
            ),
            timeout=30,
        )
        for _ in range(50):
            answer(lambda: stub.GetToken(pb.GetTokenRequest(tenant=secrets.token_hex(30), target="sfm")))
        before = rss_mb(broker)

        for index in range(60):  # the attack that was seen: distinct ~4 MB URLs
            url = f"https://sfm.test.nhn.no/api/{index}/" + "a" * 4_000_000
            sent_mb += len(url) / 1e6
            request = pb.AuthorizeRequestRequest(tenant="oslo", target="sfm", http_method="GET", url=url)
            codes[answer(lambda r=request: stub.AuthorizeRequest(r, timeout=30))] += 1
        for index in range(1000):  # distinct URLs just inside and outside the limits, parsed or refused
            path = f"{index}-" + secrets.token_hex(1100)[: 1960 + index % 120]
            url = f"https://sfm.test.nhn.no/api/{path}"
            sent_mb += len(url) / 1e6
            request = pb.AuthorizeRequestRequest(tenant="oslo", target="sfm", http_method="GET", url=url)
            codes[answer(lambda r=request: stub.AuthorizeRequest(r, timeout=30))] += 1
        for _ in range(800):  # distinct names, session ids, subject tokens and nonces
            name, session_id = secrets.token_hex(32), secrets.token_urlsafe(64)
            subject, nonce = secrets.token_urlsafe(12_000), secrets.token_urlsafe(300)
            sent_mb += (len(name) * 2 + len(session_id) + len(subject) + len(nonce)) / 1e6
            codes[
                answer(lambda n=name: stub.GetToken(pb.GetTokenRequest(tenant=n, target=n), timeout=30))
            ] += 1
            request = pb.GetSessionTokenRequest(session_id=session_id, target="sfm")
            codes[answer(lambda r=request: stub.GetSessionToken(r, timeout=30))] += 1
            exchange = pb.ExchangeTokenRequest(tenant=name, target="sfm", subject_token=subject)
            codes[answer(lambda r=exchange: stub.ExchangeToken(r, timeout=30))] += 1
            proof = pb.AuthorizeRequestRequest(
                tenant="oslo",
                target="sfm",
                http_method="GET",
                url="https://sfm.test.nhn.no/api/x",
                dpop_nonce=nonce,
            )
            codes[answer(lambda r=proof: stub.AuthorizeRequest(r, timeout=30))] += 1
        after = rss_mb(broker)

    growth = after - before
    print(
        f"\nmemory: {sum(codes.values())} calls carrying {sent_mb:,.0f} MB of distinct input "
        f"({dict(sorted(codes.items()))}); RSS {before:.1f} MB -> {after:.1f} MB "
        f"(+{growth:.1f} MB, bound {MAX_GROWTH_MB} MB)"
    )
    assert codes["RESOURCE_EXHAUSTED"] >= 60  # the 4 MB requests never reached a handler
    assert growth < MAX_GROWTH_MB
