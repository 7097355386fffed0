"""Several broker replicas as separate processes on one Redis, in front of the services' dev authority.

Each replica is `python -m broker run --config FILE --listen 127.0.0.1:<port>` with `workers = 1`, all on the
same configuration, the same Redis database and the same store key, as `README.md` ("Several replicas")
describes a deployment. Every replica is started in a session of its own and stopped by its own id.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.procs import DevAuthority, Redis, SetupError, free_port, kill_group, log_tail, spawn
from bench.stack import SERVICE, Services, sts_stats

# Redis keys of client-credentials routes (broker/store/redis.py; cache keys start "v1:"): the cached token
# (it expires when the broker would stop serving it), and the fencing counter, created when a replica first
# takes the key's lease to fetch it, and never expiring: a fence key means "fetched at least once".
TOKEN_KEYS = "broker:v1:{v1:*}:tok"  # noqa: S105 - a key pattern, not a secret
FENCE_KEYS = "broker:v1:{v1:*}:fence"


_MASKS = re.compile(r"v1:[^ ]+|[0-9]+(\.[0-9]+)?")


@dataclass
class Replica:
    index: int
    address: str
    process: subprocess.Popen[bytes]
    log: Path
    metrics_url: str | None = None  # its Prometheus scrape endpoint, when the cluster has them

    def log_tail(self) -> str:
        return log_tail(self.log)


@dataclass
class Cluster:
    """The replicas, and the services they run on (the same `System` shape as `Stack` for the rows)."""

    services: Services
    config_path: Path
    environ: dict[str, str]
    redis_url: str
    replicas: list[Replica] = field(default_factory=list)
    spawned_at: float = 0.0  # time.monotonic() when the replicas were started
    serving_at: float = 0.0  # ... and when the last of them said SERVING

    @property
    def authority(self) -> DevAuthority:
        return self.services.authority

    @property
    def redis(self) -> Redis:
        return self.services.redis

    @property
    def addresses(self) -> list[str]:
        return [replica.address for replica in self.replicas]

    def server_pids(self) -> list[int]:
        return [replica.process.pid for replica in self.replicas]

    def sts_token_requests(self) -> int | None:
        return self.services.sts_token_requests()

    def sts_stats(self) -> dict[str, Any] | None:
        return sts_stats(self.services.issuer)

    def rss_kib(self) -> list[int | None]:
        """Resident memory of each replica (VmRSS from /proc), in KiB; None where it cannot be read."""
        return [rss_kib(pid) for pid in self.server_pids()]

    def cached_tokens(self) -> int | None:
        """Client-credentials tokens in Redis: the keys that some replica fetched and stored."""
        return count_keys(self.redis_url, TOKEN_KEYS)

    def fetched_keys(self) -> int | None:
        """Routes some replica has fetched at least once (their fencing counters in Redis)."""
        return count_keys(self.redis_url, FENCE_KEYS)

    def log_summary(self, words: tuple[str, ...] = (" WARNING ", " ERROR "), top: int = 5) -> list[str]:
        """The most frequent distinct WARNING/ERROR messages of all replicas' logs (cache keys, times and
        numbers masked), with their counts."""
        counts: dict[str, int] = {}
        for replica in self.replicas:
            try:
                text = replica.log.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                if any(word in line for word in words):
                    message = _MASKS.sub("#", line.split(" ", 2)[-1])[:160]
                    counts[message] = counts.get(message, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return [f"{count:6d} x {message}" for message, count in ranked]

    def served_by_source(self, rpc: str = "GetToken") -> dict[str, float] | None:
        """`broker_token_served_total` of `rpc` summed over the replicas, by source (memory, redis, sts);
        None without metrics endpoints or when one cannot be read."""
        totals: dict[str, float] = {}
        for replica in self.replicas:
            if replica.metrics_url is None:
                return None
            try:
                text = httpx.get(replica.metrics_url, timeout=10).text
            except httpx.HTTPError:
                return None
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "broker_token_served_total" and sample.labels.get("rpc") == rpc:
                        source = sample.labels.get("source", "?")
                        totals[source] = totals.get(source, 0.0) + sample.value
        return totals

    def log_lines(self, word: str) -> int:
        """Lines of all replicas' logs that hold `word` (such as WARNING)."""
        total = 0
        for replica in self.replicas:
            try:
                text = replica.log.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            total += sum(1 for line in text.splitlines() if word in line)
        return total


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def count_keys(url: str, pattern: str) -> int | None:
    """Keys matching `pattern`, counted with SCAN (never KEYS, which blocks Redis)."""
    try:
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            return sum(1 for _ in client.scan_iter(match=pattern, count=2000))
    except redis.RedisError:
        return None


