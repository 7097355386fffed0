"""Smoke tests of `python -m bench`: it sets up its stack, runs its rows and prints its tables.

They check that the benchmark runs, not how fast anything is: figures on a shared CI machine prove nothing.
The one figure checked is a count, not a speed: a warm cluster asks the STS once per key, not once per
replica.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
ROW_LABELS = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)")
TENANT_ROW_LABELS = ("(g)", "(h)")


NO_REDIS = shutil.which("redis-server") is None


def run_bench(arguments: list[str], timeout: float) -> str:
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", *arguments],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the bench stops the processes it started
        try:
            stdout, stderr = bench.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            bench.kill()
            stdout, stderr = bench.communicate()
        pytest.fail(f"the bench did not finish within {timeout:.0f} s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    assert bench.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    return stdout


def table_rows(stdout: str, labels: tuple[str, ...]) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        if line.startswith(labels):
            rows[line[:3]] = re.split(r"\s{2,}", line.strip())
    return rows


@pytest.mark.skipif(NO_REDIS, reason="needs redis-server (scripts/test.sh installs it)")
def test_bench_quick_prints_the_rows_and_the_warm_cluster(tmp_path: Path) -> None:
    figures = tmp_path / "bench.json"
    quick = ["--quick", "--workers", "1", "--clients", "1", "--concurrency", "4", "--replicas", "2"]
    stdout = run_bench([*quick, "--json", str(figures)], timeout=55)
    rows = table_rows(stdout, ROW_LABELS)
    assert set(rows) == set(ROW_LABELS), stdout
    for label, cells in rows.items():
        assert float(cells[1]) > 0, f"row {label} has no throughput:\n{stdout}"
    assert "GetToken hits / ceiling" in stdout
    assert "cluster GetToken hits / ceiling" in stdout
    cluster = json.loads(figures.read_text())["cluster"]
    assert cluster["replicas"] == 2
    assert cluster["same_token_on_every_replica"] is True
    # One warm key: one token issued for the whole cluster, however many replicas warmed it.
    assert cluster["setup_sts"]["tokens_issued"] == 1, stdout
    assert cluster["rows"][1]["sts_token_requests"] == 0, stdout


@pytest.mark.skipif(NO_REDIS, reason="needs redis-server (scripts/test.sh installs it)")
def test_bench_many_tenants_tiny(tmp_path: Path) -> None:
    figures = tmp_path / "tenants.json"
    tiny = ["--many-tenants", "--tenants", "50", "--lifetime", "10", "--quick", "--clients", "1"]
    stdout = run_bench([*tiny, "--concurrency", "8", "--json", str(figures)], timeout=55)
    rows = table_rows(stdout, TENANT_ROW_LABELS)
    assert set(rows) == set(TENANT_ROW_LABELS), stdout
    for label, cells in rows.items():
        assert float(cells[1]) > 0, f"row {label} has no throughput:\n{stdout}"
    for section in ("(a) warm-up", "(b) steady state", "(c) memory per replica"):
        assert section in stdout
    document = json.loads(figures.read_text())["many_tenants"]
    assert document["warmup"]["all_fetched"] is True, stdout
    assert document["steady"]["tokens_issued"] > 0, stdout
    assert all(value is not None for value in document["memory"]["rss_all_fetched_kib"])
