"""Smoke test of `python -m bench.cores` with h2load: both brokers come up, every row runs, and h2load's
calls are real gRPC successes by the broker's own count.

It checks that the benchmark runs and counts right, not how fast anything is. Skipped where h2load is not
installed (scripts/bench-tools.sh installs it; CI does not run the bench).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(shutil.which("h2load") is None, reason="needs h2load (scripts/bench-tools.sh)"),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]


def test_bench_cores_quick_with_h2load(tmp_path: Path) -> None:
    figures = tmp_path / "cores.json"
    command = [
        sys.executable,
        "-m",
        "bench.cores",
        "--quick",
        "--generators",
        "h2load",
        "--json",
        str(figures),
    ]
    bench = subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = bench.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the bench stops the processes it started
        stdout, stderr = bench.communicate(timeout=30)
        pytest.fail(f"bench.cores did not finish within 90 s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    assert bench.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    assert "workers=2 / workers=1" in stdout

    document = json.loads(figures.read_text())
    # h2load's request of each RPC, sent 20 times: 20 OK calls by the broker's count, none failed.
    assert document["h2load_check"] == {
        "ceiling": {"ok_per_worker": [20], "not_ok": {}},
        "get_token": {"ok_per_worker": [20], "not_ok": {}},
    }
    rows = document["rounds"][0]
    assert sorted((row["rpc"], row["workers"]) for row in rows) == [
        ("ceiling", 1),
        ("ceiling", 2),
        ("get_token", 1),
        ("get_token", 2),
    ]
    for row in rows:
        broker = row["broker_calls"]
        assert row["calls"] > 0, row
        assert row["errors"] == 0, row
        assert broker["not_ok"] == {}, row
        assert len(broker["ok_per_worker"]) == row["workers"], row
        # The broker counted the warm-up's calls too: at least every call h2load counted in the window.
        assert sum(broker["ok_per_worker"]) >= row["calls"], row
        assert row["sts_token_requests"] == 0, row  # GetToken rows are cache hits
