"""Issue 7, point 8: an audit trail an auditor can use, from a real broker process at log_level WARNING.

The broker (`python -m broker run --config FILE`, one process, a caller with a credential) serves tokens,
a proof, a login with its session, an exchange, and refuses two calls, against the dev authority; it writes
its trail to a file in `[audit] directory`. The tests read that file: every kind of event is there with the
caller, no secret is, `python -m broker audit verify` passes it, and fails it once a line is edited.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from broker.audit import AuditSettings, open_trail, token_id, verify
from broker.errors import Reason
from broker.protocol import keys
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import sfm_clients
from tests.fixtures.login import log_in
from tests.fixtures.redis_server import free_port
from tests.fixtures.sessions import JOURNAL_ID, PPS, REDIRECT_URI, SFM, WebClient, sts_for_logins
from tests.fixtures.sts import running_sts
from tests.observability.broker_process import BrokerProcess, broker_process, wait_until, write_config
from tests.observability.otlp_receiver import otlp_receiver

CREDENTIAL = "epj-front-end-" + base64.b32encode(os.urandom(30)).decode()
AUTH = (("authorization", f"Bearer {CREDENTIAL}"),)


@dataclass
class Run:
    audit_files: list[Path]
    output: str  # the broker's stdout and stderr
    secrets: dict[str, str]  # what must never be in the trail, by what it is
    jti_of_served: str  # token_id of the token GetToken served


def _config(workdir: Path, issuer: str, client: WebClient, hash_key: bytes) -> Path:
    (workdir / "web.jwk").write_text(json.dumps(keys.private_jwk(client.signing_key)))
    (workdir / "epj.secret").write_text(CREDENTIAL)
    (workdir / "audit.key").write_text(base64.b64encode(hash_key).decode())
    targets = "\n\n".join(
        f'[targets.{target.name}]\nresource = "{target.resource}"\n'
        f"scopes = {json.dumps(list(target.scopes))}\nallowed_urls = {json.dumps(list(target.allowed_urls))}"
        for target in (SFM, PPS)
    )
    path = workdir / "broker.toml"
    path.write_text(f"""
[authority]
issuer = "{issuer}"

[clients.web]
client_id = "{client.client_id}"
tenancy = "multi"
signing_key = {{ file = "web.jwk" }}
redirect_uris = ["{REDIRECT_URI}"]

{targets}

[tenants.oslo]
client = "web"
targets = ["sfm", "pps"]
orgnr_parent = "912345678"
orgnr_child = "998877665"
sfm_journal_id = "{JOURNAL_ID}"

[callers.epj]
credential = {{ file = "epj.secret" }}
tenants = ["oslo"]
targets = ["*"]
sessions = true

[telemetry]
log_level = "WARNING"

