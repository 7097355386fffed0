"""The contract protects its clients: `buf breaking` compares protos/ with the image of the last released
proto (protos/released/, written by scripts/release-proto.sh), so a change that would break an installed
client (a field removed, renumbered or retyped, an RPC removed, a package renamed) fails the build.

buf is the pinned one of scripts/buf.sh (as for `buf lint`). Both sides are binary images made with protoc
(grpcio-tools), so buf needs no registry for googleapis' imports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import google.api

ROOT = Path(__file__).resolve().parents[2]
# FILE: the strictest of buf's breaking-change categories, the one generated code depends on.
BUF_CONFIG = '{"version":"v2","breaking":{"use":["FILE"]}}'
GOOGLEAPIS = Path(next(iter(google.api.__path__))).parents[1]


def last_release() -> Path:
    def version(path: Path) -> tuple[int, ...]:
        found = re.search(r"broker-v1-(\d+)\.(\d+)\.(\d+)\.binpb$", path.name)
        assert found, path
        return tuple(int(part) for part in found.groups())

    released = sorted((ROOT / "protos" / "released").glob("broker-v1-*.binpb"), key=version)
    assert released, "no released proto image in protos/released/"
    return released[-1]


def image(protos: Path, out: Path) -> Path:
    sources = sorted(str(path) for path in (protos / "broker" / "v1").glob("*.proto"))
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{protos}",
        f"-I{GOOGLEAPIS}",
        "--include_imports",
    ]
    subprocess.run([*command, f"--descriptor_set_out={out}", *sources], check=True)
    return out


def breaking(current: Path, against: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(ROOT / "scripts" / "buf.sh"),
            "breaking",
            str(current),
            "--against",
            str(against),
            "--config",
            BUF_CONFIG,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_protos_do_not_break_the_last_released_clients(tmp_path: Path) -> None:
    against = last_release()
    result = breaking(image(ROOT / "protos", tmp_path / "current.binpb"), against)
    print(f"buf breaking against {against.name}: exit {result.returncode}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_removed_field_would_fail_the_build(tmp_path: Path) -> None:
    changed = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", changed)
    service = changed / "broker" / "v1" / "token_broker_service.proto"
    text = service.read_text()
    field = "\n  string dpop_nonce = 5 [(google.api.field_behavior) = OPTIONAL];"
    assert field in text
    service.write_text(text.replace(field, "", 1))
    result = breaking(image(changed, tmp_path / "changed.binpb"), last_release())
    print(result.stdout.strip())
    assert result.returncode != 0
    assert "deleted" in result.stdout
    assert "dpop_nonce" in result.stdout
