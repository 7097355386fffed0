"""Rows (e) and (f): a warm cluster of replicas on one Redis, loaded over all of them.

`replicas` processes of `python -m broker run --listen ...` with `workers = 1` each share a fresh Redis
database and the store key; the tenant's target is `warm`, so every replica's scheduler fetches it at start.
The dev authority's counters show how many token requests the whole cluster made while starting: one per
key (plus, on a fresh Redis, one DPoP nonce challenge), not one per replica. Then the ceiling and GetToken
hits alternate in rounds, with the load clients' channels spread evenly over the replicas.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass
from typing import Any

import grpc

from bench import report
from bench.cluster import Cluster, running_cluster
from bench.load import ClientPool
from bench.procs import SetupError
from bench.rows import GrpcRow, progress, quietest, rounds_of
from bench.stack import ORGNR_PARENT, TARGET, TENANT, Services, TenantSpec, config_toml
from bench.stats import Row
from broker.config import CacheSettings
from broker.tokens.scheduler import RefreshScheduler
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

REDIS_DB = 1  # a database of its own: the single broker's rows left their token (same store key) in 0
_STS_COUNTERS = ("token_requests", "tokens_issued", "nonce_challenges")


def startup_spread_s(warm_routes: int, budget_per_s: float) -> float:
    """How long a replica's scheduler spreads its first fetches over (see RefreshScheduler.start_warm)."""
    default = inspect.signature(RefreshScheduler).parameters["startup_spread"].default
    return max(float(default.total_seconds()), warm_routes / budget_per_s)


def channels_per_process(channels: int, replicas: int) -> int:
    """At least `channels`, rounded up to a multiple of `replicas`: each replica gets as many connections."""
    return math.ceil(channels / replicas) * replicas


def sts_delta(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, int | None]:
    """The dev authority's counters between two /dev/stats snapshots."""
    result: dict[str, int | None] = {}
    for name in _STS_COUNTERS:
        ok = before is not None and after is not None and name in before and name in after
        result[name] = int(after[name]) - int(before[name]) if ok and before and after else None
    return result


@dataclass
class ClusterResult:
    replicas: int
    channels: int
    start_s: float  # spawn to every replica SERVING
    first_token_s: float | None  # spawn to the warm token in Redis
    setup_sts: dict[str, int | None]  # token requests etc. from spawn until every scheduler's window passed
    run_sts: dict[str, int | None]  # ... and over the whole cluster run, rows included
    rows: list[Row]
    rounds: list[list[Row]]
    same_token_everywhere: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "replicas": self.replicas,
            "channels_per_client_process": self.channels,
            "start_s": round(self.start_s, 2),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 2),
            "warm_keys": 1,
            "setup_sts": self.setup_sts,
            "run_sts": self.run_sts,
            "same_token_on_every_replica": self.same_token_everywhere,
            "rows": [row.as_json() for row in self.rows],
            "rounds": [[row.as_json() for row in run] for run in self.rounds],
            "round_ratios": [report.ratio(run, "get_token") for run in self.rounds],
            "pooled_ratio": report.pooled_ratio(self.rounds, "get_token"),
        }


def cluster_config(redis_url: str, services: Services) -> str:
    return config_toml(
        listen="127.0.0.1:0",  # each replica gets its own --listen
        workers=1,
        redis_url=redis_url,
        issuer=services.issuer,
        key_file=services.key_file.name,
        tenants=[TenantSpec(TENANT, ORGNR_PARENT, warm=True)],
    )


