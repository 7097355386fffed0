"""The load generator: client processes, each an asyncio loop with many callers in flight.

The per-call work on the client side is kept small: the request is serialised once (the callables are made
without serialisers, so grpc sends the bytes as they are and hands back the response's bytes unparsed),
calls are plain `grpc.aio` unary calls spread over a few channels (each its own TCP connection, so that the
broker's SO_REUSEPORT workers share them), and latencies go into a preallocated `array("q")`.

With several addresses (the replicas of a cluster), the channels of all processes are spread over them in
turn, so every replica gets the same number of connections. A job may carry many payloads (GetToken for
many tenants): the parent shuffles them once, and each caller walks that order from its own offset.

All processes get absolute `time.monotonic_ns()` instants (the clock is system-wide on Linux): when to start,
when the warm-up ends and measuring begins, and when to stop. Only calls that complete inside the measured
window count; their number over the window's length is the throughput.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import httpx

from bench.procs import close_workers
from bench.stats import Sample
from broker.app import clock
from broker.config import load_config
from broker.idp.sts import StsClient
from broker.tokens.routes import RouteTable

_ERROR_PAUSE_S = 0.01  # a failing caller backs off a little instead of spinning
_CALL_TIMEOUT_S = 30.0
_MAX_RATE_PER_PROCESS = 60_000  # calls/s: sizes the latency array, far above what one Python process does


@dataclass(frozen=True)
class GrpcJob:
    """Call `method` with the serialised `payload` from `concurrency` callers until `end_ns`.

    With `payloads`, each call sends the next of them instead (each caller from its own offset)."""

    method: str
    payload: bytes
    concurrency: int
    start_ns: int
    measure_ns: int
    end_ns: int
    payloads: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class StsJob:
    """Fetch client-credentials tokens from the STS directly (no broker), with `concurrency` callers."""

    config_path: str
    environ: dict[str, str]
    tenant: str
    target: str
    concurrency: int
    start_ns: int
    measure_ns: int
    end_ns: int


Job = GrpcJob | StsJob


class _Recorder:
    __slots__ = ("calls", "end_ns", "errors", "first_error", "latencies", "measure_ns")

    def __init__(self, measure_ns: int, end_ns: int) -> None:
        capacity = int((end_ns - measure_ns) / 1e9 * _MAX_RATE_PER_PROCESS) + 1024
        self.latencies = array("q", bytes(8 * capacity))
        self.calls = 0
        self.errors = 0
        self.first_error = ""
        self.measure_ns = measure_ns
        self.end_ns = end_ns

    def failed(self, exc: BaseException) -> None:
        if time.monotonic_ns() >= self.measure_ns:
            self.errors += 1
            self.first_error = self.first_error or _describe(exc)

    def sample(self) -> Sample:
        recorded = min(self.calls, len(self.latencies))
        return Sample(self.calls, self.errors, self.first_error, self.latencies[:recorded].tobytes())


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"[:300]


async def _drive(call: Callable[[], Awaitable[Any]], recorder: _Recorder) -> None:
    """One caller: call, time, record, until the window is over. Kept small: it is the client's hot path."""
    clock = time.monotonic_ns
    latencies = recorder.latencies
    capacity = len(latencies)
    measure_ns = recorder.measure_ns
    end_ns = recorder.end_ns
    while True:
        started = clock()
        if started >= end_ns:
            return
        try:
            await call()
        except Exception as exc:  # any failure is counted and shown, not raised
            recorder.failed(exc)
            await asyncio.sleep(_ERROR_PAUSE_S)
            continue
        done = clock()
        if done >= end_ns:
            return
        if done >= measure_ns:
            index = recorder.calls
            if index < capacity:
                latencies[index] = done - started
            recorder.calls = index + 1


