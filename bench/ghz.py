"""ghz (a gRPC load generator written in Go, on grpc-go) as a second load generator beside h2load.

ghz needs the service's descriptors: a protoset (a serialised `FileDescriptorSet`) made here from the
Python module's own descriptors, so nothing else (protoc, the proto files' imports) is needed. The request
goes as JSON (`--data-file`), which ghz serialises to the same bytes the other generators send (its
`--binary-file` would save that, but ghz 0.93 fails on an empty file, and GetBrokerInfoRequest is empty).

ghz reports each call with its gRPC status, its duration and the instant it ended (the `details` of its
JSON output), so a row counts, like the Python load generator, only the calls with status OK that ended
inside its measured window; any other status is an error of the row.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from array import array
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

from bench.procs import REPO_ROOT
from bench.stats import Sample

# Where scripts/bench-tools.sh installs ghz (git-ignored); GHZ names another binary.
LOCAL_BIN = REPO_ROOT / ".bench-tools" / "bin"
_FRACTION = re.compile(r"\.(\d+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def binary() -> str | None:
    """GHZ, else ghz on PATH, else the one scripts/bench-tools.sh installed."""
    named = os.environ.get("GHZ")
    if named:
        return named if shutil.which(named) else None
    return shutil.which("ghz") or shutil.which("ghz", path=str(LOCAL_BIN))


def protoset(descriptor: FileDescriptor) -> bytes:
    """A FileDescriptorSet of `descriptor` and every file it imports, imports first."""
    files: list[descriptor_pb2.FileDescriptorProto] = []
    seen: set[str] = set()

    def add(current: FileDescriptor) -> None:
        if current.name in seen:
            return
        seen.add(current.name)
        for dependency in current.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        current.CopyToProto(proto)
        files.append(proto)

    add(descriptor)
    return descriptor_pb2.FileDescriptorSet(file=files).SerializeToString()


@dataclass(frozen=True)
class Files:
    """What ghz reads (the protoset, the request as JSON) and where it writes its report."""

    protoset: Path
    request: Path
    output: Path


@dataclass(frozen=True)
class Ghz:
    """One ghz setting: `concurrency` callers over `connections` connections, on `cpus` cores (GOMAXPROCS)."""

    concurrency: int
    connections: int
    cpus: int = 1

    @property
    def in_flight(self) -> int:
        return self.concurrency

    def command(
        self, address: str, method: str, files: Files, seconds: float, executable: str = "ghz"
    ) -> list[str]:
        """ghz calling `method` (`package.Service/Method`) for `seconds`; JSON report to `files.output`."""
        args = [
            executable,
            "--insecure",
            "--protoset",
            str(files.protoset),
            "--call",
            method.replace("/", "."),
        ]
        args += ["--data-file", str(files.request), "--concurrency", str(self.concurrency)]
        args += ["--connections", str(self.connections), "--cpus", str(self.cpus)]
        # wait: the calls in flight at the end finish (the default closes the connections under them, which
        # would show as UNAVAILABLE errors that the broker did not cause).
        args += ["--duration", f"{round(seconds * 1000)}ms", "--duration-stop", "wait"]
        return [*args, "--format", "json", "--output", str(files.output), address]

    def describe(self) -> str:
        return f"ghz -c {self.concurrency} --connections {self.connections} --cpus {self.cpus}"


def request_json(request: Message) -> str:
    """The request as ghz reads it: protobuf's JSON mapping, with the .proto's field names."""
    return json_format.MessageToJson(request, preserving_proto_field_name=True)


def _instant_us(timestamp: str) -> int:
    """Microseconds since the epoch of an RFC 3339 timestamp with up to nanoseconds (Go's time.Time)."""
    # datetime takes at most 6 fractional digits: cut the nanoseconds to microseconds.
    trimmed = _FRACTION.sub(lambda found: "." + found.group(1)[:6].ljust(6, "0"), timestamp, count=1)
    moment = datetime.fromisoformat(trimmed.replace("Z", "+00:00"))
    return (moment - _EPOCH) // _MICROSECOND


def window_sample(report: dict[str, Any], measure_us: int, end_us: int) -> Sample:
    """The calls of ghz's JSON report that ended inside [measure_us, end_us) (wall clock, microseconds)."""
    latencies = array("q")
    calls = errors = 0
    first_error = ""
    for detail in report.get("details") or ():
        if not measure_us <= _instant_us(str(detail["timestamp"])) < end_us:
            continue
        if detail.get("status") == "OK":
            calls += 1
            latencies.append(int(detail["latency"]))
        else:
            errors += 1
            first_error = first_error or f"{detail.get('status')}: {detail.get('error')}"[:300]
    return Sample(calls, errors, first_error, latencies.tobytes())


def read_report(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise RuntimeError(f"ghz wrote no JSON object to {path.name}")
    return document
