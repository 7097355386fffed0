"""The hash chain shows each kind of tampering at the line where it starts, and nothing when there is none."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from broker.audit import verify
from broker.audit.chain import GENESIS, seal
from tests.unit.audit.trails import lines, rewrite, written_trail

EVENTS = 20  # lines: trail.opened, 20 served, trail.closed


def test_verify_finds_every_record_intact_when_the_file_is_as_written(tmp_path: Path) -> None:
    result = verify(written_trail(tmp_path, EVENTS))
    print(f"intact trail: {result.records} records checked in {result.chains} chain")
    assert result.intact
    assert (result.records, result.chains, result.open_chains) == (EVENTS + 2, 1, ())


def test_verify_reports_altered_at_the_line_when_a_field_was_edited(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    text = lines(path)
    assert '"tenant":"tenant-1"' in text[5]
    text[5] = text[5].replace('"tenant":"tenant-1"', '"tenant":"tenant-2"')
    rewrite(path, text)
    result = verify(path)
    print(f"edited line 6: found {result.problem} at line {result.line} after {result.records} records")
    assert (result.problem, result.line, result.records) == ("altered", 6, 5)


def test_verify_reports_altered_at_the_next_line_when_an_edited_line_was_rehashed(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    text = lines(path)
    record = json.loads(text[5])
    record["tenant"] = "someone-else"
    prev = record.pop("prev")
    record.pop("hash")
    text[5], _ = seal(record.items(), prev)  # a forger who knows the format re-seals the line he changed
    rewrite(path, text)
    result = verify(path)
    print(f"edited and re-sealed line 6: found {result.problem} at line {result.line}")
    assert (result.problem, result.line) == ("altered", 7)
    assert "line 6" in (result.why or "")


def test_verify_reports_deleted_at_the_line_after_the_gap_when_a_line_was_removed(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    text = lines(path)
    del text[9]
    rewrite(path, text)
    result = verify(path)
    print(f"deleted line 10: found {result.problem} at line {result.line}: {result.why}")
    assert (result.problem, result.line) == ("deleted", 10)


def test_verify_reports_deleted_at_line_1_when_the_first_lines_were_removed(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    rewrite(path, lines(path)[3:])
    result = verify(path)
    print(f"first 3 lines deleted: found {result.problem} at line {result.line}")
    assert (result.problem, result.line) == ("deleted", 1)


def test_verify_reports_reordered_at_the_first_moved_line_when_two_lines_were_swapped(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    text = lines(path)
    text[7], text[8] = text[8], text[7]
    rewrite(path, text)
    result = verify(path)
    print(f"lines 8 and 9 swapped: found {result.problem} at line {result.line}")
    assert (result.problem, result.line) == ("reordered", 8)


def test_verify_reports_truncated_at_the_last_line_when_the_file_ends_inside_a_line(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    result = verify(path)
    print(f"cut 40 bytes: found {result.problem} at line {result.line}")
    assert (result.problem, result.line) == ("truncated", EVENTS + 2)


def test_verify_names_the_chain_open_when_whole_lines_were_cut_from_the_end(tmp_path: Path) -> None:
    path = written_trail(tmp_path, EVENTS)
    rewrite(path, lines(path)[:-4])
    result = verify(path)
    print(f"last 4 lines cut: intact={result.intact}, open chains {result.open_chains}")
    assert result.intact
    assert result.open_chains == ("host-1",)


def test_verify_checks_each_instance_as_its_own_chain_when_files_of_several_workers_are_given(
    tmp_path: Path,
) -> None:
    first = written_trail(tmp_path / "a", 5, instance="host-1")
    second = written_trail(tmp_path / "b", 7, instance="host-2")
    result = verify(first, second)
    print(f"two workers: {result.records} records in {result.chains} chains")
    assert result.intact
    assert (result.records, result.chains) == (5 + 7 + 4, 2)


def test_verify_reads_the_records_out_of_a_json_log_stream_when_other_lines_are_mixed_in(
    tmp_path: Path,
) -> None:
    records = lines(written_trail(tmp_path, 3))
    stream = []
    for record in records:
        stream.append(json.dumps({"time": "t", "level": "INFO", "logger": "broker", "message": "other"}))
        stream.append(
            json.dumps({"time": "t", "level": "INFO", "logger": "broker.audit", "message": record[:-1]})
        )
    log = tmp_path / "broker.log"
    log.write_text("\n".join(stream) + "\n")
    assert verify(log).intact
    stream.pop(5)  # the third record; the fourth is now on line 7
    log.write_text("\n".join(stream) + "\n")
    result = verify(log)
    print(f"log stream: record on line 6 removed: found {result.problem} at line {result.line}")
    assert (result.problem, result.line) == ("deleted", 7)


def test_seal_hashes_the_exact_text_of_the_line_without_its_hash_member() -> None:
    line, digest = seal([("time", "2025-01-01T00:00:00.000Z"), ("seq", 1), ("event", "served")], GENESIS)
    body = line[: line.index(',"hash":')] + "}"
    assert hashlib.sha256(body.encode()).hexdigest() == digest
    assert line.endswith(f'"hash":"{digest}"}}\n')
