"""`python -m bench --many-tenants`: many warm tenants on a cluster of replicas (see bench/README.md).

N tenants (distinct `orgnr_parent`, one multi-tenant client, one target, all `warm`) on R replicas on one
Redis, against the dev authority giving tokens of lifetime L, with `refresh_budget_per_s` B per replica:

(a) warm-up: how long until all N keys were fetched (and how many tokens Redis held), the STS requests/s;
(b) steady state: the STS requests/s the schedulers make over one refresh period after the warm-up, sampled
    every second, next to the expected N / (L x refresh_fraction), with the peak second;
(c) memory: each replica's RSS right after start, once all N keys were fetched, and after GetToken has been
    served for every tenant; the difference per 1,000 tenants;
(d) GetToken hits over random tenants across the replicas, next to the GetBrokerInfo ceiling of the same
    replicas, in alternating rounds.

Before the cluster starts, a short probe measures how many tokens per second the dev authority serves on
this machine to R fetching processes; when the warm-up's first seconds (every replica fetching distinct keys,
R x B requests/s) would ask for more than half of that, the default B is lowered and the output says so.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from bench import report
from bench.cluster import Cluster, count_keys, redis_memory, rss_kib, running_cluster
from bench.cpu import CpuMeter, cpu_seconds, machine_busy_seconds
from bench.load import ClientPool, Job, StsJob
from bench.rows import START_DELAY_NS, GrpcRow, progress, quietest, rounds_of, window
from bench.stack import (
    ORGNR_PARENT,
    STORE_KEY_ENV,
    TARGET,
    Services,
    TenantSpec,
    config_toml,
    running_services,
)
from bench.stats import Row, combine
from bench.warmcluster import channels_per_process, startup_spread_s, sts_delta
from broker.config import CacheSettings
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

_BUDGET_HEADROOM = 1.5  # the default budget: this many times the renewals per second the tenants need
# Of the probed capacity, what the warm-up's first seconds may ask for. Well below 1: a replica's fetch costs
# more CPU than the probe's (leases, Redis, the other replicas' reads), and the scheduler's budget limits the
# fetches it starts, not those in flight, so a warm-up above what the machine serves piles up requests.
_PROBE_SHARE = 0.5
_PROBE_CALLERS = 8  # fetching callers per probe process
_NO_PROBE_BELOW = 100.0  # requests/s: a warm-up asking for less needs no probe (any machine serves that)
_SATURATED_CORES = 0.9  # the dev authority is one Python process: one core is all it can use


@dataclass(frozen=True)
class Plan:
    tenants: int
    lifetime_s: int
    replicas: int
    budget: float  # per replica, as configured
    asked_budget: float
    refresh_fraction: float
    jitter_fraction: float
    steady_s: float | None = None  # the steady state's window, when not one refresh period

    @property
    def renewals_per_s(self) -> float:
        """What the tenants need: each token renewed once per lifetime x refresh_fraction."""
        return self.tenants / (self.lifetime_s * self.refresh_fraction)

    @property
    def spread_s(self) -> float:
        return startup_spread_s(self.tenants, self.budget)

    @property
    def window_s(self) -> float:
        if self.steady_s is not None:
            return max(5.0, self.steady_s)
        return max(5.0, self.lifetime_s * self.refresh_fraction)

    @property
    def expected_warmup_s(self) -> float:
        """The startup spread; with a budget below the renewals, longer: the first renewals come due after
        lifetime x (refresh_fraction - jitter_fraction) and take budget from the warm-up from then on."""
        first_renewals = self.lifetime_s * (self.refresh_fraction - self.jitter_fraction)
        cluster = self.replicas * self.budget  # a renewal spends one replica's budget
        if cluster >= self.renewals_per_s or self.spread_s <= first_renewals:
            return self.spread_s
        return self.spread_s + (self.spread_s - first_renewals) * min(1.0, self.renewals_per_s / cluster)

    def expected_duration_s(self, rows_s: float) -> float:
        start = 4.0 + self.tenants / 2500  # the replicas read and check the configuration in parallel
        return 12.0 + start + self.expected_warmup_s + 3.0 + self.window_s + rows_s + 4.0


@dataclass(frozen=True)
class Load:
    """The load generator's settings for rows (g)-(h)."""

    clients: int
    concurrency: int
    channels: int
    warmup_s: float
    duration_s: float
    repeat: int


