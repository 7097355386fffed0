"""What one client process measured, and the figures of one row summed over processes."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One process's part of a row: calls completed inside the measured window and their latencies."""

    calls: int
    errors: int
    first_error: str
    latencies_ns: bytes  # array("q") of per-call latencies, at most its capacity (calls may be more)


@dataclass
class Row:
    key: str
    label: str
    duration_s: float
    calls: int = 0
    errors: int = 0
    first_error: str = ""
    calls_per_s: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    latencies_recorded: int = 0
    # Average cores kept busy during the window, per process group (broker, clients, sts, redis).
    cores: dict[str, float | None] = field(default_factory=dict)
    sts_token_requests: int | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "label": self.label,
            "duration_s": self.duration_s,
            "calls": self.calls,
            "calls_per_s": round(self.calls_per_s, 1),
            "p50_ms": _round(self.p50_ms),
            "p90_ms": _round(self.p90_ms),
            "p99_ms": _round(self.p99_ms),
            "errors": self.errors,
            "first_error": self.first_error,
            "latencies_recorded": self.latencies_recorded,
            "cores": {name: _round(value) for name, value in self.cores.items()},
            "sts_token_requests": self.sts_token_requests,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def combine(key: str, label: str, duration_s: float, samples: Sequence[Sample]) -> Row:
    row = Row(key, label, duration_s)
    latencies = array("q")
    for sample in samples:
        row.calls += sample.calls
        row.errors += sample.errors
        row.first_error = row.first_error or sample.first_error
        latencies.frombytes(sample.latencies_ns)
    row.calls_per_s = row.calls / duration_s if duration_s > 0 else 0.0
    ordered = sorted(latencies)
    row.latencies_recorded = len(ordered)
    row.p50_ms, row.p90_ms, row.p99_ms = (percentile_ms(ordered, q) for q in (50.0, 90.0, 99.0))
    return row


def percentile_ms(ordered: Sequence[int], q: float) -> float | None:
    """Nearest-rank percentile of sorted nanosecond values, in milliseconds."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return ordered[int(rank) - 1] / 1e6
