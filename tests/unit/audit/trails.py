"""Helpers: a trail written to a temporary directory, and ways to tamper with its file."""

from __future__ import annotations

import os
from pathlib import Path

from broker.audit import AuditSettings, AuditTrail, open_trail

KEY = os.urandom(32)


def written_trail(directory: Path, events: int, *, instance: str = "host-1") -> Path:
    """A closed trail of `events` served events plus its opened and closed records; returns its file."""
    trail = open_trail(AuditSettings(directory=directory, hash_key=KEY), instance=instance)
    serve(trail, events)
    trail.close()
    assert trail.path is not None
    return trail.path


def serve(trail: AuditTrail, events: int) -> None:
    for index in range(events):
        trail.call(
            rpc="GetToken",
            event="served",
            outcome="OK",
            caller="epj",
            tenant=f"tenant-{index % 3}",
            target="sfm",
            token=f"opaque-token-{index}",
        )


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(new_lines))