def redis_memory(url: str) -> int | None:
    """Bytes Redis uses for its data (INFO memory, used_memory)."""
    try:
        with redis.Redis.from_url(url, socket_timeout=5) as client:
            return int(client.info("memory")["used_memory"])
    except (redis.RedisError, KeyError, TypeError, ValueError):
        return None


@contextlib.contextmanager
def running_cluster(
    services: Services,
    replicas: int,
    config: Callable[[str], str],
    *,
    name: str = "cluster",
    redis_db: int = 0,
    metrics: bool = False,
    start_timeout: float = 90.0,
) -> Iterator[Cluster]:
    """`replicas` broker processes on `config(redis_url)` (a TOML text with `workers = 1`), each on a free
    loopback port, waited for until each says SERVING; all stopped on leaving, also on an exception.

    With `metrics`, each replica also serves Prometheus metrics on a port of its own (the only line in which
    the replicas' configuration files differ)."""
    redis_url = f"redis://127.0.0.1:{services.redis.port}/{redis_db}"
    text = config(redis_url)
    config_path = services.workdir / f"{name}.toml"
    config_path.write_text(text, encoding="utf-8")
    environ = services.broker_environ()
    environ["PYTHONUNBUFFERED"] = "1"
    cluster = Cluster(services, config_path, environ, redis_url)
    try:
        cluster.spawned_at = time.monotonic()
        for index in range(replicas):
            address = f"127.0.0.1:{free_port()}"
            log = services.workdir / f"{name}-replica-{index}.log"
            path, metrics_url = config_path, None
            if metrics:
                port = free_port()
                path = services.workdir / f"{name}-replica-{index}.toml"
                path.write_text(
                    f'{text}\n[telemetry]\nprometheus_listen = "127.0.0.1:{port}"\n', encoding="utf-8"
                )
                metrics_url = f"http://127.0.0.1:{port}/metrics"
            args = [sys.executable, "-m", "broker", "run", "--config", str(path), "--listen", address]
            process = spawn(args, log, env=environ)
            cluster.replicas.append(Replica(index, address, process, log, metrics_url))
        _wait_serving(cluster.replicas, start_timeout)
        cluster.serving_at = time.monotonic()
        yield cluster
    finally:
        stop_all([replica.process for replica in cluster.replicas])


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    """SIGTERM to each (a replica drains its calls and exits), then SIGKILL to the process groups of those
    still running after `grace`, or at once when the wait is interrupted. All are signalled first, so they
    stop in parallel."""
    running = [process for process in processes if process.poll() is None]
    try:
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        for process in running:
            if process.poll() is None:
                kill_group(process)


def _health(channel: grpc.Channel) -> int | None:
    # A replica busy fetching its warm tokens may answer slowly; slow is still serving.
    try:
        answer = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=5.0, wait_for_ready=True
        )
    except grpc.RpcError:
        return None
    return int(answer.status)


def _wait_serving(replicas: Sequence[Replica], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for replica in replicas:
        with grpc.insecure_channel(replica.address) as channel:
            while True:
                if replica.process.poll() is not None:
                    raise SetupError(
                        f"replica {replica.index} exited with {replica.process.returncode}:\n"
                        f"{replica.log_tail()}"
                    )
                if _health(channel) == health_pb2.HealthCheckResponse.SERVING:
                    break
                if time.monotonic() > deadline:
                    raise SetupError(
                        f"replica {replica.index} was not SERVING within {timeout:.0f} s:\n"
                        f"{replica.log_tail()}"
                    )
                time.sleep(0.1)
