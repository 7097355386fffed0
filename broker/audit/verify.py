"""Checks audit files: each line's own hash, and that each line chains to the one before it.

Reads audit files (`audit-<instance>.jsonl`) or a saved log stream (JSON or text log lines; only the
`broker.audit` logger's lines are read). Records are grouped by `instance`, one chain each, and a chain
continues across the files in the order given (rotated parts oldest first). The first problem found, in
reading order, names its file and line and says which kind it is:
- altered: the line's hash does not match its text, or the line is not a record at all, or its `prev` is
  not the hash of the record before it (that one was rewritten and re-hashed);
- deleted: records are missing (a gap in `seq` that no later line fills);
- reordered: a record comes before one it follows (a gap a later line fills, or `seq` going back);
- truncated: the file ends inside a line.
Whole lines cut from a file's end leave no gap to see; `open_chains` names the chains whose last record is
not `trail.closed` (a broker still running or killed, or a cut end), for the auditor to weigh.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.audit.chain import GENESIS, BrokenLineError, unseal
from broker.audit.sink import AUDIT_LOGGER

# How a record's line starts (a JSON log line starts with time too, then level).
_RECORD_START = re.compile(r'\{"time":"[^"]*","seq":\d')


@dataclass(frozen=True, slots=True)
class VerifyResult:
    records: int  # records checked before the first problem (all of them when intact)
    chains: int
    problem: str | None = None  # altered, deleted, reordered or truncated
    path: str | None = None
    line: int | None = None  # 1-based
    why: str | None = None
    open_chains: tuple[str, ...] = field(default=())

    @property
    def intact(self) -> bool:
        return self.problem is None


@dataclass(slots=True)
class _Line:
    path: str
    number: int
    text: str
    cut: bool  # the file's last line, with no newline after it
    log_stream: bool
    record: dict[str, Any] | None = None
    error: str | None = None


@dataclass(slots=True)
class _Chain:
    seq: int = 0
    hash: str = GENESIS
    line: _Line | None = None
    event: str = ""


class _Broken(Exception):  # noqa: N818 - internal control flow, not an error the caller sees
    def __init__(self, problem: str, line: _Line, why: str) -> None:
        super().__init__(why)
        self.problem, self.line, self.why = problem, line, why


def verify(*paths: Path | str) -> VerifyResult:
    """Checks the files as one set of chains, reading each once; raises OSError if one cannot be read."""
    lines = (line for path in paths for line in _record_lines(Path(path)))
    chains: dict[str, _Chain] = {}
    checked = 0
    try:
        for line in lines:
            _check(line, chains, lines)
            checked += 1
    except _Broken as broken:
        where = broken.line
        return VerifyResult(checked, len(chains), broken.problem, where.path, where.number, broken.why)
    still_open = tuple(sorted(name for name, chain in chains.items() if chain.event != "trail.closed"))
    return VerifyResult(checked, len(chains), open_chains=still_open)


def _record_lines(path: Path) -> Iterator[_Line]:
    log_stream: bool | None = None  # decided by the first line that is not blank
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            text = raw.decode("utf-8", "replace")
            cut = not text.endswith("\n")
            text = text.removesuffix("\n")
            if log_stream is None and text.strip():
                log_stream = _RECORD_START.match(text) is None
            if not log_stream:
                yield _parsed(_Line(str(path), number, text, cut, log_stream=False))
                continue
            embedded = _from_log_line(text)
            if embedded is not None:
                yield _parsed(_Line(str(path), number, embedded, cut, log_stream=True))


def _from_log_line(text: str) -> str | None:
    """The record inside a line the `broker.audit` logger wrote, in the JSON or the text log format."""
    if text.startswith("{"):
        try:
            entry = json.loads(text)
        except ValueError:
            return None
        if not isinstance(entry, dict) or entry.get("logger") != AUDIT_LOGGER:
            return None
        message = entry.get("message")
        return message if isinstance(message, str) and _RECORD_START.match(message) else None
    start = text.find(f" {AUDIT_LOGGER} ")
    found = _RECORD_START.search(text, start) if start >= 0 else None
    return text[found.start() :] if found is not None else None


def _parsed(line: _Line) -> _Line:
    try:
        line.record = unseal(line.text)
    except BrokenLineError as exc:
        line.error = str(exc)
    return line


def _check(line: _Line, chains: dict[str, _Chain], rest: Iterator[_Line]) -> None:
    record = line.record
    if record is None:
        problem = "truncated" if line.cut else "altered"
        raise _Broken(problem, line, f"{problem}: {line.error}")
    instance = str(record.get("instance"))
    chain = chains.setdefault(instance, _Chain())
    seq, prev = record["seq"], record["prev"]
    restart = line.log_stream and seq == 1 and prev == GENESIS and record.get("event") == "trail.opened"
    if seq != chain.seq + 1 and not restart:
        raise _Broken(*_gap(line, chain, seq, _seqs_to_come(rest, instance)))
    if prev != (GENESIS if restart else chain.hash):
        before = f"line {chain.line.number}" if chain.line is not None else "the chain's start"
        why = f"altered: prev is not the hash of {before} (that record was rewritten, or this one's prev)"
        raise _Broken("altered", line, why)
    chain.seq, chain.hash, chain.line, chain.event = seq, record["hash"], line, str(record.get("event"))


def _seqs_to_come(rest: Iterator[_Line], instance: str) -> set[int]:
    """The seqs of the chain's later lines: read only once a gap is found, as checking stops there."""
    return {
        line.record["seq"]
        for line in rest
        if line.record is not None and line.record.get("instance") == instance
    }


def _gap(line: _Line, chain: _Chain, seq: int, to_come: set[int]) -> tuple[str, _Line, str]:
    expected = chain.seq + 1
    if seq < expected:
        return "reordered", line, f"reordered: seq {seq} comes after seq {chain.seq}"
    if any(expected <= later < seq for later in to_come):
        return "reordered", line, f"reordered: seq {seq} comes before seq {expected}"
    missing = seq - expected
    start = "" if chain.line is not None else " at the chain's start (or an earlier file was not given)"
    return "deleted", line, f"deleted: {missing} record(s) missing{start}, seq {expected} to {seq - 1}"
