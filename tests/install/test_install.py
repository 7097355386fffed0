"""The broker installs with `pip install` and starts with the `helseid-broker` command, outside this checkout.

The module's fixture copies the working tree (without caches, virtual environments and Node packages), builds
a wheel from it as `pip install .` would (isolated build; setuptools comes from the package registry), creates
a fresh virtual environment in a temp folder and installs the wheel there with `--no-deps`. A full install
would fetch every dependency again from the registry (about a minute); instead the new environment sees this
interpreter's site-packages through a .pth line, after its own, and `pip check` proves that every
dependency the wheel declares is satisfied. The installed code is the wheel's: the checkout's editable
install is not active there (its .pth hook runs only in its own environment), the commands run from the temp
folder, and a test asserts where `broker` is imported from.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broker import __version__
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
# What a wheel never needs and what is large or belongs to other runs.
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "clients"
)
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Installed:
    venv: Path
    workdir: Path
    wheel: Path
    build_s: float
    install_s: float

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def run(self, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # A clean environment: no VIRTUAL_ENV or PYTHONPATH of the test run leaks into the installed command.
        env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
        return subprocess.run(
            [str(a) for a in args],
            cwd=self.workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"{result.args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    source, wheels, venv, workdir = base / "source", base / "wheels", base / "venv", base / "work"
    workdir.mkdir()
    shutil.copytree(ROOT, source, ignore=NOT_COPIED, symlinks=True)

    started = time.monotonic()
    _checked(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                str(source),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    )
    build_s = time.monotonic() - started
    (wheel,) = wheels.glob("helseid_token_broker-*.whl")

    started = time.monotonic()
    _checked(
        subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
    )
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies of this test run, appended to the new environment's sys.path after its own packages.
    ours = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    Path(site, "zz_test_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    _checked(
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    )
    install_s = time.monotonic() - started
    return Installed(venv, workdir, wheel, build_s, install_s)


def test_the_wheel_installs_the_command_and_its_dependencies_are_declared(installed: Installed) -> None:
    command = installed.bin("helseid-broker")
    assert command.is_file(), "the wheel installs no helseid-broker command"
    version = _checked(installed.run(command, "--version")).stdout.strip()
    where = _checked(installed.run(installed.bin("python"), "-c", "import broker; print(broker.__file__)"))
    # pip check names every distribution on sys.path whose requirements are not met there. The borrowed dev
    # tools may clash with the new environment's own setuptools; the wheel's requirements may not.
    check = installed.run(installed.bin("python"), "-m", "pip", "check")
    unmet = [line for line in check.stdout.splitlines() if line.lower().startswith("helseid-token-broker ")]
    with zipfile.ZipFile(installed.wheel) as wheel:
        tops = {name.split("/")[0] for name in wheel.namelist() if "/" in name}
    packages = sorted(top for top in tops if not top.endswith(".dist-info"))
    print(
        f"wheel {installed.wheel.name}: {installed.wheel.stat().st_size // 1024} KiB, built in "
        f"{installed.build_s:.1f} s, venv + install {installed.install_s:.1f} s; "
        f"packages {packages}; helseid-broker --version: {version}; "
        f"unmet requirements of the wheel: {len(unmet)}"
    )
    assert not {"tests", "bench", "scripts"} & set(packages), packages
    assert not unmet, check.stdout
    assert version == __version__
    assert Path(where.stdout.strip()).is_relative_to(installed.venv), where.stdout
    assert not Path(where.stdout.strip()).is_relative_to(ROOT)


def test_check_config_and_keygen_run_from_the_installed_command(installed: Installed) -> None:
    command = installed.bin("helseid-broker")
    key = installed.workdir / "keys" / "client.jwk"
    key.parent.mkdir(exist_ok=True)
    _checked(installed.run(command, "keygen", "--out", key))
    config = installed.workdir / "broker.toml"
    config.write_text(
        f"""
[authority]
issuer = "https://helseid-sts.test.nhn.no"
[clients.c]
client_id = "c"
tenancy = "multi"
signing_key = {{ file = "{key}" }}
[targets.sfm]
scopes = ["e-helse:sfm.api/sfm.api2"]
[tenants.t]
client = "c"
orgnr_parent = "912345678"
targets = ["sfm"]
"""
    )
    result = _checked(installed.run(command, "check-config", config))
    print(f"helseid-broker check-config: {result.stdout.strip()}")
    assert "1 tenants" in result.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ask(address: str) -> tuple[int, str] | None:
    """The health status and GetBrokerInfo's version, or None while the broker does not answer yet."""
    with grpc.insecure_channel(address) as channel:
        try:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            info = pb_grpc.TokenBrokerServiceStub(channel).GetBrokerInfo(
                pb.GetBrokerInfoRequest(), timeout=1.0
            )
        except grpc.RpcError:
            return None
    return int(health.status), info.version


@pytest.fixture
def demo_broker(installed: Installed) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`helseid-broker run` with no configuration (the embedded demo defaults), on a free loopback port."""
    address = f"127.0.0.1:{_free_port()}"
    log = installed.workdir / "broker.log"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(installed.bin("helseid-broker")), "run", "--listen", address],
            cwd=installed.workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, address, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_helseid_broker_run_serves_and_stops_on_sigterm(
    demo_broker: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    process, address, log = demo_broker
    started = time.monotonic()
    answer = None
    while answer is None and time.monotonic() - started < STARTUP_TIMEOUT_S:
        assert process.poll() is None, (
            f"helseid-broker run exited with {process.returncode}:\n{log.read_text()}"
        )
        answer = _ask(address)
        if answer is None:
            time.sleep(0.2)
    assert answer is not None, f"no answer within {STARTUP_TIMEOUT_S} s:\n{log.read_text()}"
    ready_s = time.monotonic() - started

    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = process.wait(timeout=STOP_TIMEOUT_S)
    stop_s = time.monotonic() - started
    status, version = answer
    print(
        f"helseid-broker run: health {health_pb2.HealthCheckResponse.ServingStatus.Name(status)} and "
        f"GetBrokerInfo {version} after {ready_s:.1f} s; SIGTERM -> exit {code} in {stop_s:.1f} s"
    )
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert version == __version__
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
