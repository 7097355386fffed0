"""`python -m bench`: set up the stack, run the four rows one after the other, print the figures.

The benchmark reports; it asserts nothing about the figures. Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench import hitpath, manytenants, report, warmcluster
from bench.load import ClientPool, Job, StsJob
from bench.procs import SetupError
from bench.rows import GrpcRow, disturbance, grpc_jobs, progress, quietest, rounds_of, run_row, window
from bench.stack import (
    HSM_PIN_ENV,
    SFM_REQUEST_URL,
    STORE_KEY_ENV,
    TARGET,
    TENANT,
    Stack,
    running_broker,
    running_services,
)
from bench.stats import Row
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

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
    parser.add_argument(
        "--replicas",
        type=int,
        default=None,
        help="replica processes of the warm cluster (rows e-f; default 3, 0 leaves them out), or of "
        "--many-tenants (default 2)",
    )
    parser.add_argument(
        "--many-tenants",
        action="store_true",
        help="instead of the rows: many warm tenants on a cluster: warm-up time, STS requests/s of the "
        "scheduler, memory per replica, GetToken over random tenants (takes minutes)",
    )
    parser.add_argument(
        "--tenants", type=int, default=10_000, help="tenants of --many-tenants (default 10000)"
    )
    parser.add_argument(
        "--lifetime",
        type=int,
        default=120,
        help="token lifetime in s the dev authority gives in --many-tenants (default 120)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="refresh_budget_per_s of --many-tenants (default: 1.5 x the renewals/s the tenants need, "
        "lowered if the dev authority cannot serve the warm-up at that rate)",
    )
    parser.add_argument(
        "--steady",
        type=float,
        default=None,
        metavar="SECONDS",
        help="--many-tenants: the steady state's window (default: one refresh period, lifetime x 0.5)",
    )
    parser.add_argument(
        "--hsm",
        action="store_true",
        help="the client's assertion key in SoftHSM2 (the DPoP key in memory), to compare with a run without",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    duration = 1.0 if args.quick else args.duration
    warmup = min(args.warmup, 0.5) if args.quick else args.warmup
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2 if args.many_tenants else 3
    if args.replicas is None:
        args.replicas = 2 if args.many_tenants else 3
    problem = _problem(args, duration, warmup)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    # SIGTERM (a test's timeout, a CI cancel) unwinds like Ctrl-C, so the stack's processes are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.many_tenants:
            return int(manytenants.run(args, _machine(), duration=duration, warmup=warmup))
        return _run(args, duration, warmup)
    except SetupError as exc:
        print(f"bench: setup failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _problem(args: argparse.Namespace, duration: float, warmup: float) -> str | None:
    """What is wrong with the arguments, if anything."""
    for name in ("workers", "channels", "sts_concurrency", "repeat"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if duration <= 0 or warmup < 0:
        return "--duration must be above 0 and --warmup not below 0"
    if args.replicas < (1 if args.many_tenants else 0):
        return "--replicas must be at least 1 with --many-tenants, and not below 0"
    if args.tenants < 1 or args.lifetime < 4:
        return "--tenants must be at least 1 and --lifetime at least 4 s"
    if args.budget is not None and not 0 < args.budget <= 10_000:
        return "--budget must be above 0 and at most 10000 (the configuration's limit)"
    return None


def _terminate(signum: int, frame: object) -> None:
    # Once: a second SIGTERM (a harness that repeats it) must not interrupt the cleanup this one starts.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def _secrets_of(stack: Stack) -> dict[str, str]:
    """The environment a configuration's references need in a process of the bench: the store key, and
    with --hsm the token's PIN."""
    return {name: stack.environ[name] for name in (STORE_KEY_ENV, HSM_PIN_ENV) if name in stack.environ}


