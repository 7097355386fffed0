"""The house rules of design.md that the code must keep: the import layers (import-linter, contracts in
pyproject.toml) and a pure protocol/ package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "broker" / "protocol"
# protocol/ takes data and returns data: no event loop, no network, no telemetry.
FORBIDDEN_IN_PROTOCOL = frozenset({"asyncio", "httpx", "redis", "grpc", "aiohttp", "opentelemetry"})


def _protocol_modules() -> list[Path]:
    modules = sorted(PROTOCOL.rglob("*.py"))
    assert modules, f"no modules under {PROTOCOL}"
    return modules


def _imported_roots(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in the tree, nested ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_protocol_has_no_async_def() -> None:
    problems: list[str] = []
    for module in _protocol_modules():
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        where = module.relative_to(ROOT).as_posix()
        problems += [
            f"{where}:{node.lineno}: async def {node.name}"
            for node in ast.walk(tree)
            if isinstance(node, ast.AsyncFunctionDef)
        ]
        problems += [
            f"{where}:{line}: imports {name}"
            for line, name in _imported_roots(tree)
            if name in FORBIDDEN_IN_PROTOCOL
        ]
    assert not problems, "broker/protocol must stay pure:\n" + "\n".join(problems)


def test_import_layers_hold() -> None:
    # lint-imports sits next to this interpreter when import-linter (a dev extra) is installed.
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    lint_imports = shutil.which("lint-imports", path=search_path)
    assert lint_imports, "lint-imports not found: pip install -e '.[dev]' (import-linter)"
    result = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"lint-imports failed:\n{result.stdout}\n{result.stderr}", pytrace=False)
