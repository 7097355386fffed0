"""The API contract: buf lint passes, and the committed Python, Go and TypeScript code is what the protos
generate today, byte for byte.

Tools are pinned and installed by the scripts (buf via npm, protoc plugins via go install and npm ci); a
missing Go or Node fails these tests instead of skipping them, so CI cannot pass without checking.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_TIMEOUT_S = 600


def _run(args: list[str | Path], *, cwd: Path = ROOT) -> None:
    """Runs a script with this interpreter first on PATH (the scripts call `python`) and fails with its
    output unless it succeeds."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    if shutil.which(str(args[0]), path=path) is None:
        pytest.fail(f"{args[0]} is not installed (or not executable)", pytrace=False)
    env = {**os.environ, "PATH": path}
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob(pattern)) if p.is_file()}


def _assert_same_tree(committed: Path, generated: Path, pattern: str, regenerate: str) -> None:
    want, got = _files(generated, pattern), _files(committed, pattern)
    assert want, f"the generator wrote no {pattern} files under {generated}"
    stale = sorted(name for name in want.keys() | got.keys() if want.get(name) != got.get(name))
    assert not stale, f"{committed.relative_to(ROOT)} is not current; run {regenerate} and commit: {stale}"


def test_buf_lint_passes() -> None:
    _run([ROOT / "scripts" / "lint-protos.sh"])


def test_generated_python_is_current(tmp_path: Path) -> None:
    # scripts/generate.sh writes relative to its own checkout; running a copy of it next to a copy of
    # protos/ runs exactly its protoc command, into tmp_path.
    shutil.copytree(ROOT / "protos", tmp_path / "protos", ignore=shutil.ignore_patterns(".deps"))
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "generate.sh", tmp_path / "scripts" / "generate.sh")
    (tmp_path / "broker" / "v1").mkdir(parents=True)
    _run(["bash", tmp_path / "scripts" / "generate.sh"], cwd=tmp_path)
    _assert_same_tree(ROOT / "broker" / "v1", tmp_path / "broker" / "v1", "*_pb2*", "scripts/generate.sh")


@pytest.fixture(scope="module")
def generated_clients(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clients")
    _run([ROOT / "scripts" / "generate-clients.sh", "--out", out])
    return out


def test_generated_go_is_current(generated_clients: Path) -> None:
    brokerv1 = Path("clients", "go", "brokerv1")
    _assert_same_tree(ROOT / brokerv1, generated_clients / brokerv1, "*.pb.go", "scripts/generate-clients.sh")


def test_generated_typescript_is_current(generated_clients: Path) -> None:
    gen = Path("clients", "typescript", "src", "gen")
    _assert_same_tree(ROOT / gen, generated_clients / gen, "**/*.ts", "scripts/generate-clients.sh")


def test_generated_python_client_is_current(tmp_path: Path) -> None:
    _run([ROOT / "scripts" / "generate-python-client.sh", "--out", tmp_path])
    gen = Path("clients/python/src/helseid_broker_client/_gen")
    _assert_same_tree(ROOT / gen, tmp_path / gen, "**/*_pb2*", "scripts/generate-python-client.sh")
