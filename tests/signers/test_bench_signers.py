"""`python -m bench.signers` runs and prints a row per key kind; its figures are not checked (a shared CI
machine's speed proves nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS = (
    "in-memory ES256",
    "in-memory PS256 RSA-2048",
    "in-memory PS256 RSA-4096",
    "SoftHSM ES256",
    "SoftHSM PS256 RSA-2048",
)


def test_the_signer_benchmark_prints_every_key_kind() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.signers", "--rounds", "1", "--seconds", "0.02"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["key", "kind", "sign", "µs"]
    for kind in KINDS:
        row = next(line for line in lines if line.startswith(kind))
        sign_us, per_s = row[len(kind) :].split()[:2]
        assert float(sign_us) > 0
        assert float(per_s) > 0
