"""One whole run of the broker as a user runs it, with every exporter on and logs as JSON at DEBUG.

The module's fixture starts an OTLP receiver and a dev authority, runs `python -m broker run --config FILE`
against them, makes GetToken and AuthorizeRequest calls, scrapes the Prometheus endpoint, and stops the
broker with SIGTERM. The tests then read what came out: the scrape, what reached the receiver, the logs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker import audit
from broker.protocol import keys
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import SFM, sfm_clients
from tests.fixtures.redis_server import free_port
from tests.fixtures.sts import TestClient, running_sts
from tests.observability.broker_process import broker_process, has_started, wait_until, write_config
from tests.observability.otlp_receiver import OtlpReceiver, otlp_receiver


@dataclass
class Run:
    scrape: str
    receiver: OtlpReceiver
    output: str
    exit_code: int
    secrets: dict[str, str]  # what must never be logged, by what it is


def _calls(address: str) -> dict[str, str]:
    """GetToken three times for oslo (one STS fetch, then memory), once for bergen, one AuthorizeRequest,
    one for an unknown tenant, one the STS refuses; returns the secrets the answers held."""
    secrets: dict[str, str] = {}
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
        for tenant in ("oslo", "oslo", "oslo", "bergen"):
            answer = stub.GetToken(pb.GetTokenRequest(tenant=tenant, target="sfm"), timeout=30)
            secrets[f"access token of {tenant}"] = answer.access_token.token
        url = f"{SFM.allowed_urls[0]}prescriptions"
        request = pb.AuthorizeRequestRequest(tenant="oslo", target="sfm", http_method="GET", url=url)
        authorized = stub.AuthorizeRequest(request, timeout=30)
        secrets["Authorization header"] = authorized.authorization
        secrets["DPoP proof"] = authorized.dpop
        for tenant in ("nobody", "stranger"):
            with pytest.raises(grpc.RpcError):
                stub.GetToken(pb.GetTokenRequest(tenant=tenant, target="sfm"), timeout=30)
    return secrets


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    workdir: Path = tmp_path_factory.mktemp("observability-run")
    # The STS does not know the third client's key, so it refuses it (invalid_client).
    stranger = TestClient(
        client_id=f"stranger-{uuid.uuid4().hex[:8]}",
        tenancy="multi",
        organization_number="999888777",
        scopes=SFM.scopes,
        resource=str(SFM.resource),
        registered=False,
    )
    clients = (*sfm_clients(), stranger)
    metrics_port = free_port()
    with otlp_receiver() as receiver, running_sts("devauthority", workdir / "sts", clients) as sts:
        telemetry = f"""
