"""Style rules enforced by tools, not memory: ruff and mypy --strict over the whole project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check(*command: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_ruff_finds_nothing() -> None:
    check(sys.executable, "-m", "ruff", "check", "broker", "devauthority", "tests", "bench")


def test_mypy_strict_finds_nothing() -> None:
    check(sys.executable, "-m", "mypy", "broker", "devauthority", "bench")