def tenant_specs(count: int) -> list[TenantSpec]:
    width = max(5, len(str(count - 1)))
    return [TenantSpec(f"t{index:0{width}d}", f"{100_000_000 + index}", warm=True) for index in range(count)]


# --- sampling the cluster every second ---------------------------------------------------------------


@dataclass
class Tick:
    at: float  # time.monotonic()
    stats: dict[str, Any] | None  # the dev authority's /dev/stats
    cached: int | None  # tokens in Redis
    fetched: int | None  # keys fetched at least once (fence keys in Redis)
    cpu: dict[str, float | None]  # CPU seconds so far: sts, replicas, redis, machine (all cores busy)

    def counter(self, name: str) -> int | None:
        value = None if self.stats is None else self.stats.get(name)
        return value if isinstance(value, int) else None


class Sampler:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def tick(self, *, count_fetched: bool = False) -> Tick:
        cluster = self._cluster
        cpu = {
            "sts": cpu_seconds([cluster.authority.process.pid]),
            "replicas": cpu_seconds(cluster.server_pids()),
            "redis": cpu_seconds([cluster.redis.process.pid]),
            "machine": machine_busy_seconds(),
        }
        fetched = cluster.fetched_keys() if count_fetched else None
        return Tick(time.monotonic(), cluster.sts_stats(), cluster.cached_tokens(), fetched, cpu)


@dataclass
class Series:
    """Per-interval figures between consecutive ticks."""

    ticks: list[Tick] = field(default_factory=list)

    def rates(self, name: str) -> list[float]:
        out = []
        for before, after in zip(self.ticks, self.ticks[1:], strict=False):
            a, b = before.counter(name), after.counter(name)
            if a is not None and b is not None and after.at > before.at:
                out.append((b - a) / (after.at - before.at))
        return out

    def cores(self, group: str) -> list[float]:
        out = []
        for before, after in zip(self.ticks, self.ticks[1:], strict=False):
            a, b = before.cpu.get(group), after.cpu.get(group)
            if a is not None and b is not None and after.at > before.at:
                out.append((b - a) / (after.at - before.at))
        return out

    def total(self, name: str) -> int | None:
        if len(self.ticks) < 2:
            return None
        a, b = self.ticks[0].counter(name), self.ticks[-1].counter(name)
        return None if a is None or b is None else b - a

    @property
    def seconds(self) -> float:
        return self.ticks[-1].at - self.ticks[0].at if len(self.ticks) > 1 else 0.0


def _every_second(sampler: Sampler, series: Series, until: float, *, stop_when_fetched: int | None) -> None:
    next_at = series.ticks[-1].at + 1.0 if series.ticks else time.monotonic()
    while True:
        time.sleep(max(0.0, next_at - time.monotonic()))
        tick = sampler.tick(count_fetched=stop_when_fetched is not None)
        series.ticks.append(tick)
        if stop_when_fetched is not None and (tick.fetched or 0) >= stop_when_fetched:
            return
        if tick.at >= until:
            return
        next_at = min(next_at + 1.0, until)


# --- the STS capacity probe --------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    processes: int
    callers: int
    tokens_per_s: float
    sts_cores: float | None
    client_cores: float | None
    errors: int

    def as_json(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "callers_per_process": self.callers,
            "tokens_per_s": round(self.tokens_per_s, 1),
            "sts_cores": _round(self.sts_cores),
            "client_cores": _round(self.client_cores),
            "errors": self.errors,
        }