def measure(
    services: Services,
    *,
    replicas: int,
    clients: int,
    concurrency: int,
    channels: int,
    warmup_s: float,
    duration_s: float,
    repeat: int,
) -> ClusterResult:
    progress(f"starting a warm cluster: {replicas} replicas on one Redis, tenant {TENANT!r} warm")
    before = services.sts_stats()
    with running_cluster(
        services, replicas, lambda url: cluster_config(url, services), name="cluster", redis_db=REDIS_DB
    ) as cluster:
        start_s = cluster.serving_at - cluster.spawned_at
        # Every replica's scheduler fetches its warm routes within the startup spread after it serves: only
        # once that has passed on all of them do the counters show whether they fetched once or once each.
        spread = startup_spread_s(1, CacheSettings().refresh_budget_per_s)
        first_token_s = _wait_first_token(cluster, timeout=spread + 30)
        progress(f"waiting for the replicas' warm-up window ({spread:g} s after start) to pass")
        time.sleep(max(0.0, cluster.serving_at + spread + 0.5 - time.monotonic()))
        setup_sts = sts_delta(before, services.sts_stats())
        same = _same_token_everywhere(cluster)
        per_process = channels_per_process(channels, replicas)
        label = f"{replicas} replicas"
        specs = [
            GrpcRow(
                "ceiling",
                f"(e) cluster GetBrokerInfo ceiling, {label}",
                "GetBrokerInfo",
                pb.GetBrokerInfoRequest().SerializeToString(),
            ),
            GrpcRow(
                "get_token",
                f"(f) cluster GetToken cache hit, {label}",
                "GetToken",
                pb.GetTokenRequest(tenant=TENANT, target=TARGET).SerializeToString(),
            ),
        ]
        with ClientPool(cluster.addresses, clients, per_process) as pool:
            rounds = rounds_of(
                cluster,
                pool,
                specs,
                repeat=repeat,
                processes=clients,
                concurrency=concurrency,
                warmup_s=warmup_s,
                duration_s=duration_s,
            )
        run_sts = sts_delta(before, services.sts_stats())
    return ClusterResult(
        replicas,
        per_process,
        start_s,
        first_token_s,
        setup_sts,
        run_sts,
        list(quietest(rounds)),
        rounds,
        same,
    )


def _wait_first_token(cluster: Cluster, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (cluster.cached_tokens() or 0) >= 1:
            return time.monotonic() - cluster.spawned_at
        time.sleep(0.05)
    return None


def _same_token_everywhere(cluster: Cluster) -> bool:
    """A typed GetToken on each replica: a DPoP token, and the same one on all (shared through Redis)."""
    tokens = set()
    for address in cluster.addresses:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.TokenBrokerServiceStub(channel)  # type: ignore[no-untyped-call]
            try:
                answer = stub.GetToken(pb.GetTokenRequest(tenant=TENANT, target=TARGET), timeout=30)
            except grpc.RpcError as exc:
                raise SetupError(f"GetToken on replica {address} failed: {exc}") from exc
        if answer.access_token.token_type != pb.TOKEN_TYPE_DPOP:
            raise SetupError(f"replica {address} did not return a DPoP token")
        tokens.add(answer.access_token.token)
    return len(tokens) == 1


def report_lines(result: ClusterResult) -> list[str]:
    setup = result.setup_sts
    same = "yes" if result.same_token_everywhere else "NO"
    lines = [
        f"warm cluster: {result.replicas} replicas (python -m broker run --listen ..., workers = 1 each) "
        f"on one Redis database and store key; tenant {TENANT!r} with target {TARGET!r} warm; load: the "
        f"client processes' channels spread evenly over the replicas ({result.channels} per process)",
        f"start: every replica SERVING {result.start_s:.1f} s after spawn; the warm token in Redis after "
        f"{_s(result.first_token_s)}; the same token on every replica: {same}",
        f"STS token requests during the cluster setup (spawn until every replica's warm-up window passed): "
        f"{_n(setup['token_requests'])} ({_n(setup['tokens_issued'])} token issued for 1 warm key, "
        f"{_n(setup['nonce_challenges'])} DPoP nonce challenge); expected 1 per key, plus 1 nonce "
        f"challenge on a fresh Redis, whatever the number of replicas",
        "STS token requests over the whole cluster run, rows included: "
        f"{_n(result.run_sts['token_requests'])}",
        "",
        report.table(result.rows),
        "",
    ]
    shown = report.ratio(result.rows, "get_token")
    lines.append(
        f"cluster GetToken hits / ceiling: {_f(shown)}   "
        f"(goal on 2 cores: >= {report.TARGET_RATIOS['get_token']:.2f})"
    )
    if len(result.rounds) > 1:
        lines.append(
            f"pooled over {len(result.rounds)} rounds (calls summed over the rounds): "
            f"{_f(report.pooled_ratio(result.rounds, 'get_token'))}"
        )
        shown_round = result.rounds.index(result.rows) + 1 if result.rows in result.rounds else 0
        lines.append(f"rows (e)-(f): round {shown_round} of {len(result.rounds)}, the least disturbed:")
        for number, run in enumerate(result.rounds, 1):
            other = max((row.cores.get("other") or 0.0) for row in run)
            lines.append(
                f"  round {number}: ceiling {run[0].calls_per_s:.0f} calls/s; "
                f"get_token {_f(report.ratio(run, 'get_token'))}; other cpu up to {other:.2f}"
            )
    for row in result.rows:
        if row.errors:
            lines.append(f"{row.label}: {row.errors} errors, first: {row.first_error}")
    return lines


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _s(value: float | None) -> str:
    return "- (not seen)" if value is None else f"{value:.1f} s"
