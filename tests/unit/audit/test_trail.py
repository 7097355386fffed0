"""The trail: what a record holds (hashes, not secrets), where it continues after a restart, how soon it is
written, and what an event costs the hot path."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from broker import audit
from broker.audit import AuditSettings, AuditTrail, open_trail, token_id, verify
from broker.audit.hashing import session_ref
from tests.unit.audit.trails import KEY, lines, serve, written_trail

PID = "05073500186"  # a synthetic national id (fødselsnummer form)
SESSION_ID = "s3cr3t-session-id-of-the-caller-0123456789"
SESSION_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"


def _jwt(claims: dict[str, object]) -> str:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256', 'typ': 'at+jwt'})}.{part(claims)}.c2lnbmF0dXJl"


def test_token_id_names_a_jwt_by_its_jti_and_other_tokens_by_themselves() -> None:
    first, second = _jwt({"jti": "abc", "sub": "x"}), _jwt({"jti": "abc", "sub": "y"})
    assert token_id(first) == token_id(second)  # same jti, same id: what an STS log can be matched on
    assert token_id(_jwt({"jti": "abd"})) != token_id(first)
    assert token_id("opaque") != token_id("opaque2")
    assert len(token_id(first)) == 16


def test_a_record_holds_hashes_and_never_the_token_pid_or_session_when_a_session_call_is_recorded(
    tmp_path: Path,
) -> None:
    token = _jwt({"jti": "jti-1", "pid": PID})
    trail = open_trail(AuditSettings(directory=tmp_path, hash_key=KEY), instance="host-1")
    trail.call(
        rpc="GetSessionToken",
        event="session.token",
        outcome="OK",
        caller="epj",
        tenant="oslo",
        target="sfm",
        token=token,
        session_key=SESSION_KEY,
        pid=PID,
    )
    trail.close()
    text = next(tmp_path.glob("*.jsonl")).read_text()
    record = json.loads(text.splitlines()[1])
    print(f"session record: {len(record)} fields, user hash {len(record['user'])} hex")
    for secret in (token, PID, SESSION_KEY, SESSION_KEY[:16], "jti-1"):
        assert secret not in text
    assert record["token_id"] == token_id(token)
    assert record["session"] == session_ref(SESSION_KEY)
    assert record["user"] != open_trail(AuditSettings(directory=tmp_path / "other"), instance="x").user(PID)


def test_record_writes_the_internal_events_to_the_configured_trail_with_the_hashes_renamed(
    tmp_path: Path,
) -> None:
    trail = open_trail(AuditSettings(directory=tmp_path, hash_key=KEY), instance="host-1")
    audit.configure(trail)
    try:
        audit.record("token.minted", tenant="oslo", target="sfm", token_sha256=token_id("t"))
        audit.record("session.ended", tenant="oslo", session=SESSION_KEY[:16], revoked="true")
    finally:
        audit.configure(None)
        trail.close()
    records = [json.loads(line) for line in lines(next(tmp_path.glob("*.jsonl")))][1:3]
    assert records[0]["event"] == "sts.fetched"
    assert records[0]["token_id"] == token_id("t")
    assert records[1]["session"] == session_ref(SESSION_KEY)  # the same name the API's records use
    assert records[1]["detail"] == "revoked=true"


def test_a_restart_continues_the_chain_of_the_file_when_the_instance_name_repeats(tmp_path: Path) -> None:
    path = written_trail(tmp_path, 4)
    again = written_trail(tmp_path, 3)
    result = verify(path)
    print(f"after a restart: {result.records} records in one chain, {len(list(tmp_path.iterdir()))} file")
    assert again == path
    assert result.intact
    assert result.records == 4 + 2 + 3 + 2
    assert [json.loads(line)["seq"] for line in lines(path)] == list(range(1, 12))


def test_a_restart_starts_a_new_file_when_the_old_one_ends_inside_a_line(tmp_path: Path) -> None:
    path = written_trail(tmp_path, 4)
    path.write_bytes(path.read_bytes()[:-10])
    written_trail(tmp_path, 2)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2
    assert verify(path).problem == "truncated"  # left as it was, for the auditor
    (fresh,) = (file for file in files if file != path)
    assert verify(fresh).intact


def test_events_reach_the_file_within_the_flush_interval_when_the_trail_is_not_closed(tmp_path: Path) -> None:
    trail = open_trail(AuditSettings(directory=tmp_path, hash_key=KEY), instance="host-1")
    serve(trail, 10)
    started = time.monotonic()
    path = next(tmp_path.glob("*.jsonl"))
    while len(lines(path)) < 11 and time.monotonic() - started < 2:
        time.sleep(0.01)
    waited = time.monotonic() - started
    print(f"11 records on disk {waited * 1000:.0f} ms after the calls, without close()")
    assert len(lines(path)) == 11
    assert waited < 0.5  # the flush interval is 0.2 s
    trail.close()


def test_cache_hits_recorded_in_bulk_all_reach_the_chain_and_their_cost_is_printed(tmp_path: Path) -> None:
    # One second of cache hits per round (3,000, below the writer's wake-up mark); the best of 5 rounds,
    # as other processes share the machine. Queueing runs on the caller's thread; sealing and writing on the
    # writer thread, which shares the GIL: the sum is what an event costs the process.
    events, token = 3000, _jwt({"jti": "hit"})
    trail = open_trail(AuditSettings(directory=tmp_path, hash_key=KEY, fsync=False), instance="host-1")
    queue_s, write_s = [], []
    for _ in range(5):
        trail.flush()
        started = time.perf_counter()
        serve_hits(trail, events, token)
        queued = time.perf_counter()
        trail.flush()
        queue_s.append(queued - started)
        write_s.append(time.perf_counter() - queued)
    trail.close()
    queue_us, write_us = min(queue_s) / events * 1e6, min(write_s) / events * 1e6
    total_us = queue_us + write_us
    print(
        f"audit event: {queue_us:.2f} us to queue + {write_us:.2f} us to seal and write = {total_us:.2f} us"
    )
    assert verify(next(tmp_path.glob("*.jsonl"))).records == 5 * events + 2


def serve_hits(trail: AuditTrail, events: int, token: str) -> None:
    for _ in range(events):
        trail.call(
            rpc="GetToken",
            event="served",
            outcome="OK",
            caller="epj",
            tenant="oslo",
            target="sfm",
            token=token,
        )