[audit]
directory = "audit"
hash_key = {{ file = "audit.key" }}
""")
    return path


def _listening(broker: BrokerProcess) -> bool:
    host, port = broker.address.rsplit(":", 1)
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) == 0


def _calls(stub: pb_grpc.TokenBrokerServiceStub) -> dict[str, str]:
    """Served, proof, refused (twice), a login, a session token, an exchange, the session's end."""
    secrets: dict[str, str] = {}
    for _ in range(3):
        served = stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), metadata=AUTH, timeout=30)
    secrets["access token"] = served.access_token.token
    url = f"{SFM.allowed_urls[0]}api/prescriptions"
    request = pb.AuthorizeRequestRequest(tenant="oslo", target="sfm", http_method="GET", url=url)
    authorized = stub.AuthorizeRequest(request, metadata=AUTH, timeout=30)
    secrets["DPoP proof"] = authorized.dpop
    secrets["Authorization header"] = authorized.authorization
    with pytest.raises(grpc.RpcError):
        stub.GetToken(pb.GetTokenRequest(tenant="nobody", target="sfm"), metadata=AUTH, timeout=30)
    with pytest.raises(grpc.RpcError):
        stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), timeout=30)  # no credential
    started = stub.StartLogin(
        pb.StartLoginRequest(tenant="oslo", targets=["sfm", "pps"]), metadata=AUTH, timeout=30
    )
    callback = log_in(started.authorization_url, redirect_uri=REDIRECT_URI)
    done = stub.CompleteLogin(
        pb.CompleteLoginRequest(state=callback.state, code=callback.code, issuer=callback.iss or ""),
        metadata=AUTH,
        timeout=30,
    )
    session_id = done.session.session_id
    secrets["session id"] = session_id
    secrets["pid"] = done.session.user.pid
    user_token = stub.GetSessionToken(
        pb.GetSessionTokenRequest(session_id=session_id, target="pps"), metadata=AUTH, timeout=30
    ).access_token.token
    secrets["session's access token"] = user_token
    exchanged = stub.ExchangeToken(
        pb.ExchangeTokenRequest(tenant="oslo", target="sfm", subject_token=user_token),
        metadata=AUTH,
        timeout=30,
    )
    secrets["exchanged token"] = exchanged.access_token.token
    stub.EndSession(pb.EndSessionRequest(session_id=session_id), metadata=AUTH, timeout=30)
    return secrets


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    workdir = tmp_path_factory.mktemp("audit-run")
    client, hash_key = WebClient(), os.urandom(32)
    with sts_for_logins("devauthority", workdir / "sts", client) as sts:
        config = _config(workdir, sts.issuer, client, hash_key)
        with broker_process(config, free_port()) as broker:
            wait_until(broker, lambda: _listening(broker), "the broker's port")
            with grpc.insecure_channel(broker.address) as channel:
                secrets = _calls(pb_grpc.TokenBrokerServiceStub(channel))  # type: ignore[no-untyped-call]
            assert broker.stop() == 0, broker.output()[-3000:]
    secrets["credential"] = CREDENTIAL
    secrets["audit hash key"] = base64.b64encode(hash_key).decode()
    secrets["signing key d"] = keys.private_jwk(client.signing_key)["d"]
    files = sorted((workdir / "audit").glob("audit-*.jsonl"))
    return Run(files, broker.output(), secrets, token_id(secrets["access token"]))


def _records(run: Run) -> list[dict[str, Any]]:
    return [json.loads(line) for path in run.audit_files for line in path.read_text().splitlines()]