async def _sleep_until(instant_ns: int) -> None:
    delay = (instant_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


async def _run_grpc(job: GrpcJob, channels: Sequence[grpc.aio.Channel]) -> Sample:
    callables = [channel.unary_unary(job.method, None, None) for channel in channels]
    payload = job.payload
    recorder = _Recorder(job.measure_ns, job.end_ns)

    def caller(index: int) -> Callable[[], Awaitable[Any]]:
        multicallable = callables[index % len(callables)]
        if job.payloads:
            offset = index * len(job.payloads) // job.concurrency
            following = itertools.cycle(job.payloads[offset:] + job.payloads[:offset]).__next__

            def call_next() -> Awaitable[Any]:
                return multicallable(following(), timeout=_CALL_TIMEOUT_S)

            return call_next

        def call() -> Awaitable[Any]:
            return multicallable(payload, timeout=_CALL_TIMEOUT_S)

        return call

    await _sleep_until(job.start_ns)
    await asyncio.gather(*(_drive(caller(index), recorder) for index in range(job.concurrency)))
    return recorder.sample()


async def _run_sts(job: StsJob) -> Sample:
    config = load_config(Path(job.config_path), environ=job.environ)
    route = RouteTable(config.clients, config.targets, config.tenants).resolve(job.tenant, job.target)
    recorder = _Recorder(job.measure_ns, job.end_ns)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), follow_redirects=False) as http:
        sts = StsClient(http, clock)

        def call() -> Awaitable[Any]:
            return sts.fetch_client_credentials(route.client, route.target, route.details)

        await _sleep_until(job.start_ns)
        await asyncio.gather(*(_drive(call, recorder) for _ in range(job.concurrency)))
    return recorder.sample()


async def _serve_jobs(connection: Connection, addresses: Sequence[str]) -> None:
    loop = asyncio.get_running_loop()
    # A channel id of its own for each, so that each is its own TCP connection (no shared subchannel).
    channels = [
        grpc.aio.insecure_channel(
            address, options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", i)]
        )
        for i, address in enumerate(addresses)
    ]
    try:
        try:
            await asyncio.wait_for(asyncio.gather(*(channel.channel_ready() for channel in channels)), 15)
        except TimeoutError:
            connection.send(("error", f"no connection to {', '.join(sorted(set(addresses)))} within 15 s"))
            return
        connection.send(("ready", None))
        while True:
            job: Job | None = await loop.run_in_executor(None, connection.recv)
            if job is None:
                return
            try:
                sample = await (_run_grpc(job, channels) if isinstance(job, GrpcJob) else _run_sts(job))
            except Exception as exc:  # reported to the parent, which prints it
                connection.send(("error", _describe(exc)))
                continue
            connection.send(("sample", sample))
    finally:
        for channel in channels:
            await channel.close(None)


def _client_process(connection: Connection, addresses: Sequence[str]) -> None:
    try:
        asyncio.run(_serve_jobs(connection, addresses))
    except KeyboardInterrupt:
        pass
    finally:
        connection.close()


def spread_channels(addresses: Sequence[str], processes: int, channels: int) -> list[list[str]]:
    """The address of each channel of each process: all channels, in turn, over all addresses."""
    return [
        [addresses[(process * channels + index) % len(addresses)] for index in range(channels)]
        for process in range(processes)
    ]


class ClientPool:
    """`processes` client processes (spawned, so no grpc state is forked), each with `channels` channels.

    `address` may be several addresses (a cluster's replicas): the channels are spread over them in turn."""

    def __init__(
        self,
        address: str | Sequence[str],
        processes: int,
        channels: int,
        *,
        start_timeout: float = 30.0,
    ) -> None:
        addresses = [address] if isinstance(address, str) else list(address)
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        for index, targets in enumerate(spread_channels(addresses, processes, channels)):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_client_process, args=(child_end, targets), name=f"bench-client-{index}"
            )
            process.start()
            child_end.close()
            self._connections.append(parent_end)
            self._processes.append(process)
        try:
            for connection in self._connections:
                kind, detail = self._receive(connection, start_timeout)
                if kind != "ready":
                    raise RuntimeError(f"a client process did not start: {detail}")
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes if process.pid is not None]

    def send(self, jobs: Sequence[Job | None]) -> None:
        """Hands one job to each process (None: that process sits this row out)."""
        for connection, job in zip(self._connections, jobs, strict=True):
            if job is not None:
                connection.send(job)

    def collect(self, jobs: Sequence[Job | None], timeout: float) -> list[Sample]:
        samples = []
        deadline = time.monotonic() + timeout
        for connection, job in zip(self._connections, jobs, strict=True):
            if job is None:
                continue
            kind, detail = self._receive(connection, max(0.1, deadline - time.monotonic()))
            if kind != "sample":
                raise RuntimeError(f"a client process failed: {detail}")
            samples.append(detail)
        return samples

    @staticmethod
    def _receive(connection: Connection, timeout: float) -> tuple[str, Any]:
        if not connection.poll(timeout):
            raise RuntimeError(f"a client process did not answer within {timeout:.0f} s")
        message: tuple[str, Any] = connection.recv()
        return message

    def close(self) -> None:
        close_workers(self._connections, self._processes, None, grace=10)

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
