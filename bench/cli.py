"""`python -m bench`: set up the stack, run the four rows one after the other, print the figures.

The benchmark reports; it asserts nothing about the figures. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import hitpath, report
from bench.cpu import CpuMeter
from bench.load import ClientPool, GrpcJob, Job, StsJob
from bench.procs import SetupError
from bench.stack import SFM_REQUEST_URL, STORE_KEY_ENV, TARGET, TENANT, Stack, running_stack
from bench.stats import Row, combine
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

_METHOD_PREFIX = "/broker.v1.TokenBrokerService/"
_START_DELAY_NS = 300_000_000  # time for the jobs to reach the processes before the common start
_SWEEP = ((1, 16), (1, 32), (1, 64), (2, 16), (2, 32), (2, 64))


@dataclass(frozen=True)
class Settings:
    workers: int
    clients: int
    concurrency: int
    channels: int
    duration_s: float
    warmup_s: float
    sts_concurrency: int
    repeat: int


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _parser() -> argparse.ArgumentParser:
    cores = machine_cores()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--workers", type=int, default=cores, help=f"broker processes (default {cores}, the cores)"
    )
    parser.add_argument("--clients", type=int, help="client processes (default 2, or the sweep's best)")
    parser.add_argument("--concurrency", type=int, help="calls in flight per client process (default 32)")
    parser.add_argument(
        "--channels", type=int, default=4, help="gRPC channels per client process (default 4)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per row (default 3)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds before each row (default 1)"
    )
    parser.add_argument("--sts-concurrency", type=int, default=4, help="callers of the STS row (default 4)")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="rounds of rows (a)-(c), alternating (default 3, --quick 1); the least disturbed is shown, "
        "and the ratios pooled over all rounds",
    )
    parser.add_argument("--quick", action="store_true", help="1 s rows and a short warm-up: a smoke test")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="first measure the ceiling for 1-2 client processes x 16-64 in flight, then use the best",
    )
    parser.add_argument(
        "--hit-path",
        action="store_true",
        help="also time the broker's handlers in-process, without gRPC (steadier than the rows)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="with --hit-path: cProfile AuthorizeRequest hits"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    duration = 1.0 if args.quick else args.duration
    warmup = min(args.warmup, 0.5) if args.quick else args.warmup
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    for name in ("workers", "channels", "sts_concurrency", "repeat"):
        if getattr(args, name) < 1:
            print(f"--{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    if duration <= 0 or warmup < 0:
        print("--duration must be above 0 and --warmup not below 0", file=sys.stderr)
        return 2
    # SIGTERM (a test's timeout, a CI cancel) unwinds like Ctrl-C, so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args, duration, warmup)
    except SetupError as exc:
        print(f"bench: setup failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(args: argparse.Namespace, duration: float, warmup: float) -> int:
    machine = _machine()
    print(
        f"machine: {machine['nproc']} cores (nproc), {machine['cpu']}, Python {machine['python']}", flush=True
    )
    _progress(f"starting the dev authority, Redis and the broker ({args.workers} workers)")
    with running_stack(args.workers) as stack:
        version = _check_answers(stack.address)
        sweep: list[dict[str, Any]] = []
        clients, concurrency = args.clients or 2, args.concurrency or 32
        if args.sweep:
            sweep = _sweep(stack, args.channels, warmup, duration)
            best = max(sweep, key=lambda result: float(result["calls_per_s"]))
            clients = args.clients or int(best["clients"])
            concurrency = args.concurrency or int(best["concurrency"])
        if clients < 1 or concurrency < 1:
            raise RuntimeError("--clients and --concurrency must be at least 1")
        settings = Settings(
            args.workers,
            clients,
            concurrency,
            args.channels,
            duration,
            warmup,
            args.sts_concurrency,
            args.repeat,
        )
        rows, rounds = _measure(stack, settings)
        hit_path = None
        if args.hit_path or args.profile:
            _progress("timing the broker's handlers in-process (no gRPC)")
            hit_path = hitpath.measure(
                stack.config_path,
                {STORE_KEY_ENV: stack.environ[STORE_KEY_ENV]},
                tenant=TENANT,
                target=TARGET,
                url=SFM_REQUEST_URL,
                profile=args.profile,
            )
    document = {
        "machine": machine,
        "broker_version": version,
        "settings": settings.__dict__,
        "rows": [row.as_json() for row in rows],
        "ratios": {key: None if v is None else round(v, 3) for key, v in report.ratios(rows).items()},
        "round_ratios": [report.ratios(run) for run in rounds],
        "pooled_ratios": report.pooled_ratios(rounds),
        "rounds": [[row.as_json() for row in run] for run in rounds],
        "sweep": sweep,
        "hit_path_us": None
        if hit_path is None
        else {k.strip(): round(v, 2) for k, v in hit_path.timings_us.items()},
    }
    _print_report(settings, rows, rounds, sweep)
    if hit_path is not None:
        print()
        print("the broker's own CPU per call, in-process without gRPC (best of 3 loops):")
        print("\n".join(hit_path.lines()))
        if hit_path.profile:
            print(hit_path.profile)
    if args.json is not None:
        report.write_json(args.json, document)
    return 0


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": machine_cores(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "grpcio": grpc.__version__,
    }


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _check_answers(address: str) -> str:
    """One typed call of each RPC: the rows below measure what they claim (and the token gets cached)."""
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            info = stub.GetBrokerInfo(pb.GetBrokerInfoRequest(), timeout=10)
            token = stub.GetToken(pb.GetTokenRequest(tenant=TENANT, target=TARGET), timeout=30)
            headers = stub.AuthorizeRequest(_authorize_request(), timeout=30)
        except grpc.RpcError as exc:
            raise SetupError(f"the broker's first answers failed: {exc}") from exc
    if not token.access_token.token or token.access_token.token_type != pb.TOKEN_TYPE_DPOP:
        raise SetupError("GetToken did not return a DPoP token")
    if not headers.authorization.startswith("DPoP ") or not headers.dpop:
        raise SetupError("AuthorizeRequest did not return DPoP headers")
    return str(info.version)


def _authorize_request() -> pb.AuthorizeRequestRequest:
    return pb.AuthorizeRequestRequest(tenant=TENANT, target=TARGET, http_method="GET", url=SFM_REQUEST_URL)


def _grpc_rows() -> list[tuple[str, str, str, bytes]]:
    return [
        (
            "ceiling",
            "(a) GetBrokerInfo ceiling",
            "GetBrokerInfo",
            pb.GetBrokerInfoRequest().SerializeToString(),
        ),
        (
            "get_token",
            "(b) GetToken cache hit",
            "GetToken",
            pb.GetTokenRequest(tenant=TENANT, target=TARGET).SerializeToString(),
        ),
        (
            "authorize",
            "(c) AuthorizeRequest cache hit",
            "AuthorizeRequest",
            _authorize_request().SerializeToString(),
        ),
    ]


def _window(warmup: float, duration: float) -> tuple[int, int, int]:
    start = time.monotonic_ns() + _START_DELAY_NS
    measure = start + int(warmup * 1e9)
    return start, measure, measure + int(duration * 1e9)


def _run_row(
    stack: Stack,
    pool: ClientPool,
    jobs: Sequence[Job | None],
    window: tuple[int, int, int],
    *,
    key: str,
    label: str,
) -> Row:
    _, measure_ns, end_ns = window
    duration = (end_ns - measure_ns) / 1e9
    broker_pids = stack.server_pids()
    groups = {
        "broker": broker_pids,
        "clients": pool.pids,
        "sts": [stack.authority.process.pid],
        "redis": [stack.redis.process.pid],
    }
    # Each broker process on its own too (JSON only): shows how evenly SO_REUSEPORT spread the connections.
    meter = CpuMeter(groups, {f"broker_pid_{pid}": [pid] for pid in broker_pids})
    sts_before = stack.sts_token_requests()
    pool.send(jobs)
    time.sleep(max(0.0, (measure_ns - time.monotonic_ns()) / 1e9))
    meter.start()
    time.sleep(max(0.0, (end_ns - time.monotonic_ns()) / 1e9))
    cores = meter.cores(duration)
    samples = pool.collect(jobs, timeout=duration + 60)
    sts_after = stack.sts_token_requests()
    row = combine(key, label, duration, samples)
    row.cores = cores
    if sts_before is not None and sts_after is not None:
        row.sts_token_requests = sts_after - sts_before
    return row


def _grpc_jobs(
    method: str, payload: bytes, processes: int, concurrency: int, window: tuple[int, int, int]
) -> list[Job | None]:
    job = GrpcJob(_METHOD_PREFIX + method, payload, concurrency, *window)
    return [job] * processes


def _measure(stack: Stack, settings: Settings) -> tuple[list[Row], list[list[Row]]]:
    """The shown rows, and every round of (a)-(c). Rounds alternate the rows, so that a disturbance of the
    shared machine hits all of them alike; the round shown is the least disturbed one (see `_quietest`)."""
    rounds: list[list[Row]] = []
    with ClientPool(stack.address, settings.clients, settings.channels) as pool:
        for number in range(settings.repeat):
            rounds.append([])
            for key, label, method, payload in _grpc_rows():
                count = f" (round {number + 1} of {settings.repeat})" if settings.repeat > 1 else ""
                _progress(
                    f"{label}: {settings.warmup_s:g} s warm-up, {settings.duration_s:g} s measured{count}"
                )
                window = _window(settings.warmup_s, settings.duration_s)
                jobs = _grpc_jobs(method, payload, settings.clients, settings.concurrency, window)
                rounds[-1].append(_run_row(stack, pool, jobs, window, key=key, label=label))
        rows = list(_quietest(rounds))
        label = "(d) STS token fetch, no broker"
        _progress(f"{label}: {settings.sts_concurrency} callers in one process")
        window = _window(settings.warmup_s, settings.duration_s)
        environ = {STORE_KEY_ENV: stack.environ[STORE_KEY_ENV]}
        sts_job = StsJob(str(stack.config_path), environ, TENANT, TARGET, settings.sts_concurrency, *window)
        sts_jobs: list[Job | None] = [sts_job] + [None] * (settings.clients - 1)
        rows.append(_run_row(stack, pool, sts_jobs, window, key="sts_direct", label=label))
    return rows, rounds


def _disturbance(run: Sequence[Row]) -> float:
    """The most CPU that processes outside the benchmark took during any row of the round."""
    return max((row.cores.get("other") or 0.0) for row in run)


def _quietest(rounds: Sequence[Sequence[Row]]) -> Sequence[Row]:
    """The round that others' processes disturbed least; on a tie, the earlier one."""
    return min(rounds, key=_disturbance)