def _verify(*files: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "broker", "audit", "verify", *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_every_served_proof_login_session_exchange_and_refusal_is_recorded_at_log_level_warning(
    run: Run,
) -> None:
    records = _records(run)
    events = Counter(record["event"] for record in records)
    print(f"audit records: {len(records)} in {len(run.audit_files)} file(s)")
    print(f"audit records by event: {dict(sorted(events.items()))}")
    assert len(run.audit_files) == 1
    assert events["served"] >= 3
    assert events["refused"] >= 2
    for event in ("proof", "login.started", "login.completed", "session.token", "exchanged", "session.ended"):
        assert events[event] >= 1, event
    assert events["sts.fetched"] >= 1
    assert (records[0]["event"], records[-1]["event"]) == ("trail.opened", "trail.closed")
    served = [record for record in records if record["event"] == "served"]
    assert all(record["caller"] == "epj" and record["tenant"] == "oslo" for record in served)
    assert all(record["token_id"] == run.jti_of_served for record in served)
    refused = [record for record in records if record["event"] == "refused"]
    outcomes = {record["outcome"]: record.get("caller") for record in refused}
    print(f"refusals recorded: {outcomes}")
    assert outcomes == {Reason.CALLER_NOT_ALLOWED: "epj", Reason.CALLER_UNAUTHENTICATED: None}
    assert "broker.audit" not in run.output  # the trail went to its file, not into the WARNING-level log


def test_no_record_holds_a_token_the_pid_the_session_id_or_a_key(run: Run) -> None:
    text = "".join(path.read_text() for path in run.audit_files)
    assert len(run.secrets) == 10
    for what, secret in run.secrets.items():
        assert secret, what
        assert secret not in text, f"the {what} is in the audit trail"
    assert "eyJ" not in text
    users = {record["user"] for record in _records(run) if "user" in record}
    print(f"secrets scanned for: {len(run.secrets)}; user hashes: {len(users)}; trail: {len(text)} bytes")
    assert len(users) == 1
    sessions = {record["session"] for record in _records(run) if "session" in record}
    assert len(sessions) == 1  # the API's records and the session service's own name the session alike


def test_audit_verify_passes_the_file_as_written_and_names_the_line_once_one_is_edited(
    run: Run, tmp_path: Path
) -> None:
    intact = _verify(*run.audit_files)
    copy = tmp_path / run.audit_files[0].name
    lines = run.audit_files[0].read_text().splitlines(keepends=True)
    target = next(index for index, line in enumerate(lines) if '"event":"served"' in line)
    lines[target] = lines[target].replace('"tenant":"oslo"', '"tenant":"bergen"')
    copy.write_text("".join(lines))
    edited = _verify(copy)
    print(
        f"verify: intact exit {intact.returncode} ({intact.stdout.strip()}); "
        f"edited line {target + 1}: exit {edited.returncode} ({edited.stdout.strip()})"
    )
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert edited.returncode == 1
    assert f"{copy}:{target + 1}: altered" in edited.stdout


def test_otel_export_carries_each_sealed_line_when_audit_otel_is_on(tmp_path: Path) -> None:
    with otlp_receiver() as receiver:
        settings = AuditSettings(directory=tmp_path, otlp_endpoint=receiver.endpoint, hash_key=os.urandom(32))
        trail = open_trail(settings, instance="host-1")
        for _ in range(5):
            trail.call(rpc="GetToken", event="served", outcome="OK", caller="epj", tenant="oslo", token="t")
        trail.close()  # flushes the exporter
        exported = [
            record
            for body in receiver.bodies("/v1/logs")
            for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs
            for scope_logs in resource_logs.scope_logs
            for record in scope_logs.log_records
        ]
    written = (tmp_path / "audit-host-1.jsonl").read_text().splitlines()
    print(f"OTel log records exported: {len(exported)}; lines in the file: {len(written)}")
    assert [record.body.string_value for record in exported] == written
    attributes = {item.key: item.value.string_value for item in exported[1].attributes}
    assert (attributes["audit.event"], attributes["audit.caller"]) == ("served", "epj")


def test_each_worker_writes_its_own_intact_chain_when_the_broker_runs_two_workers(tmp_path: Path) -> None:
    clients = sfm_clients()
    with running_sts("devauthority", tmp_path / "sts", clients) as sts:
        settings = 'log_level = "WARNING"\n\n[audit]\ndirectory = "audit"'
        config = write_config(tmp_path, sts.issuer, clients, settings, workers=2)
        with broker_process(config, free_port(), stop_signal=signal.SIGINT) as broker:
            wait_until(broker, lambda: _listening(broker), "the broker's port")
            # The port answers once the first worker listens; on a loaded machine the second may still
            # be starting, and a stop before it opened its trail would leave one file.
            trails = tmp_path / "audit"
            wait_until(broker, lambda: len(list(trails.glob("audit-*.jsonl"))) == 2, "both workers' trails")
            with grpc.insecure_channel(broker.address) as channel:
                stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
                for _ in range(20):
                    stub.GetToken(pb.GetTokenRequest(tenant="oslo", target="sfm"), timeout=30)
            assert broker.stop() == 0, broker.output()[-3000:]
    files = sorted((tmp_path / "audit").glob("audit-*.jsonl"))
    result = verify(*files)
    served = sum(path.read_text().count('"event":"served"') for path in files)
    print(
        f"two workers: {len(files)} files, {result.records} records, {result.chains} chains, {served} served"
    )
    assert (len(files), result.chains, served) == (2, 2, 20)
    assert result.intact
    assert result.open_chains == ()
