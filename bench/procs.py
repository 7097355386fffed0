"""Subprocess helpers: free ports, a Redis server, the dev authority, and stopping what we started.

Every wait is bounded; every process started here is stopped by its own id (or its own process group).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

# The repository root: the child processes run `python -m broker...` from there.
REPO_ROOT = Path(__file__).resolve().parent.parent


class SetupError(RuntimeError):
    """A part of the benchmark's stack did not come up; the message says which, with its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def stop_process(
    process: subprocess.Popen[bytes], *, first: int = signal.SIGTERM, grace: float = 10.0
) -> None:
    """Sends `first` to the process, then SIGKILL to its process group (its own session) after `grace`,
    or at once when the wait is interrupted (a signal to the bench): never leaves the process running."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(first)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill_group(process)
    except BaseException:
        kill_group(process)
        raise


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the process's group (spawn() starts each in a session of its own), then reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    process.wait(timeout=10)


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Starts `args` in a session of its own, output to `log`, in the repository root."""
    with log.open("wb") as handle:
        return subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            args,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env=env,
            start_new_session=True,
        )


@dataclass
class Redis:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(workdir: Path, timeout: float = 15.0) -> Redis:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SetupError("redis-server is not installed (scripts/test.sh installs it from Debian's packages)")
    port = free_port()
    data = workdir / "redis"
    data.mkdir()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", ""]
    args += ["--appendonly", "no", "--protected-mode", "yes"]
    log = workdir / "redis.log"
    process = spawn(args, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SetupError(f"redis-server exited with {process.returncode}:\n{log_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return Redis(port, process)
        except OSError:
            time.sleep(0.05)
    stop_process(process)
    raise SetupError(f"redis-server did not answer within {timeout:.0f} s:\n{log_tail(log)}")


@dataclass
class DevAuthority:
    issuer: str
    process: subprocess.Popen[bytes]


def start_dev_authority(
    workdir: Path, registry: Path, *, token_lifetime: int, timeout: float = 30.0
) -> DevAuthority:
    """Runs `python -m devauthority` on a free loopback port; reads its `{"issuer": ...}` line."""
    log = workdir / "devauthority.log"
    args = [sys.executable, "-m", "devauthority", "--host", "127.0.0.1", "--port", "0"]
    args += ["--clients", str(registry), "--token-lifetime", str(token_lifetime), "--log-level", "WARNING"]
    with log.open("wb") as errors:
        process = subprocess.Popen(  # noqa: S603 - our own argument list, no shell
            args,
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    assert process.stdout is not None
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            stop_process(process)
            raise SetupError(f"the dev authority did not start (exit {process.poll()}):\n{log_tail(log)}")
        ready, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                continue
            line += chunk
    try:
        issuer = str(json.loads(line.splitlines()[0])["issuer"])
    except (ValueError, KeyError, IndexError) as exc:
        stop_process(process)
        raise SetupError(f"the dev authority printed no issuer line: {line[:200]!r}") from exc
    return DevAuthority(issuer, process)


def close_workers(
    connections: Sequence[Connection], processes: Sequence[BaseProcess], farewell: object, *, grace: float
) -> None:
    """Tells each worker process to end (`farewell` on its pipe), waits `grace` for each, terminates one
    that is still alive, and closes the pipes."""
    for connection in connections:
        with contextlib.suppress(OSError):
            connection.send(farewell)
    for process in processes:
        process.join(timeout=grace)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
    for connection in connections:
        connection.close()
