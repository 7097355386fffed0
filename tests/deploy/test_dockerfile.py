"""deploy/Dockerfile, checked statically (no Docker engine here): pinned base, numeric non-root user, only
the runtime dependencies, both ports exposed, a HEALTHCHECK on the gRPC health service."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for word, arguments in self.instructions if word == keyword]


def _parse() -> tuple[dict[str, str], list[Stage]]:
    """Instructions with continuation lines joined; ARGs before the first FROM, then the stages."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, arguments = line.partition(" ")
        word, arguments = word.upper(), arguments.strip()
        if word == "FROM":
            parts = arguments.split()
            stages.append(Stage(parts[0], parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        elif stages:
            stages[-1].instructions.append((word, arguments))
        elif word == "ARG":
            name, _, default = arguments.partition("=")
            args[name] = default
    return args, stages


def _resolve(base: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)


def test_every_stage_uses_a_base_pinned_by_exact_tag_and_digest() -> None:
    args, stages = _parse()
    bases = {_resolve(stage.base, args) for stage in stages}
    pinned = re.compile(r"^[\w./-]+:\d+\.\d+\.\d+[\w.-]*@sha256:[0-9a-f]{64}$")
    print(f"bases: {sorted(bases)}")
    assert bases, "no FROM"
    assert all(pinned.match(base) for base in bases), bases


def test_the_image_runs_as_a_numeric_non_root_user_with_only_the_runtime_dependencies() -> None:
    _, stages = _parse()
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), user
    assert int(uid) > 0, user
    assert gid.isdigit(), user
    assert int(gid) > 0, user
    # The broker's image is the last stage; it copies the build stage's virtual environment, which installs
    # the project with no extras (no dev tools, no dev authority).
    (build,) = [s for s in stages if s.name == "build"]
    installs = [run for run in build.all("RUN") if "pip install" in run]
    assert installs, "the build stage installs the broker"
    assert all("[" not in run.split("pip install", 1)[1] for run in installs), installs
    assert any("--from=build" in copy for copy in runtime.all("COPY"))
    assert not any("pip install" in run for run in runtime.all("RUN")), "the runtime stage installs nothing"
    print(f"runtime stage: USER {user}; build installs {installs}")


def test_the_image_exposes_grpc_and_metrics_and_checks_the_grpc_health_service() -> None:
    _, stages = _parse()
    runtime = stages[-1]
    exposed = {port for line in runtime.all("EXPOSE") for port in line.split()}
    assert {"50051", "9464"} <= exposed
    (healthcheck,) = runtime.all("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD")
    argv = json.loads(command)
    assert argv[:2] == ["python", "/opt/helseid-broker/healthcheck.py"]
    assert any("deploy/healthcheck.py /opt/helseid-broker/healthcheck.py" in c for c in runtime.all("COPY"))
    assert "--interval=" in options
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["helseid-broker"]
    print(f"EXPOSE {sorted(exposed)}; HEALTHCHECK {shlex.join(argv)}")
