"""CPU time of process trees from /proc, to show how the 2 cores were split between broker and load.

Linux only; elsewhere every figure is None and the report leaves the columns empty.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces; the rest follows the last ")".
    return text[text.rfind(")") + 2 :].split()


def _parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    parents: dict[int, int] = {}
    for entry in _PROC.iterdir() if _PROC.is_dir() else ():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found = [root]
    frontier = [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found += children
        frontier += children
    return found


def cpu_seconds(pids: Iterable[int]) -> float | None:
    """User plus system CPU seconds used so far by the given processes (not their children)."""
    total = 0
    seen = False
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None:
            continue
        seen = True
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total / _TICKS if seen else None


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent not idle since boot (/proc/stat), steal time included: on a VM, time the
    host gave to someone else is time this machine could not use either."""
    try:
        first = (_PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if first[0] != "cpu":
        return None
    values = [int(value) for value in first[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _TICKS


class CpuMeter:
    """Snapshots CPU seconds of named groups of processes; `cores` returns cores used per group.

    Also `machine` (all cores busy, from /proc/stat) and `other`: what the machine did beside the groups,
    such as someone else's processes on a shared machine, or the host's steal time.
    """

    def __init__(self, groups: dict[str, list[int]], parts: dict[str, list[int]] | None = None) -> None:
        """`groups` do not overlap; `parts` are subsets of them, measured too but not counted twice."""
        self._groups = groups
        self._all = {**groups, **(parts or {})}
        self._start: dict[str, float | None] = {}

    def _snapshot(self) -> dict[str, float | None]:
        snapshot = {name: cpu_seconds(pids) for name, pids in self._all.items()}
        snapshot["machine"] = machine_busy_seconds()
        return snapshot

    def start(self) -> None:
        self._start = self._snapshot()

    def cores(self, elapsed: float) -> dict[str, float | None]:
        """Average number of cores each group kept busy since `start`, over `elapsed` seconds."""
        result: dict[str, float | None] = {}
        for name, after in self._snapshot().items():
            before = self._start.get(name)
            result[name] = (
                None if before is None or after is None or elapsed <= 0 else (after - before) / elapsed
            )
        machine = result.get("machine")
        if machine is not None:
            ours = sum(result[name] or 0.0 for name in self._groups)
            result["other"] = max(0.0, machine - ours)
        return result
