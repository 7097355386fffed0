"""The hash chain: each line holds the hash of the line before it, so edits, deletions and moves show.

A line is a JSON object whose last two members are `prev` (the previous line's `hash`; 64 zeros for a
trail's first line) and `hash`, the SHA-256 (hex) of the line's own text up to `prev`'s value and a closing
brace, that is, the exact bytes of the line without `,"hash":"..."`. The hash is taken over the text as
written, not a re-serialisation, so any tool can check it: cut the hash member, hash what remains.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

GENESIS = "0" * 64
_HASH_MEMBER = re.compile(r',"hash":"([0-9a-f]{64})"\}$')


def seal(fields: dict[str, object], prev: str) -> tuple[str, str]:
    """The line (with its newline) for `fields` chained to `prev`, and its hash."""
    body = json.dumps({**fields, "prev": prev}, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n', digest


class BrokenLineError(ValueError):
    """A line that is not a sealed record, or whose hash does not match its text."""


def unseal(line: str) -> dict[str, Any]:
    """The record on `line` (no newline); raises BrokenLineError if it is not one or its hash is wrong."""
    match = _HASH_MEMBER.search(line)
    if match is None:
        raise BrokenLineError("not a sealed record (no hash at its end)")
    body = line[: match.start()] + "}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise BrokenLineError("not valid JSON") from exc
    if not isinstance(record, dict) or not isinstance(record.get("seq"), int) or "prev" not in record:
        raise BrokenLineError("not a record (no seq or prev)")
    if hashlib.sha256(body.encode()).hexdigest() != match.group(1):
        raise BrokenLineError("its hash does not match its text")
    return record
