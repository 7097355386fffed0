"""The dev authority is its own package with its own extra: the broker's package and its runtime
dependencies hold none of it, and the embedded defaults say in one line when the extra is missing."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import setuptools

import broker
import devauthority
from broker.demo import MISSING_EXTRA

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = frozenset({"devauthority"})


def _project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def _names(requirements: list[str]) -> set[str]:
    """The distribution names of PEP 508 requirement strings ("aiohttp>=3.9" -> "aiohttp")."""
    names = set()
    for requirement in requirements:
        name = requirement
        for stop in "<>=!~;[ ":
            name = name.split(stop, 1)[0]
        names.add(name.strip().lower())
    return names


def test_the_built_package_list_keeps_the_dev_authority_out_of_the_broker_package() -> None:
    project = _project()
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    # The same search setuptools runs when it builds the wheel.
    packages = setuptools.find_packages(where=str(ROOT), include=include)
    broker_dir = Path(broker.__file__).parent
    print(f"packages in the wheel: {len(packages)}, top level: {sorted(p for p in packages if '.' not in p)}")
    assert "devauthority" in packages
    assert not [p for p in packages if p.startswith("broker.") and "devauthority" in p]
    assert not (broker_dir / "devauthority").exists()
    assert Path(devauthority.__file__).parent.parent == broker_dir.parent


def test_aiohttp_is_a_runtime_dependency_for_the_token_endpoint_only() -> None:
    project = _project()["project"]
    runtime = _names(project["dependencies"])
    print(f"runtime dependencies: {len(runtime)}")
    assert "aiohttp" in runtime  # the token endpoint's transport (and so the dev authority's too)
    importers = []
    for module in sorted((ROOT / "broker").rglob("*.py")):
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                else []
            )
            if any(name.split(".")[0] == "aiohttp" for name in names):
                importers.append(module.relative_to(ROOT).as_posix())
    print(f"broker modules importing aiohttp: {importers}")
    assert importers == ["broker/idp/token_transport.py"]


def test_only_the_embedded_defaults_import_the_dev_authority() -> None:
    importers: list[str] = []
    modules = sorted((ROOT / "broker").rglob("*.py"))
    for module in modules:
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            importers += [f"{module.relative_to(ROOT).as_posix()}: {root}" for root in roots & DEV_ONLY]
    print(f"broker modules scanned: {len(modules)}, imports of the dev authority: {importers}")
    assert importers == ["broker/demo.py: devauthority"]


def test_embedded_defaults_without_the_dev_authority_exit_with_one_line() -> None:
    # The dev authority hidden, as in a repackaging without it; run as `python -m broker run`.
    hide_extra = (
        "import runpy, sys; sys.modules['devauthority'] = None; sys.argv = ['broker', 'run']; "
        "runpy.run_module('broker', run_name='__main__', alter_sys=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = result.stderr.strip().splitlines()
    print(f"exit code {result.returncode}, stderr lines {len(lines)}: {lines}")
    assert result.returncode == 2
    assert lines == [MISSING_EXTRA]
    assert "pip install ." in MISSING_EXTRA
    assert "Traceback" not in result.stderr
