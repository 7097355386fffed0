"""The client processes of `python -m bench.fanout`: watchers holding WatchToken streams, a GetToken caller.

A watcher process opens its share of the streams in one burst over a few channels (each its own TCP
connection, spread over the replicas), and notes the instant (`time.monotonic_ns()`, system-wide on Linux)
at which each stream receives each message. Messages are taken as raw bytes: every stream of a key gets the
same bytes for the same token, so the bytes name the token without parsing them. The parent drives it over a
pipe: `open`, `poll` (what arrived so far), `close` (cancel every stream), `exit`.

The caller process sends GetToken at a steady rate, each call its own task started on time (a slow answer
delays no later call), and records when each call started and how long it took, until told to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc

from bench.procs import close_workers

WATCH_METHOD = "/broker.v1.TokenBrokerService/WatchToken"
GET_TOKEN_METHOD = "/broker.v1.TokenBrokerService/GetToken"  # noqa: S105 - a method name
_CALL_TIMEOUT_S = 10.0


@dataclass
class Opened:
    """How a burst of stream openings went, in one watcher process."""

    asked: int
    opened: int  # streams that received their first message
    failed: dict[str, int]  # failures before the first message, by status code name
    details: dict[str, str]  # the first failure's details, by status code name
    first_message_ns: bytes  # array("q"): per opened stream, opening to first message
    waited_s: float


@dataclass
class Arrivals:
    """Per distinct message (token), when each stream of this process received it."""

    keys: list[bytes]  # a digest of each message: the same token has the same key in every process
    first_ns: list[int]
    last_ns: list[int]
    counts: list[int]
    times_ns: list[bytes] = field(default_factory=list)  # array("q") per message; only when closing
    replicas: list[bytes] = field(default_factory=list)  # array("b"): the replica of each receipt, likewise
    ended: dict[str, int] = field(default_factory=dict)  # streams that ended after opening, by status


class _Watchers:
    def __init__(self, addresses: Sequence[str], replicas: Sequence[int], payload: bytes) -> None:
        # A channel id of its own for each, so that each is its own TCP connection (no shared subchannel).
        self._channels = [
            grpc.aio.insecure_channel(
                address, options=[("grpc.use_local_subchannel_pool", 1), ("bench.channel", index)]
            )
            for index, address in enumerate(addresses)
        ]
        self._payload = payload
        self._tasks: list[asyncio.Task[None]] = []
        self._messages: dict[bytes, int] = {}
        self._times: list[array[int]] = []
        self._replicas: list[array[int]] = []  # per message, the replica index of each receipt
        self._channel_replicas = list(replicas)
        self._ended: dict[str, int] = {}
        self._closing = False

    async def ready(self, seconds: float) -> None:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in self._channels)), seconds)

    def _note(self, message: bytes, now: int, replica: int) -> None:
        index = self._messages.get(message)
        if index is None:
            index = self._messages[message] = len(self._times)
            self._times.append(array("q"))
            self._replicas.append(array("b"))
        self._times[index].append(now)
        self._replicas[index].append(replica)

    async def _follow(self, call: Any, replica: int, started: int, first: asyncio.Future[int | str]) -> None:
        clock = time.monotonic_ns
        try:
            async for message in call:
                now = clock()
                if not first.done():
                    first.set_result(now - started)
                self._note(message, now, replica)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            if not first.done():
                first.set_result(f"{code}\t{exc.details()}")
            elif not self._closing:
                self._ended[code] = self._ended.get(code, 0) + 1
        except asyncio.CancelledError:
            if not first.done():
                first.cancel()
            raise
        else:
            if not first.done():
                first.set_result("ENDED\tthe stream ended before its first message")
            elif not self._closing:
                self._ended["OK"] = self._ended.get("OK", 0) + 1

    async def open(self, streams: int, seconds: float) -> Opened:
        self._closing = False
        self._ended = {}
        callables = [channel.unary_stream(WATCH_METHOD, None, None) for channel in self._channels]
        loop = asyncio.get_running_loop()
        firsts: list[asyncio.Future[int | str]] = []
        began = time.monotonic()
        for index in range(streams):
            first: asyncio.Future[int | str] = loop.create_future()
            channel = index % len(callables)
            call = callables[channel](self._payload)
            replica = self._channel_replicas[channel]
            self._tasks.append(loop.create_task(self._follow(call, replica, time.monotonic_ns(), first)))
            firsts.append(first)
        await asyncio.wait(firsts, timeout=seconds)
        latencies = array("q")
        failed: dict[str, int] = {}
        details: dict[str, str] = {}
        for first in firsts:
            result: int | str = first.result() if first.done() and not first.cancelled() else "TIMEOUT\t"
            if isinstance(result, int):
                latencies.append(result)
                continue
            code, _, detail = result.partition("\t")
            failed[code] = failed.get(code, 0) + 1
            details.setdefault(code, detail or "no first message within the bench's wait")
        return Opened(streams, len(latencies), failed, details, latencies.tobytes(), time.monotonic() - began)

    def arrivals(self, *, with_times: bool) -> Arrivals:
        result = Arrivals([], [], [], [], ended=dict(self._ended))
        for message, index in self._messages.items():
            result.keys.append(hashlib.blake2b(message, digest_size=8).digest())
            times = self._times[index]
            result.first_ns.append(min(times))
            result.last_ns.append(max(times))
            result.counts.append(len(times))
            if with_times:
                result.times_ns.append(times.tobytes())
                result.replicas.append(self._replicas[index].tobytes())
        return result

    async def close(self) -> Arrivals:
        """Cancels every stream (the caller hangs up), and hands over every arrival."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        arrivals = self.arrivals(with_times=True)
        self._messages, self._times, self._replicas = {}, [], []
        return arrivals

    async def shut(self) -> None:
        for channel in self._channels:
            await channel.close(None)