def probe_sts(services: Services, processes: int, seconds: float) -> Probe:
    """Direct client-credentials fetches from `processes` processes (as R replicas fetching distinct keys
    at the warm-up's start would make them): tokens per second the dev authority serves on this machine."""
    config = services.workdir / "probe.toml"
    config.write_text(
        config_toml(
            listen="127.0.0.1:0",
            workers=1,
            redis_url=services.redis.url,
            issuer=services.issuer,
            key_file=services.key_file.name,
            tenants=[TenantSpec("probe", ORGNR_PARENT)],
        ),
        encoding="utf-8",
    )
    environ = {STORE_KEY_ENV: services.store_key}
    with ClientPool([], processes, 0) as pool:
        span = window(0.5, seconds)
        job = StsJob(str(config), environ, "probe", TARGET, _PROBE_CALLERS, *span)
        jobs: list[Job | None] = [job] * processes
        meter = CpuMeter({"sts": [services.authority.process.pid], "clients": pool.pids})
        pool.send(jobs)
        time.sleep(max(0.0, (span[1] - time.monotonic_ns()) / 1e9))
        meter.start()
        time.sleep(max(0.0, (span[2] - time.monotonic_ns()) / 1e9))
        cores = meter.cores(seconds)
        row = combine("probe", "probe", seconds, pool.collect(jobs, timeout=seconds + 60))
    return Probe(
        processes, _PROBE_CALLERS, row.calls_per_s, cores.get("sts"), cores.get("clients"), row.errors
    )


def choose_budget(asked: float, replicas: int, capacity: float) -> float:
    """`asked`, or lower: at the warm-up's start each replica fetches distinct keys at its budget, so the
    STS gets up to replicas x budget requests per second; keep that within a share of the probed
    `capacity` (tokens/s)."""
    limit = math.floor(_PROBE_SHARE * capacity / replicas)
    return asked if asked <= limit else float(max(1, limit))


def _baseline_rss(services: Services) -> int | None:
    """RSS of a replica with one tenant and nothing warm: what the broker takes before any tenant."""

    def config(url: str) -> str:
        return config_toml(
            listen="127.0.0.1:0",
            workers=1,
            redis_url=url,
            issuer=services.issuer,
            key_file=services.key_file.name,
            tenants=[TenantSpec("baseline", ORGNR_PARENT)],
        )

    with running_cluster(services, 1, config, name="baseline", redis_db=2) as cluster:
        time.sleep(1.0)
        return rss_kib(cluster.server_pids()[0])


# --- the run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, machine: dict[str, Any], *, duration: float, warmup: float) -> int:
    defaults = CacheSettings()
    need = args.tenants / (args.lifetime * defaults.refresh_fraction)
    asked = float(args.budget) if args.budget is not None else float(math.ceil(_BUDGET_HEADROOM * need))
    clients, concurrency = args.clients or 2, args.concurrency or 32
    rows_s = args.repeat * 2 * (warmup + duration + START_DELAY_NS / 1e9 + 0.3) + 3
    plan = Plan(
        args.tenants,
        args.lifetime,
        args.replicas,
        asked,
        asked,
        defaults.refresh_fraction,
        defaults.jitter_fraction,
        args.steady,
    )
    print(
        f"machine: {machine['nproc']} cores (nproc), {machine['cpu']}, Python {machine['python']}", flush=True
    )
    print(
        f"many tenants: {plan.tenants} tenants (one multi-tenant client, target {TARGET!r}, all warm) on "
        f"{plan.replicas} replicas; token lifetime {plan.lifetime_s} s; refresh at "
        f"{plan.refresh_fraction:g} +/- {plan.jitter_fraction:g} of the lifetime; the tenants need "
        f"{need:.1f} renewals/s; budget asked: {asked:g} requests/s per replica",
        flush=True,
    )
    print(
        f"expected duration: about {_minutes(plan.expected_duration_s(rows_s))} (with this budget; more if "
        f"the probe below lowers it)",
        flush=True,
    )
    document: dict[str, Any] = {"machine": machine, "mode": "many_tenants"}
    with running_services(token_lifetime=plan.lifetime_s, prefix="broker-bench-tenants-") as services:
        probe = None
        budget = asked
        if plan.replicas * asked > _NO_PROBE_BELOW:
            progress(
                f"probing the dev authority: {plan.replicas} processes x {_PROBE_CALLERS} fetching callers"
            )
            probe = probe_sts(services, plan.replicas, 1.0 if args.quick else 2.0)
            safe = choose_budget(asked, plan.replicas, probe.tokens_per_s)
            budget = asked if args.budget is not None else safe
        plan = Plan(
            plan.tenants,
            plan.lifetime_s,
            plan.replicas,
            budget,
            asked,
            plan.refresh_fraction,
            plan.jitter_fraction,
            plan.steady_s,
        )
        _print_probe(probe, plan)
        if plan.budget != plan.asked_budget:
            print(f"expected duration now: about {_minutes(plan.expected_duration_s(rows_s))}", flush=True)
        baseline = None
        if not args.quick:
            progress("measuring a replica with one tenant (baseline memory)")
            baseline = _baseline_rss(services)
        load = Load(clients, concurrency, args.channels, warmup, duration, args.repeat)
        figures = _measure(services, plan, load)
    figures["baseline_rss_kib"] = baseline
    document["many_tenants"] = {
        "plan": {
            "tenants": plan.tenants,
            "lifetime_s": plan.lifetime_s,
            "replicas": plan.replicas,
            "budget_asked_per_s": plan.asked_budget,
            "budget_per_s": plan.budget,
            "refresh_fraction": plan.refresh_fraction,
            "jitter_fraction": plan.jitter_fraction,
            "needed_renewals_per_s": round(plan.renewals_per_s, 2),
            "startup_spread_s": round(plan.spread_s, 2),
            "expected_warmup_s": round(plan.expected_warmup_s, 1),
            "window_s": plan.window_s,
            "clients": clients,
            "concurrency": concurrency,
            "duration_s": duration,
            "warmup_s": warmup,
            "repeat": args.repeat,
        },
        "probe": None if probe is None else probe.as_json(),
        **figures,
    }
    _print_memory(document["many_tenants"], plan)
    if args.json is not None:
        report.write_json(args.json, document)
    return 0


