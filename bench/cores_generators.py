"""The load generators of `python -m bench.cores`: h2load, ghz and the bench's own Python client processes,
behind one interface, so that a row is measured the same way whichever drives it.

A row's instants are those of bench.rows.window (start, measure, end; monotonic): the calls begin at once,
the warm-up lies before `measure`, and only the calls that complete inside [measure, end) count.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import Message

from bench import ghz, h2load
from bench.load import ClientPool
from bench.rows import METHOD_PREFIX, grpc_jobs
from bench.stack import TARGET, TENANT
from bench.stats import Sample
from broker.v1 import token_broker_service_pb2 as pb

_TAIL_S = 0.3  # an external generator runs this much past the window, so that the window's calls complete

Span = tuple[int, int, int]


@dataclass(frozen=True)
class Rpc:
    key: str  # "ceiling" or "get_token", as in the bench's other rows
    label: str
    method: str  # "package.Service/Method"
    request: Message

    @property
    def payload(self) -> bytes:
        """The serialised request, as the Python load generator sends it."""
        return self.request.SerializeToString()


SERVICE_PREFIX = METHOD_PREFIX.lstrip("/")
RPCS = (
    Rpc("ceiling", "GetBrokerInfo ceiling", SERVICE_PREFIX + "GetBrokerInfo", pb.GetBrokerInfoRequest()),
    Rpc(
        "get_token",
        "GetToken cache hit",
        SERVICE_PREFIX + "GetToken",
        pb.GetTokenRequest(tenant=TENANT, target=TARGET),
    ),
)


@dataclass(frozen=True)
class Running:
    """A generator's row in progress: its processes (for the CPU meter), and how to collect its calls."""

    pids: list[int]
    finish: Callable[[], list[Sample]]


class Generator:
    """Starts a row's calls against a gRPC address; the returned `Running` collects the calls that completed
    inside the window."""

    name = ""
    max_cores = 1  # the most cores it can use: its threads, GOMAXPROCS, or processes
    setting = ""  # its options, for the report

    def start(self, address: str, rpc: Rpc, span: Span) -> Running:
        raise NotImplementedError

    def idle_pids(self) -> list[int]:
        """Its processes that live between rows (the Python pools'): idle while another generator runs."""
        return []


class External(Generator):
    """A generator run as one process per row, from now until just past the window; the calls that ended
    inside the window are read afterwards from its per-call output, by their wall-clock instants."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir

    def command(self, address: str, rpc: Rpc, seconds: float, output: Path) -> list[str]:
        raise NotImplementedError

    def sample(self, output: Path, printed: str, measure_us: int, end_us: int) -> Sample:
        """The calls in `output` that ended in [measure_us, end_us), wall clock; `printed` is its stdout."""
        raise NotImplementedError

    def start(self, address: str, rpc: Rpc, span: Span) -> Running:
        _, measure_ns, end_ns = span
        now_ns, wall_ns = time.monotonic_ns(), time.time_ns()

        def wall_us(instant_ns: int) -> int:
            return (wall_ns + instant_ns - now_ns) // 1000

        output = self._workdir / f"{self.name}-calls"
        output.unlink(missing_ok=True)
        seconds = (end_ns - now_ns) / 1e9 + _TAIL_S
        process = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            self.command(address, rpc, seconds, output),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

        def finish() -> list[Sample]:
            try:
                printed, _ = process.communicate(timeout=seconds + 60)
            except BaseException:  # also a Ctrl-C: the generator is not left running
                process.kill()
                process.wait()
                raise
            text = printed.decode(errors="replace")
            if process.returncode != 0 or not output.exists():
                raise RuntimeError(f"{self.name} exited with {process.returncode}: {text[-600:]}")
            return [self.sample(output, text, wall_us(measure_ns), wall_us(end_ns))]

        return Running([process.pid], finish)


class H2loadGenerator(External):
    name = "h2load"

    def __init__(self, workdir: Path, executable: str, setting: h2load.H2load) -> None:
        super().__init__(workdir)
        self._executable = executable
        self._setting = setting
        self.max_cores = setting.threads
        self.setting = setting.describe()
        self._bodies: dict[str, Path] = {}
        for rpc in RPCS:
            body = workdir / f"h2load-{rpc.key}.grpc"
            body.write_bytes(h2load.grpc_frame(rpc.payload))
            self._bodies[rpc.key] = body

    def command(self, address: str, rpc: Rpc, seconds: float, output: Path) -> list[str]:
        url = h2load.url(address, rpc.method)
        return self._setting.command(url, self._bodies[rpc.key], seconds, output, self._executable)

    def sample(self, output: Path, printed: str, measure_us: int, end_us: int) -> Sample:
        sample = h2load.window_sample(output, measure_us, end_us)
        trouble = h2load.failures(printed)
        if trouble:
            return Sample(sample.calls, sample.errors, sample.first_error or trouble, sample.latencies_ns)
        return sample

    def send(self, address: str, rpc: Rpc, requests: int) -> None:
        """Sends the row's request `requests` times, one at a time (a check of the request itself)."""
        url = h2load.url(address, rpc.method)
        args = h2load.count_command(url, self._bodies[rpc.key], requests, self._executable)
        subprocess.run(args, capture_output=True, check=True, timeout=60)  # noqa: S603 - our own argument list


