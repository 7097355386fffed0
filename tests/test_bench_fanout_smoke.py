"""Smoke test of `python -m bench.fanout --quick`: it starts its cluster, opens its streams, sees a renewal
reach them and prints its figures. Only counts are checked (every stream open, every one got the renewal,
none refused or CANCELLED); no speed is: figures on a shared CI machine prove nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs redis-server (scripts/test.sh installs it)"
)
def test_bench_fanout_quick_sees_every_stream_open_and_renewed(tmp_path: Path) -> None:
    figures = tmp_path / "fanout.json"
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench.fanout", "--quick", "--json", str(figures)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = bench.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        bench.terminate()  # SIGTERM: the bench stops the processes it started
        stdout, stderr = bench.communicate(timeout=30)
        pytest.fail(f"the bench did not finish within 60 s\nstdout:\n{stdout}\nstderr:\n{stderr}")
    assert bench.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    for section in ("renewals", "opening bursts", "memory per stream"):
        assert section in stdout, stdout
    document = json.loads(figures.read_text())["fanout"]
    (cycle,) = document["cycles"]
    assert (cycle["asked"], cycle["opened"], cycle["failed"]) == (300, 300, {}), stdout
    assert document["renewals"], stdout
    first = document["renewals"][0]
    assert first["streams"] == first["open_streams"] == 300, stdout
    assert document["streams_ended_while_open"] == {}, stdout
