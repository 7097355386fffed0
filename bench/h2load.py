"""h2load (nghttp2's HTTP/2 load generator, written in C) as a gRPC load generator.

A unary gRPC call is an HTTP/2 POST to `/<package.Service>/<Method>` with `content-type: application/grpc`
and `te: trailers`, whose body is the request in gRPC's length-prefixed frame (a flag byte 0 for
uncompressed, the length as 4 bytes big-endian, the serialised message). h2load sends the same body on
every request and judges only the HTTP status: a gRPC error is an HTTP 200 whose trailers carry a non-zero
`grpc-status`, so h2load cannot see it. The caller checks the broker's own per-status call counts for that.

Each request's start (microseconds since the epoch), HTTP status and duration go to h2load's `--log-file`,
so a row counts, like the Python load generator, only the calls that complete inside its measured window,
and takes percentiles from them (h2load's own summary has only min, max, mean and sd).
"""

from __future__ import annotations

import re
import shutil
from array import array
from dataclasses import dataclass
from pathlib import Path

from bench.stats import Sample

GRPC_HEADERS = ("content-type: application/grpc", "te: trailers")
_SUMMARY = re.compile(r"requests: .*?(\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout")


def binary() -> str | None:
    return shutil.which("h2load")


def grpc_frame(message: bytes) -> bytes:
    """`message` as one uncompressed gRPC length-prefixed message."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass(frozen=True)
class H2load:
    """One h2load setting: `clients` connections, each with up to `streams` calls in flight, on `threads`
    native threads (1: the load generator takes at most one core)."""

    clients: int
    streams: int
    threads: int = 1

    @property
    def in_flight(self) -> int:
        return self.clients * self.streams

    def command(
        self, url: str, body: Path, seconds: float, log: Path, executable: str = "h2load"
    ) -> list[str]:
        """h2load sending `body` to `url` for `seconds`, each request into `log`."""
        args = [executable, "--threads", str(self.threads), "--clients", str(self.clients)]
        args += ["--max-concurrent-streams", str(self.streams), "--duration", f"{round(seconds * 1000)}ms"]
        args += ["--data", str(body), "--log-file", str(log)]
        for header in GRPC_HEADERS:
            args += ["--header", header]
        return [*args, url]

    def describe(self) -> str:
        return f"h2load -t {self.threads} -c {self.clients} -m {self.streams}"


def count_command(url: str, body: Path, requests: int, executable: str = "h2load") -> list[str]:
    """h2load sending `body` to `url` `requests` times, one at a time on one connection."""
    args = [executable, "--threads", "1", "--clients", "1", "--max-concurrent-streams", "1"]
    args += ["--requests", str(requests), "--data", str(body)]
    for header in GRPC_HEADERS:
        args += ["--header", header]
    return [*args, url]


def url(address: str, method: str) -> str:
    """The URL of a gRPC method (`package.Service/Method`) on a plaintext HTTP/2 server."""
    return f"http://{address}/{method}"


def window_sample(log: Path, measure_us: int, end_us: int) -> Sample:
    """The requests of h2load's log that completed inside [measure_us, end_us) (wall clock, microseconds):
    calls with HTTP status 200, errors with any other, and the latencies of the calls."""
    latencies = array("q")
    calls = errors = 0
    first_error = ""
    with log.open(encoding="ascii", errors="replace") as lines:
        for line in lines:
            fields = line.split("\t")
            if len(fields) < 3:
                continue
            started, status, took = int(fields[0]), fields[1], int(fields[2])
            done = started + took
            if not measure_us <= done < end_us:
                continue
            if status == "200":
                calls += 1
                latencies.append(took * 1000)
            else:
                errors += 1
                first_error = first_error or f"HTTP status {status}"
    return Sample(calls, errors, first_error, latencies.tobytes())


def failures(summary: str) -> str:
    """h2load's own count of requests that failed (no answer, a reset, a time-out) over the whole run, or ""
    when there were none; they are not in its log."""
    found = _SUMMARY.search(summary)
    if found is None:
        return "h2load printed no summary line"
    failed, errored, timeout = (int(found.group(n)) for n in (2, 3, 4))
    if failed == errored == timeout == 0:
        return ""
    return f"h2load: {failed} failed, {errored} errored, {timeout} timed out"