def _run(args: argparse.Namespace, duration: float, warmup: float) -> int:
    machine = _machine()
    print(
        f"machine: {machine['nproc']} cores (nproc), {machine['cpu']}, Python {machine['python']}", flush=True
    )
    where = "in SoftHSM2 (DPoP key in memory)" if args.hsm else "in memory"
    progress(
        f"starting the dev authority, Redis and the broker ({args.workers} workers; assertion key {where})"
    )
    with running_services(hsm=args.hsm) as services:
        with running_broker(services, args.workers) as stack:
            measured = _single_broker(args, stack, duration, warmup)
        settings, rows, rounds, sweep, hit_path, version = measured
        document: dict[str, Any] = {
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
            "cluster": None,
        }
        _print_report(settings, rows, rounds, sweep)
        if hit_path is not None:
            print()
            print("the broker's own CPU per call, in-process without gRPC (best of 3 loops):")
            print("\n".join(hit_path.lines()))
            if hit_path.profile:
                print(hit_path.profile)
        sys.stdout.flush()
        if args.replicas > 0:
            # The single broker is stopped by now: the cluster has the machine to itself.
            cluster = warmcluster.measure(
                services,
                replicas=args.replicas,
                clients=settings.clients,
                concurrency=settings.concurrency,
                channels=settings.channels,
                warmup_s=warmup,
                duration_s=duration,
                repeat=settings.repeat,
            )
            document["cluster"] = cluster.as_json()
            print()
            print("\n".join(warmcluster.report_lines(cluster)), flush=True)
    if args.json is not None:
        report.write_json(args.json, document)
    return 0


def _single_broker(
    args: argparse.Namespace, stack: Stack, duration: float, warmup: float
) -> tuple[Settings, list[Row], list[list[Row]], list[dict[str, Any]], hitpath.HitPath | None, str]:
    """Rows (a)-(d) on the single broker, with the sweep and the hit path when asked for."""
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
        progress("timing the broker's handlers in-process (no gRPC)")
        hit_path = hitpath.measure(
            stack.config_path,
            _secrets_of(stack),
            tenant=TENANT,
            target=TARGET,
            url=SFM_REQUEST_URL,
            profile=args.profile,
        )
    return settings, rows, rounds, sweep, hit_path, version


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


def _measure(stack: Stack, settings: Settings) -> tuple[list[Row], list[list[Row]]]:
    """The shown rows, and every round of (a)-(c). Rounds alternate the rows, so that a disturbance of the
    shared machine hits all of them alike; the round shown is the least disturbed one (see `quietest`)."""
    with ClientPool(stack.address, settings.clients, settings.channels) as pool:
        specs = [GrpcRow(key, label, method, payload) for key, label, method, payload in _grpc_rows()]
        rounds = rounds_of(
            stack,
            pool,
            specs,
            repeat=settings.repeat,
            processes=settings.clients,
            concurrency=settings.concurrency,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
        )
        rows = list(quietest(rounds))
        label = "(d) STS token fetch, no broker"
        progress(f"{label}: {settings.sts_concurrency} callers in one process")
        span = window(settings.warmup_s, settings.duration_s)
        environ = _secrets_of(stack)
        sts_job = StsJob(str(stack.config_path), environ, TENANT, TARGET, settings.sts_concurrency, *span)
        sts_jobs: list[Job | None] = [sts_job] + [None] * (settings.clients - 1)
        rows.append(run_row(stack, pool, sts_jobs, span, key="sts_direct", label=label))
    return rows, rounds


def _sweep(stack: Stack, channels: int, warmup: float, duration: float) -> list[dict[str, Any]]:
    results = []
    _, _, method, payload = _grpc_rows()[0]
    for clients, concurrency in _SWEEP:
        progress(f"sweep: ceiling with {clients} client processes x {concurrency} in flight")
        with ClientPool(stack.address, clients, channels) as pool:
            span = window(warmup, duration)
            jobs = grpc_jobs(method, payload, clients, concurrency, span)
            row = run_row(stack, pool, jobs, span, key="ceiling", label="ceiling")
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
        shown_round = list(rounds).index(quietest(rounds)) + 1
        print(f"rows (a)-(c): round {shown_round} of {len(rounds)}, the least disturbed by other processes:")
        for number, run in enumerate(rounds, 1):
            shown = ", ".join(f"{key} {_fmt(value)}" for key, value in report.ratios(run).items())
            print(
                f"  round {number}: ceiling {run[0].calls_per_s:.0f} calls/s; {shown}; "
                f"other cpu up to {disturbance(run):.2f}"
            )
    for row in rows:
        if row.errors:
            print(f"{row.label}: {row.errors} errors, first: {row.first_error}")
    sys.stdout.flush()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _n(count: int, noun: str, plural: str = "s") -> str:
    return f"{count} {noun}{'' if count == 1 else plural}"