def _sweep(stack: Stack, channels: int, warmup: float, duration: float) -> list[dict[str, Any]]:
    results = []
    _, _, method, payload = _grpc_rows()[0]
    for clients, concurrency in _SWEEP:
        _progress(f"sweep: ceiling with {clients} client processes x {concurrency} in flight")
        with ClientPool(stack.address, clients, channels) as pool:
            window = _window(warmup, duration)
            jobs = _grpc_jobs(method, payload, clients, concurrency, window)
            row = _run_row(stack, pool, jobs, window, key="ceiling", label="ceiling")
        results.append(
            {
                "clients": clients,
                "concurrency": concurrency,
                "calls_per_s": round(row.calls_per_s, 1),
                "p50_ms": row.p50_ms,
                "p99_ms": row.p99_ms,
                "errors": row.errors,
                "broker_cores": row.cores.get("broker"),
                "client_cores": row.cores.get("clients"),
                "other_cores": row.cores.get("other"),
            }
        )
    return results


def _print_report(
    settings: Settings, rows: Sequence[Row], rounds: Sequence[Sequence[Row]], sweep: Sequence[dict[str, Any]]
) -> None:
    cores = machine_cores()
    print(f"python: {platform.python_version()}, grpcio {grpc.__version__}")
    print(
        f"broker: {_n(settings.workers, 'worker process', 'es')} (SO_REUSEPORT), Redis store; "
        f"load: {_n(settings.clients, 'client process', 'es')} x {settings.concurrency} calls in flight "
        f"({settings.channels} channels each); warm-up {settings.warmup_s:g} s, "
        f"{settings.duration_s:g} s per row; STS row: {settings.sts_concurrency} callers in 1 process"
    )
    print(
        f"note: the client processes share the machine's {cores} cores with the broker (and Redis and the "
        "dev authority); the cpu columns show how many cores each side kept busy, so every row is a "
        "ceiling of this shared setup, not of the broker alone."
    )
    if sweep:
        print()
        print("sweep of the load generator (ceiling row):")
        print(report.sweep_table(sweep))
        best = max(sweep, key=lambda result: float(result["calls_per_s"]))
        processes = _n(int(best["clients"]), "client process", "es")
        print(f"best ceiling: {processes} x {best['concurrency']} in flight")
    print()
    print(report.table(rows))
    print()
    for line in report.ratio_lines(rows):
        print(line)
    if len(rounds) > 1:
        pooled = ", ".join(f"{key} {_fmt(value)}" for key, value in report.pooled_ratios(rounds).items())
        print(f"pooled over {len(rounds)} rounds (calls of each row summed over the rounds): {pooled}")
        shown_round = list(rounds).index(_quietest(rounds)) + 1
        print(f"rows (a)-(c): round {shown_round} of {len(rounds)}, the least disturbed by other processes:")
        for number, run in enumerate(rounds, 1):
            shown = ", ".join(f"{key} {_fmt(value)}" for key, value in report.ratios(run).items())
            print(
                f"  round {number}: ceiling {run[0].calls_per_s:.0f} calls/s; {shown}; "
                f"other cpu up to {_disturbance(run):.2f}"
            )
    for row in rows:
        if row.errors:
            print(f"{row.label}: {row.errors} errors, first: {row.first_error}")
    sys.stdout.flush()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _n(count: int, noun: str, plural: str = "s") -> str:
    return f"{count} {noun}{'' if count == 1 else plural}"
