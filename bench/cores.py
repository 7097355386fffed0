"""`python -m bench.cores`: does a second broker worker add throughput, measured by load generators that are
not themselves the limit?

Two brokers run side by side on one dev authority and Redis, one with `workers = 1` and one with
`workers = 2` (each its own configuration file and port, each worker with its own Prometheus endpoint). The
GetBrokerInfo ceiling and the GetToken cache hit are driven against each by h2load (C), ghz (Go) and the
bench's Python load generator, alternating in rounds. Each RPC and generator is shown from the round in which
other processes disturbed its pair of rows least, with the ratio workers=2 / workers=1 next to the goal of
1.7x and what limited the row with 2 workers (the machine's cores, the generator's).

Every row also reads the broker's own call counts per gRPC status and per worker (the workers' Prometheus
endpoints, read before and after the row): h2load sees only HTTP statuses, and a gRPC error is an HTTP 200,
so the broker's count of non-OK calls is what shows that the calls succeeded. The same counts show how
SO_REUSEPORT spread the connections over the workers.

The benchmark asserts nothing about the figures; it fails only when its stack does not come up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench import cpu, ghz, h2load, report
from bench.cores_generators import (
    RPCS,
    Generator,
    GhzGenerator,
    H2loadGenerator,
    PythonGenerator,
    Rpc,
)
from bench.cores_report import (
    SATURATED,
    Measured,
    broker_calls,
    pooled_scaling,
    quietest_pairs,
    report_lines,
    scaling,
)
from bench.cpu import CpuMeter
from bench.procs import SetupError, free_port, log_tail, spawn, stop_process
from bench.rows import progress, window
from bench.stack import (
    ORGNR_PARENT,
    TARGET,
    TENANT,
    Services,
    Stack,
    TenantSpec,
    _wait_serving,  # the bench's one wait for every SO_REUSEPORT worker to be SERVING, not copied here
    config_toml,
    running_services,
)
from bench.stats import combine
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

GENERATORS = ("h2load", "ghz", "python")
_CALLS_METRIC = "grpc_server_call_duration_seconds_count"
_PORT_LINE = "prometheus metrics on port "  # what each worker logs (broker.observability)
_CHECK_REQUESTS = 20


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass
class Broker:
    """A broker with `workers` processes on `address`, each worker with its Prometheus endpoint."""

    workers: int
    address: str
    process: subprocess.Popen[bytes]
    services: Services
    metrics_urls: list[str] = field(default_factory=list)

    def server_pids(self) -> list[int]:
        return cpu.descendants(self.process.pid)

    def calls(self, method: str) -> list[dict[str, float]]:
        """Per worker: the calls of `method` (`package.Service/Method`) it ended so far, by gRPC status."""
        per_worker = []
        for url in self.metrics_urls:
            counts: dict[str, float] = {}
            for family in text_string_to_metric_families(httpx.get(url, timeout=10).text):
                for sample in family.samples:
                    if sample.name == _CALLS_METRIC and sample.labels.get("grpc_method") == method:
                        status = sample.labels.get("grpc_status", "?")
                        counts[status] = counts.get(status, 0.0) + sample.value
            per_worker.append(counts)
        return per_worker


@contextlib.contextmanager
def metered_broker(services: Services, workers: int, *, start_timeout: float = 60.0) -> Iterator[Broker]:
    """`python -m broker run` with `workers` processes, as bench.stack starts it, plus a Prometheus endpoint
    per worker (port 0: each worker takes a free port and logs it). A configuration file of its own: a
    broker reloads when its file changes, so two brokers must not share one."""
    with contextlib.ExitStack() as cleanup:
        name = f"cores-w{workers}"
        port = free_port()
        address = f"127.0.0.1:{port}"
        config_path = services.workdir / f"{name}.toml"
        config = config_toml(
            listen=address,
            workers=workers,
            redis_url=services.redis.url,
            issuer=services.issuer,
            key_file=services.key_file.name,
            tenants=[TenantSpec(TENANT, ORGNR_PARENT)],
        )
        config_path.write_text(
            f'{config}\n[telemetry]\nprometheus_listen = "127.0.0.1:0"\n', encoding="utf-8"
        )
        environ = services.broker_environ()
        log = services.workdir / f"{name}.log"
        process = spawn(
            [sys.executable, "-m", "broker", "run", "--config", str(config_path)], log, env=environ
        )
        cleanup.callback(stop_process, process, first=signal.SIGTERM, grace=15.0)
        stack = Stack(
            services.workdir,
            address,
            workers,
            config_path,
            environ,
            services.authority,
            services.redis,
            process,
        )
        _wait_serving(stack, port, start_timeout)
        yield Broker(workers, address, process, services, _metrics_urls(log, workers, start_timeout))


def _metrics_urls(log: Path, workers: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.exists() else []
        ports = {int(line.split(_PORT_LINE)[1].split(",")[0]) for line in lines if _PORT_LINE in line}
        if len(ports) >= workers:
            return [f"http://127.0.0.1:{port}/metrics" for port in sorted(ports)]
        time.sleep(0.1)
    raise SetupError(
        f"the broker's workers logged no Prometheus port within {timeout:.0f} s:\n{log_tail(log)}"
    )


def check_answers(broker: Broker) -> None:
    """Typed calls of both RPCs, each on a fresh connection, so that with SO_REUSEPORT both workers are
    likely reached: the rows measure what they claim, and GetToken's token is cached in Redis."""
    for _ in range(2 * broker.workers):
        with grpc.insecure_channel(
            broker.address, options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                stub.GetBrokerInfo(pb.GetBrokerInfoRequest(), timeout=10)
                token = stub.GetToken(pb.GetTokenRequest(tenant=TENANT, target=TARGET), timeout=30)
            except grpc.RpcError as exc:
                raise SetupError(f"the broker's first answers failed: {exc}") from exc
        if not token.access_token.token or token.access_token.token_type != pb.TOKEN_TYPE_DPOP:
            raise SetupError("GetToken did not return a DPoP token")


def check_h2load(generator: H2loadGenerator, broker: Broker) -> dict[str, object]:
    """h2load's request of each RPC, sent a few times one by one: the broker must count each as an OK call
    (h2load itself counts a gRPC error, an HTTP 200, as a success)."""
    checks: dict[str, object] = {}
    for rpc in RPCS:
        before = broker.calls(rpc.method)
        generator.send(broker.address, rpc, _CHECK_REQUESTS)
        calls = broker_calls(before, broker.calls(rpc.method))
        checks[rpc.key] = calls.as_json()
        print(
            f"check: h2load's {rpc.label} request x {_CHECK_REQUESTS}: the broker counted {calls.ok} OK, "
            f"{sum(calls.not_ok.values())} not OK",
            flush=True,
        )
        if calls.ok != _CHECK_REQUESTS or calls.not_ok:
            raise RuntimeError(
                f"h2load's {rpc.label} request did not make {_CHECK_REQUESTS} OK calls: {calls}"
            )
    return checks


def measure_row(
    broker: Broker,
    generator: Generator,
    rpc: Rpc,
    *,
    idle: Sequence[int],
    warmup_s: float,
    duration_s: float,
    number: int = 1,
) -> Measured:
    """One row, of round `number`. `idle` are the bench's processes that sit it out (the other broker, the
    other generators' pools): measured apart, so that `other` is only what the bench did not start."""
    before = broker.calls(rpc.method)
    sts_before = broker.services.sts_token_requests()
    span = window(warmup_s, duration_s)
    running = generator.start(broker.address, rpc, span)
    try:
        broker_pids = broker.server_pids()
        groups = {
            "broker": broker_pids,
            "generator": running.pids,
            "sts": [broker.services.authority.process.pid],
            "redis": [broker.services.redis.process.pid],
            "idle": [pid for pid in idle if pid not in running.pids],
        }
        # Each broker process on its own too (JSON only): with 2 workers, how the load was split.
        meter = CpuMeter(groups, {f"broker_pid_{pid}": [pid] for pid in broker_pids})
        _sleep_until(span[1])
        meter.start()
        irq_before, started = _interrupt_seconds(), time.monotonic()
        _sleep_until(span[2])
        # The time that passed, not the window's length: a starved bench wakes late, and CPU seconds over
        # the shorter time would show more cores than the machine has.
        elapsed = time.monotonic() - started
        cores = meter.cores(elapsed)
        cores["irq"] = _cores_between(irq_before, _interrupt_seconds(), elapsed)
        if cores.get("other") is not None and cores["irq"] is not None:
            cores["other"] = max(0.0, (cores["other"] or 0.0) - cores["irq"])
    finally:
        samples = running.finish()
    sts_after = broker.services.sts_token_requests()
    row = combine(rpc.key, f"{rpc.label}, {generator.name}", duration_s, samples)
    row.cores = cores
    if sts_before is not None and sts_after is not None:
        row.sts_token_requests = sts_after - sts_before
    calls = broker_calls(before, broker.calls(rpc.method))
    return Measured(
        rpc, generator.name, broker.workers, number, row, calls, generator.max_cores, machine_cores()
    )


def _interrupt_seconds() -> float | None:
    """CPU seconds all cores spent in interrupts since boot (/proc/stat irq and softirq): on loopback that is
    mostly the rows' own networking, which no process is charged for, so it is kept out of `other`."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return (int(fields[6]) + int(fields[7])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _cores_between(before: float | None, after: float | None, seconds: float) -> float | None:
    return None if before is None or after is None else (after - before) / seconds


def _sleep_until(instant_ns: int) -> None:
    time.sleep(max(0.0, (instant_ns - time.monotonic_ns()) / 1e9))


def measure_rounds(
    brokers: Sequence[Broker],
    generators: Sequence[Generator],
    *,
    repeat: int,
    warmup_s: float,
    duration_s: float,
) -> list[list[Measured]]:
    """`repeat` rounds of every RPC x generator x broker; within a round the two brokers' rows of one RPC
    and generator follow each other, so that their ratio compares neighbours in time."""
    rounds: list[list[Measured]] = []
    for number in range(1, repeat + 1):
        rounds.append([])
        for rpc in RPCS:
            for generator in generators:
                for broker in brokers:
                    progress(
                        f"{rpc.label}, {generator.name}, workers={broker.workers}: {warmup_s:g} s warm-up, "
                        f"{duration_s:g} s measured (round {number} of {repeat})"
                    )
                    idle = [pid for other in brokers if other is not broker for pid in other.server_pids()]
                    idle += [pid for each in generators for pid in each.idle_pids()]
                    measured = measure_row(
                        broker,
                        generator,
                        rpc,
                        idle=idle,
                        warmup_s=warmup_s,
                        duration_s=duration_s,
                        number=number,
                    )
                    rounds[-1].append(measured)
    return rounds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cores", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--generators",
        default=",".join(GENERATORS),
        help="load generators, comma-separated (default: h2load,ghz,python; one not installed is left out)",
    )
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per row (default 3)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="warm-up seconds before each row (default 1)"
    )
    parser.add_argument("--repeat", type=int, default=None, help="rounds of rows (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="1 s rows, 0.5 s warm-up, 1 round: a smoke test")
    parser.add_argument("--h2load-clients", type=int, default=16, help="h2load -c: connections (default 16)")
    parser.add_argument(
        "--h2load-streams", type=int, default=4, help="h2load -m: calls in flight per connection (default 4)"
    )
    parser.add_argument("--ghz-concurrency", type=int, default=64, help="ghz -c: callers (default 64)")
    parser.add_argument("--ghz-connections", type=int, default=16, help="ghz --connections (default 16)")
    parser.add_argument("--clients", type=int, default=2, help="Python client processes (default 2)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="calls in flight per Python client process (default 32)"
    )
    parser.add_argument(
        "--channels", type=int, default=8, help="connections per Python client process (default 8)"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return parser


@dataclass(frozen=True)
class Settings:
    generators: list[str]
    duration_s: float
    warmup_s: float
    repeat: int


def _settings(args: argparse.Namespace) -> Settings | str:
    """The run's settings, or what is wrong with the arguments."""
    names = [name.strip() for name in args.generators.split(",") if name.strip()]
    if not names or any(name not in GENERATORS for name in names):
        return f"--generators takes some of {', '.join(GENERATORS)}"
    repeat = args.repeat if args.repeat is not None else 1 if args.quick else 3
    counts = (args.h2load_clients, args.h2load_streams, args.ghz_concurrency, args.ghz_connections)
    if repeat < 1 or min(*counts, args.clients, args.concurrency, args.channels) < 1:
        return "--repeat and the generators' counts must be at least 1"
    duration = 1.0 if args.quick else args.duration
    warmup = min(args.warmup, 0.5) if args.quick else args.warmup
    if duration <= 0 or warmup < 0:
        return "--duration must be above 0 and --warmup not below 0"
    return Settings(names, duration, warmup, repeat)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = _settings(args)
    if isinstance(settings, str):
        print(settings, file=sys.stderr)
        return 2
    # SIGTERM (a test's time-out) unwinds like Ctrl-C, so that every process the bench started is stopped.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args, settings)
    except (SetupError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"bench.cores: {exc}", file=sys.stderr)
        return 1


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a repeated SIGTERM must not cut the cleanup short
    raise SystemExit(128 + signum)


def _installed(names: Sequence[str]) -> dict[str, str]:
    found = {"h2load": h2load.binary(), "ghz": ghz.binary(), "python": sys.executable}
    for name in names:
        if found[name] is None:
            print(
                f"{name}: not installed (scripts/bench-tools.sh installs it); its rows are left out",
                flush=True,
            )
    return {name: path for name in names if (path := found[name]) is not None}


def _generators(
    args: argparse.Namespace,
    executables: dict[str, str],
    workdir: Path,
    brokers: Sequence[Broker],
    cleanup: contextlib.ExitStack,
) -> list[Generator]:
    generators: list[Generator] = []
    for name, executable in executables.items():
        if name == "h2load":
            setting = h2load.H2load(args.h2load_clients, args.h2load_streams)
            generators.append(H2loadGenerator(workdir, executable, setting))
        elif name == "ghz":
            generators.append(
                GhzGenerator(workdir, executable, ghz.Ghz(args.ghz_concurrency, args.ghz_connections))
            )
        else:
            addresses = [broker.address for broker in brokers]
            python = PythonGenerator(addresses, args.clients, args.concurrency, args.channels)
            cleanup.callback(python.close)
            generators.append(python)
    return generators


def _run(args: argparse.Namespace, settings: Settings) -> int:
    cores = machine_cores()
    executables = _installed(settings.generators)
    if not executables:
        return 1
    progress("starting the dev authority, Redis and two brokers (workers=1 and workers=2)")
    with running_services(prefix="broker-bench-cores-") as services, contextlib.ExitStack() as cleanup:
        brokers = [cleanup.enter_context(metered_broker(services, workers)) for workers in (1, 2)]
        for broker in brokers:
            check_answers(broker)
        generators = _generators(args, executables, services.workdir, brokers, cleanup)
        _print_settings(cores, generators, brokers, settings)
        checks = {}
        for generator in generators:
            if isinstance(generator, H2loadGenerator):
                checks = check_h2load(generator, brokers[0])
        rounds = measure_rounds(
            brokers,
            generators,
            repeat=settings.repeat,
            warmup_s=settings.warmup_s,
            duration_s=settings.duration_s,
        )
    print()
    print("\n".join(report_lines(rounds)), flush=True)
    if args.json is not None:
        document = {
            "machine": {"nproc": cores},
            "settings": {**settings.__dict__, "generators": {g.name: g.setting for g in generators}},
            "h2load_check": checks,
            "rounds": [[measured.as_json() for measured in run] for run in rounds],
            "scaling": {
                f"{rpc.key}/{name}": {
                    "shown": scaling(quietest_pairs(rounds), rpc.key, name),
                    "pooled": pooled_scaling(rounds, rpc.key, name),
                }
                for rpc in RPCS
                for name in executables
            },
        }
        report.write_json(args.json, document)
    return 0


def _print_settings(
    cores: int, generators: Sequence[Generator], brokers: Sequence[Broker], settings: Settings
) -> None:
    listed = ", ".join(f"workers={broker.workers} on {broker.address}" for broker in brokers)
    print(f"machine: {cores} cores; brokers: {listed}")
    for generator in generators:
        print(f"generator {generator.name}: {generator.setting} (at most {generator.max_cores} core(s))")
    print(
        f"warm-up {settings.warmup_s:g} s, {settings.duration_s:g} s measured per row; a call counts when it "
        "completes inside the measured window"
    )
    print(
        f"note: the generators share the machine's {cores} cores with the broker. limit: `machine` when the "
        f"broker's and the generator's cpu reach {SATURATED:.0%} of the cores (the machine, not the broker, "
        f"is the limit), `machine+others` when they do only with other processes' cpu, `generator` when the "
        f"generator reaches {SATURATED:.0%} of the cores it can use",
        flush=True,
    )


__all__ = ["Broker", "main", "measure_rounds", "measure_row", "metered_broker"]

if __name__ == "__main__":
    sys.exit(main())