def _measure(services: Services, plan: Plan, load: Load) -> dict[str, Any]:
    tenants = tenant_specs(plan.tenants)

    def config(url: str) -> str:
        return config_toml(
            listen="127.0.0.1:0",
            workers=1,
            redis_url=url,
            issuer=services.issuer,
            key_file=services.key_file.name,
            tenants=tenants,
            cache={"refresh_budget_per_s": plan.budget},
        )

    figures: dict[str, Any] = {}
    before = services.sts_stats()
    redis_before = redis_memory(services.redis.url)
    progress(f"starting {plan.replicas} replicas with {plan.tenants} warm tenants")
    with running_cluster(
        services, plan.replicas, config, name="tenants", metrics=True, start_timeout=120
    ) as cluster:
        sampler = Sampler(cluster)
        series = Series([sampler.tick(count_fetched=True)])
        rss_start = cluster.rss_kib()
        cached_at_start = series.ticks[0].cached
        start_s = cluster.serving_at - cluster.spawned_at
        progress(
            f"warm-up: waiting until all {plan.tenants} keys were fetched (expected ~"
            f"{plan.expected_warmup_s:.0f} s)"
        )
        deadline = cluster.serving_at + 1.5 * plan.expected_warmup_s + 20
        _every_second(sampler, series, deadline, stop_when_fetched=plan.tenants)
        warm = _warmup_figures(
            series, plan, before=before, cluster=cluster, start_s=start_s, cached_at_start=cached_at_start
        )
        figures["warmup"] = warm
        _print_warmup(warm, plan)

        # Every replica's scheduler has gone through all its warm routes once its startup spread is over.
        settle_until = cluster.serving_at + plan.spread_s + 2.0
        time.sleep(max(0.0, settle_until - time.monotonic()))
        rss_full = cluster.rss_kib()
        redis_full = redis_memory(cluster.redis_url)

        progress(f"steady state: sampling the dev authority every second for {plan.window_s:g} s")
        steady = Series([sampler.tick()])
        _every_second(sampler, steady, steady.ticks[0].at + plan.window_s, stop_when_fetched=None)
        figures["steady"] = _steady_figures(steady, plan)
        _print_steady(figures["steady"], plan)

        served_before = cluster.served_by_source()
        rounds = _rows(cluster, plan, tenants, load)
        served = _served_delta(served_before, cluster.served_by_source())
        figures["get_token_served_by_source"] = served
        if served:
            total = sum(served.values()) or 1.0
            shares = ", ".join(f"{source} {count / total:.1%}" for source, count in sorted(served.items()))
            print(f"GetToken answers during rows (h), by where the token came from: {shares}", flush=True)
        rss_rows = cluster.rss_kib()
        figures["rows"] = [row.as_json() for row in quietest(rounds)]
        figures["rounds"] = [[row.as_json() for row in run] for run in rounds]
        figures["pooled_ratio"] = report.pooled_ratio(rounds, "get_token")
        _print_rows(rounds, plan)
        figures["memory"] = {
            "rss_start_kib": rss_start,
            "tokens_in_redis_at_start": cached_at_start,
            "rss_all_fetched_kib": rss_full,
            "rss_after_rows_kib": rss_rows,
            "redis_used_memory_before": redis_before,
            "redis_used_memory_all_fetched": redis_full,
            "redis_used_memory_end": redis_memory(cluster.redis_url),
            "redis_keys_end": count_keys(cluster.redis_url, "broker:v1:*"),
        }
        figures["replica_log_warnings"] = cluster.log_lines(" WARNING ")
        figures["replica_log_errors"] = cluster.log_lines(" ERROR ")
        figures["replica_log_top"] = cluster.log_summary()
        figures["run_sts"] = sts_delta(before, services.sts_stats())
    return figures


