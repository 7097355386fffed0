"""Running one measured row against a system (a Stack or a Cluster), and choosing among rounds of rows."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.cpu import CpuMeter
from bench.load import ClientPool, GrpcJob, Job
from bench.stack import System
from bench.stats import Row, combine

METHOD_PREFIX = "/broker.v1.TokenBrokerService/"
START_DELAY_NS = 300_000_000  # time for the jobs to reach the processes before the common start


def progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def window(warmup: float, duration: float) -> tuple[int, int, int]:
    start = time.monotonic_ns() + START_DELAY_NS
    measure = start + int(warmup * 1e9)
    return start, measure, measure + int(duration * 1e9)


def run_row(
    system: System,
    pool: ClientPool,
    jobs: Sequence[Job | None],
    window: tuple[int, int, int],
    *,
    key: str,
    label: str,
) -> Row:
    _, measure_ns, end_ns = window
    duration = (end_ns - measure_ns) / 1e9
    broker_pids = system.server_pids()
    groups = {
        "broker": broker_pids,
        "clients": pool.pids,
        "sts": [system.authority.process.pid],
        "redis": [system.redis.process.pid],
    }
    # Each broker process on its own too (JSON only): shows how evenly the connections were spread.
    meter = CpuMeter(groups, {f"broker_pid_{pid}": [pid] for pid in broker_pids})
    sts_before = system.sts_token_requests()
    pool.send(jobs)
    time.sleep(max(0.0, (measure_ns - time.monotonic_ns()) / 1e9))
    meter.start()
    time.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
    cores = meter.cores(duration)
    samples = pool.collect(jobs, timeout=duration + 60)
    sts_after = system.sts_token_requests()
    row = combine(key, label, duration, samples)
    row.cores = cores
    if sts_before is not None and sts_after is not None:
        row.sts_token_requests = sts_after - sts_before
    return row


def grpc_jobs(
    method: str,
    payload: bytes,
    processes: int,
    concurrency: int,
    window: tuple[int, int, int],
    *,
    payloads: tuple[bytes, ...] = (),
) -> list[Job | None]:
    job = GrpcJob(METHOD_PREFIX + method, payload, concurrency, *window, payloads=payloads)
    return [job] * processes


def disturbance(run: Sequence[Row]) -> float:
    """The most CPU that processes outside the benchmark took during any row of the round."""
    return max((row.cores.get("other") or 0.0) for row in run)


def quietest(rounds: Sequence[Sequence[Row]]) -> Sequence[Row]:
    """The round that others' processes disturbed least; on a tie, the earlier one."""
    return min(rounds, key=disturbance)


@dataclass(frozen=True)
class GrpcRow:
    """A row of calls to one RPC: the serialised request, or many of them (`payloads`) to cycle through."""

    key: str
    label: str
    method: str
    payload: bytes
    payloads: tuple[bytes, ...] = ()


def rounds_of(
    system: System,
    pool: ClientPool,
    rows: Sequence[GrpcRow],
    *,
    repeat: int,
    processes: int,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> list[list[Row]]:
    """`repeat` rounds of `rows`, alternating, so that a disturbance of the shared machine hits all alike."""
    rounds: list[list[Row]] = []
    for number in range(repeat):
        rounds.append([])
        for spec in rows:
            count = f" (round {number + 1} of {repeat})" if repeat > 1 else ""
            progress(f"{spec.label}: {warmup_s:g} s warm-up, {duration_s:g} s measured{count}")
            span = window(warmup_s, duration_s)
            jobs = grpc_jobs(spec.method, spec.payload, processes, concurrency, span, payloads=spec.payloads)
            rounds[-1].append(run_row(system, pool, jobs, span, key=spec.key, label=spec.label))
    return rounds
