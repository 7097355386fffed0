"""The README's commands that check the example configuration work on a fresh clone, as written.

The commands are read from the README (the `sh` block after "to try it on a fresh clone") and must be the
ones the example file's header lists; they run in a folder holding only the example, with none of its
variables set, through `bash` with `python` being this interpreter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .test_config import ENV, VALID, write

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "deploy" / "broker.example.toml"


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    after = text[text.index("to try it on a fresh clone") :]
    block = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def header_commands() -> list[str]:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [line.removeprefix("#   ") for line in lines if line.startswith("#   ")]


def test_the_readme_commands_pass_check_config_when_run_on_a_fresh_clone(tmp_path: Path) -> None:
    commands = readme_commands()
    assert commands == header_commands()
    assert commands[-1] == "python -m broker check-config deploy/broker.example.toml"
    clone = tmp_path / "clone"
    (clone / "deploy").mkdir(parents=True)
    shutil.copy(EXAMPLE, clone / "deploy")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    environ = {name: value for name, value in os.environ.items() if not name.startswith("BROKER_")}
    environ |= {"PATH": f"{bin_dir}{os.pathsep}{environ['PATH']}", "PYTHONPATH": str(ROOT)}
    script = "set -euo pipefail\n" + "\n".join(commands) + "\n"
    result = subprocess.run(
        ["bash", "-c", script],
        check=False,
        cwd=clone,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    made = sorted(str(path.relative_to(clone)) for path in clone.rglob("*") if path.is_file())
    print(f"\n{len(commands)} commands, exit {result.returncode}, files made: {made}")
    print(result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr)
    assert result.returncode == 0, result.stderr
    assert "deploy/broker.example.toml: ok (1 clients, 2 targets, 1 tenants)" in result.stdout
    # Without the steps, the same check names what is missing instead of passing.
    bare = tmp_path / "bare"
    (bare / "deploy").mkdir(parents=True)
    shutil.copy(EXAMPLE, bare / "deploy")
    failed = subprocess.run(
        [sys.executable, "-m", "broker", "check-config", "deploy/broker.example.toml"],
        check=False,
        cwd=bare,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(failed.stderr.splitlines()[0])
    assert failed.returncode == 2
    for field in ("store.encryption_key", "server.tls.certificate", "callers.prescribing.credential"):
        assert field in failed.stderr
    assert "clients.supplier.signing_key" in failed.stderr


def test_the_readme_shows_what_check_config_prints_for_a_file_with_three_mistakes(tmp_path: Path) -> None:
    text = (
        VALID.replace('tenancy = "multi"', 'tenancy = "many"')
        .replace('orgnr_parent = "123456789"', 'orgnr_parent = "12345678"')
        .replace('warm = ["sfm"]', 'warm = ["kj"]')
    )
    environ = {**os.environ, **ENV, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "broker", "check-config", str(write(tmp_path, text))],
        check=False,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    printed = result.stderr.strip()
    print(f"\nexit {result.returncode}, {len(printed)} characters: {printed}")
    assert result.returncode == 2
    assert printed.startswith("configuration error: 3 mistakes: clients.supplier.tenancy")
    assert f"```text\n{printed}\n```" in (ROOT / "README.md").read_text(encoding="utf-8")
