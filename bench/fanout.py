"""`python -m bench.fanout`: WatchToken fan-out, many streams over a cluster of replicas, through renewals.

The dev authority issues tokens of a short lifetime (`--lifetime`), so the replicas renew the one key every
0.4-0.6 of it; `--replicas` replicas run on one Redis (bench/cluster.py), the tenant's target warm. Watcher
processes (`--clients`) open `--streams` WatchToken streams in one burst, spread over the replicas, and a
separate process calls GetToken at a steady rate (`--rate`) all along. For each renewal the bench prints how
many streams got it, the delay after the first watcher saw it (p50/p99/max, goal p99 <= 100 ms) and GetToken's
latency while the renewal was being pushed (goal p99 <= 10 ms); then the replicas' memory per stream (RSS
before opening, with the streams open, after closing them, and after a second open-close cycle, which tells
memory that is reused from memory that leaks), and what happened to the opening burst (streams refused, and
with which status, CANCELLED ones). Every figure is printed next to its goal; the bench asserts nothing.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import signal
import sys
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench.cluster import Cluster, running_cluster
from bench.cpu import cpu_seconds, machine_busy_seconds
from bench.fanout_clients import Arrivals, Caller, Calls, Opened, WatcherPool
from bench.procs import SetupError
from bench.rows import progress
from bench.stack import ORGNR_PARENT, TARGET, TENANT, Services, TenantSpec, config_toml, running_services
from bench.stats import percentile_ms
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

GOAL_DELAY_P99_MS = 100.0
GOAL_GET_TOKEN_P99_MS = 10.0
_REFRESH_LATEST = 0.6  # of the lifetime: the latest a renewal comes (refresh_fraction + jitter_fraction)
_SETTLE_S = 3.0  # after closing the streams, before reading the replicas' memory


@dataclass
class Renewal:
    """One token pushed to the streams after they were all open."""

    streams: int  # streams that received it
    open_streams: int
    delays_ns: list[int]  # sorted: each receipt after the first watcher's
    first_ns: int
    last_ns: int
    replica_first_ns: list[int | None]  # each replica's first receipt after the first watcher's
    in_replica_ns: list[int]  # sorted: each receipt after the first watcher's on the same replica
    get_token: list[int] = field(default_factory=list)  # sorted latencies of GetToken calls started meanwhile
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per group during the push, and "wall"

    def as_json(self) -> dict[str, Any]:
        return {
            "cpu_s": {name: round(value, 3) for name, value in self.cpu_s.items()},
            "streams": self.streams,
            "open_streams": self.open_streams,
            "delay_ms": _quantiles(self.delays_ns),
            "replica_first_ms": [None if t is None else round(t / 1e6, 1) for t in self.replica_first_ns],
            "delay_within_replica_ms": _quantiles(self.in_replica_ns),
            "burst_ms": round((self.last_ns - self.first_ns) / 1e6, 1),
            "get_token_calls": len(self.get_token),
            "get_token_ms": _quantiles(self.get_token),
        }


@dataclass
class Cycle:
    """One open-close cycle of all the streams."""

    opened: list[Opened]
    rss_before_kib: list[int | None]
    rss_open_kib: list[int | None]
    began_ns: int
    ended_ns: int
    rss_closed_kib: list[int | None] = field(default_factory=list)
    get_token: list[int] = field(default_factory=list)  # sorted latencies of GetToken calls started meanwhile

    @property
    def asked(self) -> int:
        return sum(part.asked for part in self.opened)

    @property
    def open_streams(self) -> int:
        return sum(part.opened for part in self.opened)

    def failed(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for part in self.opened:
            for code, count in part.failed.items():
                total[code] = total.get(code, 0) + count
        return total

    def details(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for part in self.opened:
            for code, detail in part.details.items():
                found.setdefault(code, detail)
        return found

    def first_message_ns(self) -> list[int]:
        values = array("q")
        for part in self.opened:
            values.frombytes(part.first_message_ns)
        return sorted(values)

    def as_json(self) -> dict[str, Any]:
        return {
            "asked": self.asked,
            "opened": self.open_streams,
            "failed": self.failed(),
            "details": self.details(),
            "first_message_ms": _quantiles(self.first_message_ns()),
            "waited_s": round(max((part.waited_s for part in self.opened), default=0.0), 2),
            "rss_before_kib": self.rss_before_kib,
            "rss_open_kib": self.rss_open_kib,
            "rss_closed_kib": self.rss_closed_kib,
            "get_token_calls": len(self.get_token),
            "get_token_ms": _quantiles(self.get_token),
        }


class CpuTrace:
    """CPU seconds of groups of processes, sampled every `interval` s on a thread of its own, so that the
    cores each group used during a window found afterwards (a renewal's push) can be told."""

    def __init__(self, groups: dict[str, list[int]], interval: float = 0.02) -> None:
        self._groups = groups
        self._interval = interval
        self._at: list[int] = []
        self._seconds: dict[str, list[float]] = {name: [] for name in [*groups, "machine"]}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-trace", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            at = time.monotonic_ns()
            values = {name: cpu_seconds(pids) for name, pids in self._groups.items()}
            values["machine"] = machine_busy_seconds()
            if any(value is None for value in values.values()):
                continue
            self._at.append(at)
            for name, value in values.items():
                self._seconds[name].append(value or 0.0)

    def __enter__(self) -> CpuTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def seconds(self, start_ns: int, end_ns: int) -> dict[str, float]:
        """CPU seconds each group used from the last sample at or before `start_ns` to the first at or after
        `end_ns` (one interval wider than the window at most), and the window's length."""
        first = max(0, bisect.bisect_right(self._at, start_ns) - 1)
        last = min(len(self._at) - 1, bisect.bisect_left(self._at, end_ns))
        if last <= first:
            return {}
        used = {name: values[last] - values[first] for name, values in self._seconds.items()}
        used["wall"] = (self._at[last] - self._at[first]) / 1e9
        return used


def _quantiles(ordered: Sequence[int]) -> dict[str, float | None]:
    return {
        "p50": percentile_ms(ordered, 50.0),
        "p99": percentile_ms(ordered, 99.0),
        "max": ordered[-1] / 1e6 if ordered else None,
    }


def fanout_config(redis_url: str, services: Services) -> str:
    return config_toml(
        listen="127.0.0.1:0",  # each replica gets its own --listen
        workers=1,
        redis_url=redis_url,
        issuer=services.issuer,
        key_file=services.key_file.name,
        tenants=[TenantSpec(TENANT, ORGNR_PARENT, warm=True)],
    )


def channels_of(replicas: int, processes: int, per_channel: int, streams: int) -> list[list[int]]:
    """The replica of each channel of each watcher process: enough channels that none carries more than
    `per_channel` streams, a multiple of the replicas, spread over them in turn."""
    share = math.ceil(streams / processes)
    count = math.ceil(max(1, math.ceil(share / per_channel)) / replicas) * replicas
    return [[index % replicas for index in range(count)] for _ in range(processes)]


def shares_of(streams: int, processes: int) -> list[int]:
    return [streams // processes + (1 if index < streams % processes else 0) for index in range(processes)]


def _wait_token(cluster: Cluster, timeout: float) -> None:
    """Until every replica answers GetToken (the warm token is fetched and shared)."""
    request = pb.GetTokenRequest(tenant=TENANT, target=TARGET)
    deadline = time.monotonic() + timeout
    for address in cluster.addresses:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
            while True:
                try:
                    stub.GetToken(request, timeout=5)
                    break
                except grpc.RpcError as exc:
                    if time.monotonic() > deadline:
                        raise SetupError(f"no token from {address} within {timeout:.0f} s: {exc}") from exc
                    time.sleep(0.2)


@dataclass
class _Merged:
    first_ns: int
    last_ns: int
    count: int


def _merge(parts: Sequence[Arrivals]) -> dict[bytes, _Merged]:
    merged: dict[bytes, _Merged] = {}
    for part in parts:
        for key, first, last, count in zip(part.keys, part.first_ns, part.last_ns, part.counts, strict=True):
            known = merged.get(key)
            if known is None:
                merged[key] = _Merged(first, last, count)
            else:
                known.first_ns, known.last_ns = min(known.first_ns, first), max(known.last_ns, last)
                known.count += count
    return merged


def _wait_renewals(
    pool: WatcherPool, opened_at_ns: int, open_streams: int, wanted: int, timeout: float
) -> int:
    """Polls the watchers until `wanted` tokens first seen after the streams were open have reached every
    open stream (or stopped arriving for 3 s); answers how many did."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = time.monotonic_ns()
        renewals = [m for m in _merge(pool.poll()).values() if m.first_ns > opened_at_ns]
        done = sum(1 for m in renewals if m.count >= open_streams or now - m.last_ns > 3e9)
        if done >= wanted:
            return done
    return done


def _renewals(
    parts: Sequence[Arrivals], opened_at_ns: int, open_streams: int, replicas: int, calls: Calls | None
) -> list[Renewal]:
    times: dict[bytes, list[array[int]]] = {}
    for part in parts:
        for key, raw, where in zip(part.keys, part.times_ns, part.replicas, strict=True):
            per_replica = times.setdefault(key, [array("q") for _ in range(replicas)])
            instants = array("q")
            instants.frombytes(raw)
            for instant, replica in zip(instants, where, strict=True):
                per_replica[replica].append(instant)
    renewals = []
    for per_replica in times.values():
        received = [instant for values in per_replica for instant in values]
        first = min(received)
        if first <= opened_at_ns:
            continue  # the token every stream got when it opened
        last = max(received)
        firsts = [min(values) if values else None for values in per_replica]
        renewal = Renewal(
            len(received),
            open_streams,
            sorted(t - first for t in received),
            first,
            last,
            [None if f is None else f - first for f in firsts],
            sorted(
                t - f for values, f in zip(per_replica, firsts, strict=True) if f is not None for t in values
            ),
        )
        if calls is not None:
            renewal.get_token = _started_within(calls, first, last)
        renewals.append(renewal)
    return sorted(renewals, key=lambda renewal: renewal.first_ns)


def _quiet_get_token(calls: Calls, renewals: Sequence[Renewal], cycles: Sequence[Cycle]) -> list[int]:
    """GetToken latencies of calls started outside every renewal's push and opening burst (and a second
    after each)."""
    windows = [(r.first_ns, r.last_ns + 1_000_000_000) for r in renewals]
    windows += [(c.began_ns, c.ended_ns + 1_000_000_000) for c in cycles]
    return sorted(
        took
        for began, took in zip(calls.started_ns, calls.took_ns, strict=True)
        if not any(start <= began <= end for start, end in windows)
    )


def _per_stream_kib(
    after: Sequence[int | None], before: Sequence[int | None], streams: float
) -> float | None:
    pairs = [(a, b) for a, b in zip(after, before, strict=True) if a is not None and b is not None]
    if not pairs or streams <= 0:
        return None
    return sum(a - b for a, b in pairs) / len(pairs) / streams


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _goal(value: float | None, goal: float) -> str:
    if value is None:
        return "-"
    return "met" if value <= goal else "NOT met"


def _cycle(pool: WatcherPool, cluster: Cluster, shares: Sequence[int], timeout: float) -> Cycle:
    before = cluster.rss_kib()
    began = time.monotonic_ns()
    opened = pool.open(shares, timeout)
    ended = time.monotonic_ns()
    return Cycle(opened, before, cluster.rss_kib(), began, ended)


def _started_within(calls: Calls, start_ns: int, end_ns: int) -> list[int]:
    return sorted(
        took
        for began, took in zip(calls.started_ns, calls.took_ns, strict=True)
        if start_ns <= began <= end_ns
    )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    progress(
        f"starting the dev authority (tokens live {args.lifetime} s), Redis and {args.replicas} replicas"
    )
    with (
        running_services(token_lifetime=args.lifetime, prefix="broker-fanout-") as services,
        running_cluster(
            services, args.replicas, lambda url: fanout_config(url, services), name="fanout"
        ) as cluster,
    ):
        _wait_token(cluster, timeout=30)
        watch = pb.WatchTokenRequest(tenant=TENANT, target=TARGET).SerializeToString()
        get = pb.GetTokenRequest(tenant=TENANT, target=TARGET).SerializeToString()
        channels = channels_of(args.replicas, args.clients, args.per_channel, args.streams)
        shares = shares_of(args.streams, args.clients)
        progress(
            f"{args.clients} watcher processes x {len(channels[0])} channels; GetToken at "
            f"{args.rate:g}/s from another process"
        )
        with (
            WatcherPool(cluster.addresses, channels, watch) as pool,
            Caller(cluster.addresses, get, args.rate) as caller,
            CpuTrace(
                {
                    "replicas": cluster.server_pids(),
                    "watchers": pool.pids,
                    "caller": [caller.pid] if caller.pid is not None else [],
                    "redis": [cluster.redis.process.pid],
                    "sts": [cluster.authority.process.pid],
                }
            ) as trace,
        ):
            time.sleep(1.0)  # a quiet second of GetToken before the burst
            progress(f"opening {args.streams} WatchToken streams at once")
            first = _cycle(pool, cluster, shares, args.open_timeout)
            opened_at = time.monotonic_ns()
            progress(
                f"{first.open_streams} of {first.asked} open; waiting for {args.renewals} renewals "
                f"(every {0.4 * args.lifetime:g}-{_REFRESH_LATEST * args.lifetime:g} s)"
            )
            timeout = (args.renewals * _REFRESH_LATEST + 0.2) * args.lifetime + 30
            _wait_renewals(pool, opened_at, first.open_streams, args.renewals, timeout)
            arrivals = pool.close_streams()
            ended: dict[str, int] = {}
            for part in arrivals:
                for code, count in part.ended.items():
                    ended[code] = ended.get(code, 0) + count
            time.sleep(_SETTLE_S)
            first.rss_closed_kib = cluster.rss_kib()
            cycles = [first]
            for number in range(2, args.cycles + 1):
                progress(f"open-close cycle {number}: {args.streams} streams")
                again = _cycle(pool, cluster, shares, args.open_timeout)
                pool.close_streams()
                time.sleep(_SETTLE_S)
                again.rss_closed_kib = cluster.rss_kib()
                cycles.append(again)
            calls = caller.stop()
        renewals = _renewals(arrivals, opened_at, first.open_streams, args.replicas, calls)
        for renewal in renewals:
            renewal.cpu_s = trace.seconds(renewal.first_ns, renewal.last_ns)
        logs = cluster.log_summary()
        warnings = cluster.log_lines(" WARNING ") + cluster.log_lines(" ERROR ")
    quiet = _quiet_get_token(calls, renewals, cycles)
    for cycle in cycles:
        cycle.get_token = _started_within(calls, cycle.began_ns, cycle.ended_ns)
    return {
        "settings": {
            "streams": args.streams,
            "replicas": args.replicas,
            "clients": args.clients,
            "channels_per_client": len(channels[0]),
            "lifetime_s": args.lifetime,
            "rate_per_s": args.rate,
        },
        "renewals": [renewal.as_json() for renewal in renewals],
        "renewal_delays_ns": [renewal.delays_ns for renewal in renewals],
        "get_token": {
            "calls": len(calls.took_ns),
            "failed": calls.failed,
            "quiet_ms": _quantiles(quiet),
            "during_pushes_ms": _quantiles(sorted(t for r in renewals for t in r.get_token)),
        },
        "streams_ended_while_open": ended,
        "cycles": [cycle.as_json() for cycle in cycles],
        "log_summary": logs,
        "warnings_and_errors": warnings,
    }


def report_lines(document: dict[str, Any]) -> list[str]:
    settings = document["settings"]
    replicas = settings["replicas"]
    lines = [
        f"WatchToken fan-out: {settings['streams']} streams over {replicas} replicas, {settings['clients']} "
        f"watcher processes x {settings['channels_per_client']} channels, token lifetime "
        f"{settings['lifetime_s']} s, GetToken at {settings['rate_per_s']:g}/s",
        "",
        "renewals (delay: each stream's receipt after the first watcher's; GetToken: calls started while the "
        "renewal was being pushed)",
    ]
    delays: list[int] = []
    for number, (renewal, raw) in enumerate(
        zip(document["renewals"], document["renewal_delays_ns"], strict=True)
    ):
        delays += raw
        delay, get = renewal["delay_ms"], renewal["get_token_ms"]
        lines.append(
            f"  {number + 1}: {renewal['streams']}/{renewal['open_streams']} streams got it in "
            f"{renewal['burst_ms']:.0f} ms; delay p50 {_ms(delay['p50'])} ms, p99 {_ms(delay['p99'])} ms "
            f"(goal <= {GOAL_DELAY_P99_MS:g}: {_goal(delay['p99'], GOAL_DELAY_P99_MS)}), max "
            f"{_ms(delay['max'])} ms; GetToken {renewal['get_token_calls']} calls, p50 {_ms(get['p50'])} ms, "
            f"p99 {_ms(get['p99'])} ms (goal <= {GOAL_GET_TOKEN_P99_MS:g}: "
            f"{_goal(get['p99'], GOAL_GET_TOKEN_P99_MS)}), max {_ms(get['max'])} ms"
        )
        cpu = renewal["cpu_s"]
        if cpu:
            lines.append(
                f"     CPU during the push ({cpu['wall'] * 1e3:.0f} ms): replicas "
                f"{cpu['replicas'] * 1e3:.0f} ms "
                f"({cpu['replicas'] * 1e6 / max(1, renewal['streams']):.0f} us per stream), watchers "
                f"{cpu['watchers'] * 1e3:.0f} ms, GetToken caller {cpu['caller'] * 1e3:.0f} ms, redis "
                f"{cpu['redis'] * 1e3:.0f} ms; machine busy {cpu['machine'] / cpu['wall']:.2f} cores of "
                f"{os.cpu_count()}, of which others' {_others(cpu) / cpu['wall']:.2f}"
            )
        within = renewal["delay_within_replica_ms"]
        lines.append(
            "     each replica's first watcher after the first: "
            + ", ".join(_ms(value) for value in renewal["replica_first_ms"])
            + f" ms; delay after the same replica's first watcher p50 {_ms(within['p50'])} ms, p99 "
            f"{_ms(within['p99'])} ms, max {_ms(within['max'])} ms"
        )
    if not document["renewals"]:
        lines.append("  none seen: the streams were closed before a renewal reached them")
    pooled = _quantiles(sorted(delays))
    get_token = document["get_token"]
    during, quiet = get_token["during_pushes_ms"], get_token["quiet_ms"]
    lines += [
        f"  all renewals: delay p99 {_ms(pooled['p99'])} ms (goal <= {GOAL_DELAY_P99_MS:g}: "
        f"{_goal(pooled['p99'], GOAL_DELAY_P99_MS)}); GetToken during pushes p99 {_ms(during['p99'])} ms "
        f"(goal <= {GOAL_GET_TOKEN_P99_MS:g}: {_goal(during['p99'], GOAL_GET_TOKEN_P99_MS)}), at other "
        f"times p50 {_ms(quiet['p50'])} ms, p99 {_ms(quiet['p99'])} ms; GetToken calls failed: "
        + (", ".join(f"{code} {n}" for code, n in sorted(get_token["failed"].items())) or "none"),
        "",
        "opening bursts (all streams at once; goal: every stream open, or refused with a clear status)",
    ]
    for number, cycle in enumerate(document["cycles"]):
        failed = ", ".join(f"{code} {count}" for code, count in sorted(cycle["failed"].items())) or "none"
        first = cycle["first_message_ms"]
        lines.append(
            f"  {number + 1}: {cycle['opened']}/{cycle['asked']} open in {cycle['waited_s']:.1f} s (first "
            f"message p50 {_ms(first['p50'])} ms, p99 {_ms(first['p99'])} ms, max {_ms(first['max'])} ms); "
            f"failed: {failed}; CANCELLED {cycle['failed'].get('CANCELLED', 0)}; GetToken meanwhile "
            f"{cycle['get_token_calls']} calls, p99 {_ms(cycle['get_token_ms']['p99'])} ms"
        )
        for code, detail in sorted(cycle["details"].items()):
            lines.append(f"     {code}: {detail[:160]}")
    ended = document["streams_ended_while_open"]
    lines.append(
        "  streams that ended while open (before the bench closed them): "
        + (", ".join(f"{code} {count}" for code, count in sorted(ended.items())) or "none")
    )
    lines += ["", "memory per stream on the replicas (VmRSS; goal: given back after close)"]
    for number, cycle in enumerate(document["cycles"]):
        per_replica = cycle["opened"] / replicas
        held = _per_stream_kib(cycle["rss_open_kib"], cycle["rss_before_kib"], per_replica)
        kept = _per_stream_kib(cycle["rss_closed_kib"], cycle["rss_before_kib"], per_replica)
        lines.append(
            f"  cycle {number + 1}: RSS per replica before {_mib(cycle['rss_before_kib'])}, open "
            f"{_mib(cycle['rss_open_kib'])}, closed {_mib(cycle['rss_closed_kib'])}; per open stream "
            f"{_kib(held)}, kept after close {_kib(kept)}"
        )
    cycles = document["cycles"]
    if len(cycles) > 1:
        per_replica = cycles[-1]["opened"] / replicas
        growth = _per_stream_kib(cycles[-1]["rss_closed_kib"], cycles[0]["rss_closed_kib"], per_replica)
        lines.append(
            f"  growth per stream from cycle 1's close to cycle {len(cycles)}'s close: {_kib(growth)} "
            "(near 0: what cycle 1 kept is reused, not leaked)"
        )
    lines += ["", f"replicas' WARNING/ERROR log lines: {document['warnings_and_errors']}"]
    lines += [f"  {line}" for line in document["log_summary"]]
    return lines


def _others(cpu: dict[str, float]) -> float:
    """CPU seconds the machine spent beside the bench's own processes (someone else's work, steal time)."""
    ours = sum(value for name, value in cpu.items() if name not in ("machine", "wall"))
    return max(0.0, cpu["machine"] - ours)


def _mib(values: Sequence[int | None]) -> str:
    return "/".join("-" if value is None else f"{value / 1024:.0f}" for value in values) + " MiB"


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} KiB"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=10_000, help="WatchToken streams (default 10000)")
    parser.add_argument("--replicas", type=int, default=3, help="broker replicas (default 3)")
    parser.add_argument("--lifetime", type=int, default=30, help="token lifetime in s (default 30)")
    parser.add_argument("--renewals", type=int, default=3, help="renewals to measure (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="watcher processes (default 4)")
    parser.add_argument(
        "--per-channel", type=int, default=500, help="most streams on one channel (default 500)"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="GetToken calls/s meanwhile (default 200)")
    parser.add_argument("--cycles", type=int, default=2, help="open-close cycles (default 2)")
    parser.add_argument(
        "--open-timeout", type=float, default=60.0, help="s to wait for every stream's first message (60)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 300 streams, 2 replicas, 10 s tokens, 1 renewal"
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    return parser


def _problem(args: argparse.Namespace) -> str | None:
    for name in ("streams", "replicas", "renewals", "clients", "per_channel", "cycles"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be at least 1"
    if args.lifetime < 4:
        return "--lifetime must be at least 4 s"
    if args.rate <= 0 or args.open_timeout <= 0:
        return "--rate and --open-timeout must be above 0"
    return None


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the cleanup this one starts must not be cut short
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.streams, args.replicas, args.lifetime, args.renewals = 300, 2, 10, 1
        args.clients, args.cycles, args.rate = 2, 1, 50.0
    problem = _problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    try:
        document = measure(args)
    except SetupError as exc:
        print(f"bench: setup failed: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report_lines(document)), flush=True)
    if args.json is not None:
        document = {key: value for key, value in document.items() if key != "renewal_delays_ns"}
        args.json.write_text(json.dumps({"fanout": document}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