log_format = "json"
log_level = "DEBUG"
prometheus_listen = "127.0.0.1:{metrics_port}"
otlp_endpoint = "{receiver.endpoint}"
trace_sample_ratio = 1.0
"""
        config = write_config(workdir, sts.issuer, clients, telemetry)
        with broker_process(config, free_port()) as broker:
            wait_until(broker, lambda: has_started(broker), "the broker's ready line")
            secrets = _calls(broker.address)
            scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
            exit_code = broker.stop()
        for name, client in zip(("multi", "single", "stranger"), clients, strict=True):
            secrets[f"private key d of {name}"] = keys.private_jwk(client.signing_key)["d"]
        yield Run(scrape, receiver, broker.output(), exit_code, secrets)


def _samples(scrape: str, name: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name.startswith(name)
    ]


def _log_lines(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run.output.splitlines()]


def test_broker_stops_cleanly_when_sent_sigterm(run: Run) -> None:
    assert run.exit_code == 0, run.output[-3000:]


def test_prometheus_endpoint_counts_served_tokens_by_rpc_and_source_when_tokens_were_served(run: Run) -> None:
    samples = _samples(run.scrape, "broker_token_served_total")
    by_rpc: dict[str, float] = {}
    for _, labels, value in samples:
        assert labels["source"] in {"memory", "redis", "sts"}
        by_rpc[labels["rpc"]] = by_rpc.get(labels["rpc"], 0) + value
    assert by_rpc == {"GetToken": 4, "AuthorizeRequest": 1}


def test_prometheus_endpoint_has_the_sts_histogram_in_seconds_when_the_sts_was_asked(run: Run) -> None:
    counts = [value for _, _, value in _samples(run.scrape, "broker_sts_duration_seconds_count")]
    assert sum(counts) == 3  # oslo, bergen, and the refusal
    buckets = {float(labels["le"]) for _, labels, _ in _samples(run.scrape, "broker_sts_duration_seconds_b")}
    assert {0.005, 0.1, 1, 10} <= buckets  # second-sized buckets, not the SDK's millisecond ones


def test_prometheus_endpoint_counts_failed_calls_by_reason_when_a_call_failed(run: Run) -> None:
    failed = {labels["reason"]: value for _, labels, value in _samples(run.scrape, "broker_request_failed")}
    assert failed == {"TENANT_NOT_FOUND": 1, "STS_REJECTED": 1}


def test_prometheus_target_info_names_the_service_when_scraped(run: Run) -> None:
    (info,) = [labels for _, labels, _ in _samples(run.scrape, "target_info")]
    assert info["service_name"] == "helseid-token-broker"
    assert info["service_version"]
    assert info["service_instance_id"]


def test_token_request_spans_reach_the_otlp_receiver_when_an_endpoint_is_configured(run: Run) -> None:
    spans = run.receiver.spans()
    requests = [span for span in spans if span.name == "broker.sts.token_request"]
    fills = {span.span_id: span for span in spans if span.name == "broker.token.fill"}
    assert len(requests) == 3  # oslo, bergen, and the refusal
    for request in requests:
        assert request.parent_span_id in fills, "a token request outside a fill"
        assert fills[request.parent_span_id].trace_id == request.trace_id


def test_each_fill_hangs_under_the_rpc_that_needed_it_when_rpcs_are_traced(run: Run) -> None:
    spans = run.receiver.spans()
    rpcs = {span.span_id: span for span in spans if span.name.startswith("/broker.v1.TokenBrokerService/")}
    fills = [span for span in spans if span.name == "broker.token.fill"]
    assert fills
    for fill in fills:
        assert fill.parent_span_id in rpcs, "a cache fill outside an RPC span"
    assert {rpcs[fill.parent_span_id].name for fill in fills} <= {
        "/broker.v1.TokenBrokerService/GetToken",
        "/broker.v1.TokenBrokerService/AuthorizeRequest",
    }


_GET_TOKEN = "broker.v1.TokenBrokerService/GetToken"
_AUTHORIZE = "broker.v1.TokenBrokerService/AuthorizeRequest"


def test_prometheus_endpoint_has_grpc_server_call_duration_by_method_and_status_when_rpcs_ran(
    run: Run,
) -> None:
    counts = {
        (labels["grpc_method"], labels["grpc_status"]): value
        for _, labels, value in _samples(run.scrape, "grpc_server_call_duration_seconds_count")
    }
    ok = {method: value for (method, status), value in counts.items() if status == "OK"}
    assert ok == {_GET_TOKEN: 4, _AUTHORIZE: 1}
    failed = {status: value for (method, status), value in counts.items() if status != "OK"}
    assert sum(failed.values()) == 2  # the unknown tenant and the client the STS refuses
    assert {method for method, _ in counts} == {_GET_TOKEN, _AUTHORIZE}
    # Cache hits fall into the sub-millisecond buckets, STS calls into the larger ones.
    buckets = {
        float(labels["le"]): value
        for _, labels, value in _samples(run.scrape, "grpc_server_call_duration_seconds_bucket")
        if labels["grpc_method"] == _GET_TOKEN and labels["grpc_status"] == "OK"
    }
    assert {0.0001, 0.001, 1.0, 10.0} <= set(buckets)
    assert buckets[0.05] >= 2  # oslo's two memory hits, with room for a loaded machine
    assert buckets[float("inf")] == 4
    started = {
        labels["grpc_method"]: value for _, labels, value in _samples(run.scrape, "grpc_server_call_started")
    }
    assert started == {_GET_TOKEN: 6, _AUTHORIZE: 1}
    print(f"grpc.server.call.duration: {counts} ; GetToken OK by le: {buckets}")


def test_grpc_server_call_duration_reaches_the_otlp_receiver_in_seconds(run: Run) -> None:
    points = run.receiver.last_histogram("grpc.server.call.duration")
    by_series = {
        tuple(str(a.value.string_value) for a in sorted(p.attributes, key=lambda a: a.key)): p for p in points
    }
    ok_get_token = by_series[(_GET_TOKEN, "OK")]  # grpc.method, grpc.status
    assert ok_get_token.count == 4
    assert sum(ok_get_token.bucket_counts) == 4
    assert 0 < ok_get_token.min <= ok_get_token.max < 30
    assert list(ok_get_token.explicit_bounds)[:2] == [0.00005, 0.0001]


def test_metrics_reach_the_otlp_receiver_when_the_broker_stops(run: Run) -> None:
    assert {"broker.token.served", "broker.sts.duration"} <= run.receiver.metric_names()


def test_every_log_line_is_a_json_object_when_log_format_is_json(run: Run) -> None:
    lines = _log_lines(run)
    assert lines, "the broker logged nothing"
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
    # DEBUG was asked for and given: the HTTP client's own lines are there, not only the broker's.
    assert any(line["level"] == "DEBUG" and line["logger"].startswith("httpcore") for line in lines)


def test_log_lines_inside_a_span_carry_its_trace_id_when_traces_are_exported(run: Run) -> None:
    traced = {line["trace_id"] for line in _log_lines(run) if "trace_id" in line}
    assert traced, "no line was logged inside a span"
    assert traced <= {span.trace_id.hex() for span in run.receiver.spans()}


def test_logs_hold_no_token_proof_assertion_or_key_when_a_whole_run_logs_at_debug(run: Run) -> None:
    assert len(run.secrets) == 7  # tokens of oslo and bergen, header, proof, three keys
    for what, secret in run.secrets.items():
        assert secret, what
        assert secret not in run.output, f"the {what} was logged"
    # No JWT of any kind: no access token, DPoP proof or client assertion, whole or masked.
    assert "eyJ" not in run.output
    # The code itself logged nothing secret-shaped: the masking filter never had to act.
    assert "[redacted" not in run.output


def test_audit_trail_records_each_minted_token_by_its_hash_not_its_value(run: Run) -> None:
    # No [audit] section: the records are lines of the `broker.audit` logger, each message one sealed record.
    records = [json.loads(line["message"]) for line in _log_lines(run) if line["logger"] == "broker.audit"]
    minted = [record for record in records if record["event"] == "sts.fetched"]
    assert {record["tenant"] for record in minted} == {"oslo", "bergen"}
    for tenant in ("oslo", "bergen"):
        token = run.secrets[f"access token of {tenant}"]
        assert any(record["token_id"] == audit.token_id(token) for record in minted)
