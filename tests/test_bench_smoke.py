"""Smoke test of `python -m bench`: it sets up its stack, runs the four rows and prints a table.

It checks that the benchmark runs, not how fast anything is: figures on a shared CI machine prove nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ROW_LABELS = ("(a)", "(b)", "(c)", "(d)")


NO_REDIS = shutil.which("redis-server") is None


@pytest.mark.skipif(NO_REDIS, reason="needs redis-server (scripts/test.sh installs it)")
def test_bench_quick_prints_four_rows_with_throughput(tmp_path: Path) -> None:
    figures = tmp_path / "bench.json"
    command = [sys.executable, "-m", "bench", "--quick", "--workers", "1", "--clients", "1"]
    bench = subprocess.Popen(
        [*command, "--concurrency", "4", "--json", str(figures)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=50)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the bench stops the processes it started
        try:
            stdout, stderr = bench.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            bench.kill()
            stdout, stderr = bench.communicate()
        pytest.fail(f"the bench did not finish within 50 s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    assert bench.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    rows = {}
    for line in stdout.splitlines():
        if line.startswith(ROW_LABELS):
            cells = re.split(r"\s{2,}", line.strip())
            rows[line[:3]] = cells
    assert set(rows) == set(ROW_LABELS), stdout
    for label, cells in rows.items():
        assert float(cells[1]) > 0, f"row {label} has no throughput:\n{stdout}"
    assert "GetToken hits / ceiling" in stdout
    assert figures.exists()