def _served_delta(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    return {source: after[source] - before.get(source, 0.0) for source in after}


def _warmup_figures(
    series: Series,
    plan: Plan,
    *,
    before: dict[str, Any] | None,
    cluster: Cluster,
    start_s: float,
    cached_at_start: int | None,
) -> dict[str, Any]:
    last = series.ticks[-1]
    full = (last.fetched or 0) >= plan.tenants
    seconds = last.at - cluster.serving_at
    cached = [tick.cached for tick in series.ticks if tick.cached is not None]
    totals = sts_delta(before, last.stats)
    requests = totals["token_requests"]
    sts_cores = series.cores("sts")
    saturated = sum(1 for value in sts_cores if value >= _SATURATED_CORES)
    return {
        "all_fetched": full,
        "keys_fetched": last.fetched,
        "tokens_in_redis_at_end": last.cached,
        "tokens_in_redis_max": max(cached, default=None),
        "tokens_at_serving": cached_at_start,
        "start_s": round(start_s, 2),
        "seconds_after_serving": round(seconds, 1),
        "expected_s": round(plan.expected_warmup_s, 1),
        "sts": totals,
        "requests_per_s": None if requests is None or seconds <= 0 else round(requests / seconds, 1),
        "peak_requests_per_s": _round(max(series.rates("token_requests"), default=None)),
        "requests_per_s_each_second": [round(value, 1) for value in series.rates("token_requests")],
        "sts_cores_mean": _round(_mean(sts_cores)),
        "sts_cores_peak": _round(max(sts_cores, default=None)),
        "sts_saturated_seconds": saturated,
        "replica_cores_mean": _round(_mean(series.cores("replicas"))),
        "machine_cores_mean": _round(_mean(series.cores("machine"))),
    }


def _steady_figures(series: Series, plan: Plan) -> dict[str, Any]:
    rates = series.rates("token_requests")
    issued = series.total("tokens_issued")
    requests = series.total("token_requests")
    seconds = series.seconds
    per_10s = [round(_mean(rates[index : index + 10]) or 0.0, 1) for index in range(0, len(rates), 10)]
    sts_cores = series.cores("sts")
    cached = [tick.cached for tick in series.ticks if tick.cached is not None]
    return {
        "seconds": round(seconds, 1),
        "token_requests": requests,
        "tokens_issued": issued,
        "nonce_challenges": series.total("nonce_challenges"),
        "requests_per_s": None if requests is None or seconds <= 0 else round(requests / seconds, 1),
        "issued_per_s": None if issued is None or seconds <= 0 else round(issued / seconds, 1),
        "expected_per_s": round(plan.renewals_per_s, 1),
        "peak_per_s": _round(max(rates, default=None)),
        "p90_per_s": _round(_quantile(rates, 0.9)),
        "median_per_s": _round(_quantile(rates, 0.5)),
        "per_10s_mean": per_10s,
        "requests_per_s_each_second": [round(value, 1) for value in rates],
        "sts_cores_mean": _round(_mean(sts_cores)),
        "sts_cores_peak": _round(max(sts_cores, default=None)),
        "replica_cores_mean": _round(_mean(series.cores("replicas"))),
        "redis_cores_mean": _round(_mean(series.cores("redis"))),
        "tokens_in_redis_min": min(cached, default=None),
        "replica_cpu_s": _round(_cpu_spent(series, "replicas")),
        "replica_cpu_ms_per_renewal": _round(
            None
            if not issued or _cpu_spent(series, "replicas") is None
            else 1000 * (_cpu_spent(series, "replicas") or 0.0) / issued
        ),
        "peak_over_mean": _round(
            None if not requests or seconds <= 0 or not rates else max(rates) / (requests / seconds)
        ),
    }


def _cpu_spent(series: Series, group: str) -> float | None:
    """CPU seconds the group used between the first and the last tick."""
    if len(series.ticks) < 2:
        return None
    first, last = series.ticks[0].cpu.get(group), series.ticks[-1].cpu.get(group)
    return None if first is None or last is None else last - first


def _rows(cluster: Cluster, plan: Plan, tenants: Sequence[TenantSpec], load: Load) -> list[list[Row]]:
    for problem in _check_answers(cluster, tenants):
        print(f"check before the rows: {problem}", flush=True)
    order = [pb.GetTokenRequest(tenant=tenant.name, target=TARGET).SerializeToString() for tenant in tenants]
    random.shuffle(order)
    label = f"{plan.replicas} replicas"
    specs = [
        GrpcRow(
            "ceiling",
            f"(g) GetBrokerInfo ceiling, {label}",
            "GetBrokerInfo",
            pb.GetBrokerInfoRequest().SerializeToString(),
        ),
        GrpcRow(
            "get_token",
            f"(h) GetToken, random of {plan.tenants} tenants",
            "GetToken",
            order[0],
            payloads=tuple(order),
        ),
    ]
    channels = channels_per_process(load.channels, plan.replicas)
    with ClientPool(cluster.addresses, load.clients, channels) as pool:
        return rounds_of(
            cluster,
            pool,
            specs,
            repeat=load.repeat,
            processes=load.clients,
            concurrency=load.concurrency,
            warmup_s=load.warmup_s,
            duration_s=load.duration_s,
        )


def _check_answers(cluster: Cluster, tenants: Sequence[TenantSpec]) -> list[str]:
    """A typed GetToken for a few random tenants on every replica: DPoP tokens, each tenant its own. Returns
    what went wrong (a cluster that fell behind may answer UNAVAILABLE: reported, not fatal)."""
    problems = []
    picked = random.sample(list(tenants), min(3, len(tenants)))
    for address in cluster.addresses:
        seen, answered = set(), 0
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
            for tenant in picked:
                try:
                    answer = stub.GetToken(pb.GetTokenRequest(tenant=tenant.name, target=TARGET), timeout=30)
                except grpc.RpcError as exc:
                    code = exc.code().name if isinstance(exc, grpc.Call) else "?"
                    details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
                    problems.append(f"GetToken({tenant.name}) on {address}: {code}: {details}")
                    continue
                if answer.access_token.token_type != pb.TOKEN_TYPE_DPOP:
                    problems.append(f"GetToken({tenant.name}) on {address}: not a DPoP token")
                seen.add(answer.access_token.token)
                answered += 1
        if len(seen) < answered:
            problems.append(f"{address} returned the same token for different tenants")
    return problems


# --- printing ----------------------------------------------------------------------------------------


def _print_probe(probe: Probe | None, plan: Plan) -> None:
    peak = plan.replicas * plan.asked_budget
    if probe is None:
        print(
            f"budget: {plan.budget:g} requests/s per replica (the warm-up asks for at most {peak:g}/s: "
            f"no probe of the dev authority needed)"
        )
        sys.stdout.flush()
        return
    print(
        f"STS probe: {probe.processes} processes x {probe.callers} callers fetching directly got "
        f"{probe.tokens_per_s:.0f} tokens/s (dev authority cpu {_c(probe.sts_cores)}, fetching processes "
        f"{_c(probe.client_cores)}; errors {probe.errors})"
    )
    limit = _PROBE_SHARE * probe.tokens_per_s
    if plan.budget < plan.asked_budget:
        print(
            f"budget LOWERED from {plan.asked_budget:g} to {plan.budget:g} requests/s per replica: the "
            f"warm-up starts with every replica fetching distinct keys, up to {plan.replicas} x "
            f"{plan.asked_budget:g} = {peak:g} requests/s, more than this machine serves the replicas and "
            f"the dev authority ({_PROBE_SHARE:.0%} of the probe: {limit:.0f}/s)"
        )
    elif plan.replicas * plan.budget > limit:
        print(
            f"WARNING: --budget {plan.budget:g} kept as given, though the warm-up's first seconds ask for "
            f"{plan.replicas * plan.budget:g}/s, more than {_PROBE_SHARE:.0%} of the probe ({limit:.0f}/s): "
            f"expect the replicas to fall behind their own fetches"
        )
    else:
        print(
            f"budget: {plan.budget:g} requests/s per replica (the warm-up's first seconds ask for up to "
            f"{peak:g}/s, within {_PROBE_SHARE:.0%} of the probe)"
        )
    # A renewal spends the budget of one replica only (the earliest; the others have its notice by then), so
    # the cluster renews up to replicas x budget per second.
    if plan.replicas * plan.budget < plan.renewals_per_s:
        print(
            f"note: {plan.replicas} x {plan.budget:g}/s is below the {plan.renewals_per_s:.1f} renewals/s "
            f"the tenants need: the schedulers cannot keep every token fresh, and (b) shows by how much "
            f"(a budget that covers the renewals would overload the warm-up on this machine)"
        )
    sys.stdout.flush()


def _print_warmup(warm: dict[str, Any], plan: Plan) -> None:
    sts = warm["sts"]
    state = "all" if warm["all_fetched"] else f"only {_n(warm['keys_fetched'])} of"
    print()
    print(
        f"(a) warm-up: {state} {plan.tenants} keys fetched {warm['seconds_after_serving']:.1f} s after the "
        f"replicas were SERVING (they took {warm['start_s']:.1f} s to start, {_n(warm['tokens_at_serving'])} "
        f"tokens cached by then); expected ~{warm['expected_s']:.0f} s (each replica spreads its first "
        f"fetches over max(10 s, tenants / budget), renewals share the budget); tokens in Redis then: "
        f"{_n(warm['tokens_in_redis_at_end'])}, at most {_n(warm['tokens_in_redis_max'])} at once"
    )
    print(
        f"    STS: {_n(sts['token_requests'])} token requests ({_n(sts['tokens_issued'])} tokens issued, "
        f"{_n(sts['nonce_challenges'])} nonce challenges), {_f1(warm['requests_per_s'])}/s on average, "
        f"peak {_f1(warm['peak_requests_per_s'])}/s in one second; budget {plan.budget:g}/s per replica"
    )
    print(
        f"    cpu: dev authority {_c(warm['sts_cores_mean'])} mean, {_c(warm['sts_cores_peak'])} peak "
        f"({warm['sts_saturated_seconds']} s at >= {_SATURATED_CORES:g} core); replicas "
        f"{_c(warm['replica_cores_mean'])}; whole machine {_c(warm['machine_cores_mean'])}"
    )
    if warm["sts_saturated_seconds"] >= 3:
        print(
            f"    note: the dev authority was saturated for {warm['sts_saturated_seconds']} s: the warm-up "
            f"time is partly its limit on this machine (rerun with a lower --budget)"
        )
    first = warm["requests_per_s_each_second"][:12]
    print(f"    STS requests/s, first seconds: {', '.join(f'{value:.0f}' for value in first)}")
    sys.stdout.flush()


def _print_steady(steady: dict[str, Any], plan: Plan) -> None:
    print()
    print(
        f"(b) steady state over {steady['seconds']:.0f} s after the warm-up ("
        + ("--steady" if plan.steady_s is not None else "one refresh period, lifetime x refresh_fraction")
        + "), the dev authority's counters sampled every second:"
    )
    lines = [
        ["STS token requests/s", _f1(steady["requests_per_s"]), _f1(steady["expected_per_s"])],
        ["tokens issued/s", _f1(steady["issued_per_s"]), _f1(steady["expected_per_s"])],
        ["peak second", _f1(steady["peak_per_s"]), ""],
        ["90th percentile second", _f1(steady["p90_per_s"]), ""],
        ["median second", _f1(steady["median_per_s"]), ""],
    ]
    print(
        report.plain_table(
            ["", "measured", f"expected N/(L x {plan.refresh_fraction:g})"],
            [["    " + line[0], *line[1:]] for line in lines],
        )
    )
    print(f"    mean per 10 s: {', '.join(f'{value:.0f}' for value in steady['per_10s_mean'])}")
    print(
        f"    nonce challenges {_n(steady['nonce_challenges'])}; tokens in Redis never below "
        f"{_n(steady['tokens_in_redis_min'])} of {plan.tenants}; cpu: dev authority "
        f"{_c(steady['sts_cores_mean'])} mean, {_c(steady['sts_cores_peak'])} peak; replicas "
        f"{_c(steady['replica_cores_mean'])}; Redis {_c(steady['redis_cores_mean'])}"
    )
    print(
        f"    broker CPU per renewal: {_f2(steady['replica_cpu_ms_per_renewal'])} ms (goal <= 1 ms: the "
        f"replicas' CPU seconds over the window, {_f1(steady['replica_cpu_s'])} s, / tokens issued, "
        f"the STS's own excluded); peak second / mean: {_f2(steady['peak_over_mean'])} (goal <= 1.5)"
    )
    sys.stdout.flush()


def _print_rows(rounds: list[list[Row]], plan: Plan) -> None:
    rows = list(quietest(rounds))
    print()
    print(
        f"(d) GetToken over random tenants, spread over the {plan.replicas} replicas, next to their ceiling "
        f"(STS reqs: the renewals during the row, the schedulers' and the callers' misses):"
    )
    print(report.table(rows))
    print(
        f"GetToken (random of {plan.tenants} tenants) / ceiling: {_f2(report.ratio(rows, 'get_token'))} "
        f"(goal >= 0.9)"
        + (
            f"; pooled over {len(rounds)} rounds: {_f2(report.pooled_ratio(rounds, 'get_token'))}"
            if len(rounds) > 1
            else ""
        )
    )
    for row in rows:
        if row.errors:
            print(f"{row.label}: {row.errors} errors, first: {row.first_error}")
    sys.stdout.flush()


def _print_memory(figures: dict[str, Any], plan: Plan) -> None:
    memory = figures["memory"]
    start, full, after = memory["rss_start_kib"], memory["rss_all_fetched_kib"], memory["rss_after_rows_kib"]
    lines = []
    for index in range(plan.replicas):
        per_1000 = _per_1000(start[index], full[index], plan.tenants)
        per_1000_rows = _per_1000(start[index], after[index], plan.tenants)
        lines.append(
            [
                f"    replica {index}",
                _mib(start[index]),
                _mib(full[index]),
                _mib(after[index]),
                per_1000,
                per_1000_rows,
            ]
        )
    print()
    print(
        f"(c) memory per replica (VmRSS; a replica with one tenant: {_mib(figures.get('baseline_rss_kib'))}; "
        f"{_n(memory['tokens_in_redis_at_start'])} tokens were cached at the first figure):"
    )
    print(
        report.plain_table(
            [
                "",
                "after start",
                f"all {plan.tenants} fetched",
                "after GetToken rows",
                "per 1,000 tenants",
                "per 1,000 after rows",
            ],
            lines,
        )
    )
    redis_before, redis_full = memory["redis_used_memory_before"], memory["redis_used_memory_all_fetched"]
    if redis_before is not None and redis_full is not None:
        added = redis_full - redis_before
        per_1000 = added / plan.tenants * 1000 / 2**20
        print(
            f"    Redis used_memory: {redis_full / 2**20:.1f} MiB once all {plan.tenants} keys were fetched, "
            f"{added / 2**20:.1f} MiB more than before the cluster: {per_1000:.2f} MiB per 1,000 tokens "
            f"(sealed token and fence keys)"
        )
    run_sts = figures["run_sts"]
    print(
        f"whole run: {_n(run_sts['token_requests'])} STS token requests, {_n(run_sts['tokens_issued'])} "
        f"tokens issued; replica logs: {figures['replica_log_warnings']} warnings, "
        f"{figures['replica_log_errors']} errors"
    )
    for line in figures["replica_log_top"]:
        print(f"  {line}")
    sys.stdout.flush()


def _per_1000(before: int | None, after: int | None, tenants: int) -> str:
    if before is None or after is None:
        return "-"
    return f"{(after - before) / tenants * 1000 / 1024:.2f} MiB"


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min ({seconds:.0f} s)"


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _c(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _f1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _f2(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
