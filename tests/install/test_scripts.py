"""scripts/venv.sh, which run.sh and test.sh source: a project virtual environment from `python3` alone.

The test lays out a tiny project (a pyproject.toml with one module and an extra, and the real scripts/venv.sh)
in a temp folder and sources the script with a PATH that has `python3` but no `python` (the Debian
situation), so it installs in seconds. The base interpreter is the system's /usr/bin/python3 where that one
is externally managed (PEP 668: a global pip install would fail there), else this run's base interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "venv-probe"
version = "0.0.1"

[project.optional-dependencies]
dev = []

[tool.setuptools]
py-modules = ["probe"]
"""

# What run.sh and test.sh do, then a line that tells which interpreter `python` now is.
SHELL = """\
set -euo pipefail
source scripts/venv.sh
ensure_venv dev dev-authority
python -c 'import sys, probe; print(sys.prefix); print(probe.__file__)'
"""


def _base_python() -> Path:
    if SYSTEM_PYTHON.exists():
        marker = subprocess.run(
            [str(SYSTEM_PYTHON), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if Path(marker, "EXTERNALLY-MANAGED").exists():
            return SYSTEM_PYTHON
    return Path(getattr(sys, "_base_executable", sys.executable))


def _project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "venv.sh", project / "scripts" / "venv.sh")
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "probe.py").write_text('"""An importable module."""\n')
    # Only python3 in a folder of its own, then the system's tools; never this run's virtual environment.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "python3").symlink_to(_base_python())
    system = [d for d in ("/usr/local/bin", "/usr/bin", "/bin") if Path(d).is_dir()]
    keep = {
        k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PATH"}
    }
    return project, {**keep, "PATH": os.pathsep.join([str(tools), *system])}


def _source(project: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", SHELL], cwd=project, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result, time.monotonic() - started


def test_venv_sh_creates_the_environment_from_python3_and_reinstalls_only_on_change(tmp_path: Path) -> None:
    project, env = _project(tmp_path)
    # `python` may exist on some systems (python-is-python3); the scripts must not need it.
    bare_python = shutil.which("python", path=env["PATH"])

    first, first_s = _source(project, env)
    second, second_s = _source(project, env)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "0.0.1"', 'version = "0.0.2"'))
    third, third_s = _source(project, env)

    venv = project / ".venv"
    prefix, module = first.stdout.splitlines()
    stamp = (venv / ".installed").read_text().split()
    print(
        f"venv.sh with python3 -> {_base_python()}: created + installed in {first_s:.1f} s, "
        f"unchanged re-run {second_s:.1f} s, after a pyproject.toml change {third_s:.1f} s; "
        f"stamp extras {stamp[1:]}; `python` on PATH before: {bare_python}"
    )
    assert Path(prefix) == venv
    # Editable: the module is the project's file, not a copy in site-packages.
    assert Path(module) == project / "probe.py"
    assert "installing .[dev] into .venv" in first.stderr
    assert "creating" not in second.stderr
    assert "installing" not in second.stderr
    assert second.stdout == first.stdout
    assert "installing .[dev] into .venv" in third.stderr
    # An extra pyproject.toml does not define (dev-authority here) is left out, not an error.
    assert stamp[1:] == ["dev"]
    # The base interpreter's own site-packages got nothing.
    base_site = subprocess.run(
        [str(_base_python()), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert not list(Path(base_site).glob("venv_probe*")), base_site