class GhzGenerator(External):
    name = "ghz"

    def __init__(self, workdir: Path, executable: str, setting: ghz.Ghz) -> None:
        super().__init__(workdir)
        self._executable = executable
        self._setting = setting
        self.max_cores = setting.cpus
        self.setting = setting.describe()
        self._protoset = workdir / "broker.protoset"
        self._protoset.write_bytes(ghz.protoset(pb.DESCRIPTOR))
        self._requests: dict[str, Path] = {}
        for rpc in RPCS:
            request = workdir / f"ghz-{rpc.key}.json"
            request.write_text(ghz.request_json(rpc.request), encoding="utf-8")
            self._requests[rpc.key] = request

    def command(self, address: str, rpc: Rpc, seconds: float, output: Path) -> list[str]:
        files = ghz.Files(self._protoset, self._requests[rpc.key], output)
        return self._setting.command(address, rpc.method, files, seconds, self._executable)

    def sample(self, output: Path, printed: str, measure_us: int, end_us: int) -> Sample:
        return ghz.window_sample(ghz.read_report(output), measure_us, end_us)


class PythonGenerator(Generator):
    """The bench's own load generator (bench/load.py): a pool of client processes per address, started once
    and kept for every row."""

    name = "python"

    def __init__(self, addresses: Sequence[str], processes: int, concurrency: int, channels: int) -> None:
        self.max_cores = processes
        self.setting = f"{processes} processes x {concurrency} in flight, {channels} connections each"
        self._processes = processes
        self._concurrency = concurrency
        self._pools: dict[str, ClientPool] = {}
        self._cleanup = contextlib.ExitStack()
        try:
            for address in addresses:
                self._pools[address] = self._cleanup.enter_context(ClientPool(address, processes, channels))
        except BaseException:
            self._cleanup.close()
            raise

    def close(self) -> None:
        self._cleanup.close()

    def idle_pids(self) -> list[int]:
        return [pid for pool in self._pools.values() for pid in pool.pids]

    def start(self, address: str, rpc: Rpc, span: Span) -> Running:
        pool = self._pools[address]
        end_ns = span[2]
        jobs = grpc_jobs(
            rpc.method.removeprefix(SERVICE_PREFIX), rpc.payload, self._processes, self._concurrency, span
        )
        pool.send(jobs)
        return Running(
            pool.pids, lambda: pool.collect(jobs, timeout=(end_ns - time.monotonic_ns()) / 1e9 + 60)
        )