async def _serve_watcher(
    connection: Connection, addresses: Sequence[str], replicas: Sequence[int], payload: bytes
) -> None:
    loop = asyncio.get_running_loop()
    watchers = _Watchers(addresses, replicas, payload)
    try:
        try:
            await watchers.ready(15)
        except TimeoutError:
            connection.send(("error", f"no connection to {', '.join(sorted(set(addresses)))} within 15 s"))
            return
        connection.send(("ready", None))
        while True:
            command, argument = await loop.run_in_executor(None, connection.recv)
            if command == "open":
                streams, timeout = argument
                connection.send(("opened", await watchers.open(streams, timeout)))
            elif command == "poll":
                connection.send(("arrivals", watchers.arrivals(with_times=False)))
            elif command == "close":
                connection.send(("closed", await watchers.close()))
            else:
                await watchers.close()
                return
    finally:
        await watchers.shut()


def _watcher_process(
    connection: Connection, addresses: Sequence[str], replicas: Sequence[int], payload: bytes
) -> None:
    try:
        asyncio.run(_serve_watcher(connection, addresses, replicas, payload))
    except KeyboardInterrupt:
        pass
    finally:
        connection.close()


async def _serve_caller(
    connection: Connection, addresses: Sequence[str], payload: bytes, rate: float
) -> None:
    loop = asyncio.get_running_loop()
    channels = [grpc.aio.insecure_channel(address) for address in addresses]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 15)
        callables = [channel.unary_unary(GET_TOKEN_METHOD, None, None) for channel in channels]
        started, took = array("q"), array("q")
        failed: dict[str, int] = {}
        stop = loop.run_in_executor(None, connection.recv)
        connection.send(("ready", None))

        async def one(multicallable: Any) -> None:
            begin = time.monotonic_ns()
            try:
                await multicallable(payload, timeout=_CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                failed[exc.code().name] = failed.get(exc.code().name, 0) + 1
                return
            started.append(begin)
            took.append(time.monotonic_ns() - begin)

        interval_ns = int(1e9 / rate)
        tasks: set[asyncio.Task[None]] = set()
        next_ns, number = time.monotonic_ns(), 0
        while not stop.done():
            task = loop.create_task(one(callables[number % len(callables)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
            next_ns += interval_ns
            await asyncio.sleep(max(0.0, (next_ns - time.monotonic_ns()) / 1e9))
        await asyncio.gather(*tasks, return_exceptions=True)
        connection.send(("calls", (started.tobytes(), took.tobytes(), failed)))
    finally:
        for channel in channels:
            await channel.close(None)


def _caller_process(connection: Connection, addresses: Sequence[str], payload: bytes, rate: float) -> None:
    try:
        asyncio.run(_serve_caller(connection, addresses, payload, rate))
    except KeyboardInterrupt:
        pass
    finally:
        connection.close()


def _receive(connection: Connection, timeout: float, expected: str) -> Any:
    if not connection.poll(timeout):
        raise RuntimeError(f"a client process did not answer within {timeout:.0f} s (waiting for {expected})")
    kind, detail = connection.recv()
    if kind != expected:
        raise RuntimeError(f"a client process failed: {detail}")
    return detail


class WatcherPool:
    """Watcher processes (spawned, so no grpc state is forked), one per list of channels: the replica index
    of each channel; `addresses` are the replicas'."""

    def __init__(
        self,
        addresses: Sequence[str],
        channels: Sequence[Sequence[int]],
        payload: bytes,
        *,
        start_timeout: float = 30.0,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        try:
            for index, replicas in enumerate(channels):
                parent_end, child_end = context.Pipe()
                targets = [addresses[replica] for replica in replicas]
                process = context.Process(
                    target=_watcher_process,
                    args=(child_end, targets, list(replicas), payload),
                    name=f"watchers-{index}",
                )
                process.start()
                child_end.close()
                self._connections.append(parent_end)
                self._processes.append(process)
            for connection in self._connections:
                _receive(connection, start_timeout, "ready")
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes if process.pid is not None]

    def _ask(self, command: str, argument: Any, expected: str, timeout: float) -> list[Any]:
        for connection in self._connections:
            connection.send((command, argument))
        deadline = time.monotonic() + timeout
        return [
            _receive(connection, max(0.1, deadline - time.monotonic()), expected)
            for connection in self._connections
        ]

    def open(self, shares: Sequence[int], timeout: float) -> list[Opened]:
        """Each process opens its share of streams at once; answers when each stream has its first message,
        failed, or `timeout` passed."""
        for connection, share in zip(self._connections, shares, strict=True):
            connection.send(("open", (share, timeout)))
        deadline = time.monotonic() + timeout + 30
        return [_receive(c, max(0.1, deadline - time.monotonic()), "opened") for c in self._connections]

    def poll(self, timeout: float = 30.0) -> list[Arrivals]:
        return self._ask("poll", None, "arrivals", timeout)

    def close_streams(self, timeout: float = 60.0) -> list[Arrivals]:
        return self._ask("close", None, "closed", timeout)

    def close(self) -> None:
        close_workers(self._connections, self._processes, ("exit", None), grace=15)

    def __enter__(self) -> WatcherPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Calls:
    started_ns: array[int]
    took_ns: array[int]
    failed: dict[str, int]  # by status code name


class Caller:
    """One process calling GetToken `rate` times a second over one channel per address, until `stop`."""

    def __init__(
        self, addresses: Sequence[str], payload: bytes, rate: float, *, start_timeout: float = 30.0
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_caller_process, args=(child_end, list(addresses), payload, rate), name="get-token-caller"
        )
        self._process.start()
        child_end.close()
        self._stopped = False
        try:
            _receive(self._connection, start_timeout, "ready")
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def stop(self, timeout: float = 60.0) -> Calls:
        self._connection.send("stop")
        started, took, failed = _receive(self._connection, timeout, "calls")
        self._stopped = True
        started_ns, took_ns = array("q"), array("q")
        started_ns.frombytes(started)
        took_ns.frombytes(took)
        return Calls(started_ns, took_ns, failed)

    def close(self) -> None:
        if not self._stopped:
            with contextlib.suppress(OSError):
                self._connection.send("stop")
        self._process.join(timeout=15)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)
        self._connection.close()

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
