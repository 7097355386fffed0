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
from collections.abc import Iterable
from typing import Any

GENESIS = "0" * 64
_HASH_MEMBER = re.compile(r',"hash":"([0-9a-f]{64})"\}$')


def seal(fields: Iterable[tuple[str, str | int]], prev: str) -> tuple[str, str]:
    """The line (with its newline) for `fields` chained to `prev`, and its hash."""
    return seal_members(",".join(f"{encode(name)}:{encode(value)}" for name, value in fields), prev)


def seal_members(members: str, prev: str) -> tuple[str, str]:
    """The line for a record whose JSON members (`"name":value,...`) are given, and its hash.

    The text is what `json.dumps(record, separators=(",", ":"))` gives (ASCII; strings escaped by the json
    module's own encoder), built from pieces: a dict and dumps cost several times more per record."""
    body = f'{{{members},"prev":"{prev}"}}'
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n', digest


def encode(value: str | int) -> str:
    """A JSON string or integer, as json.dumps writes it."""
    return encode_string(value) if isinstance(value, str) else str(int(value))


encode_string = json.encoder.encode_basestring_ascii


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
