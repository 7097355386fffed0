"""A tenants directory: one TOML file per tenant beside the main file, the shape a mounted ConfigMap gives.

`tenants_directory = "tenants.d"` in the main file (relative: to the main file's folder) names it. Each
`<name>.toml` in it holds one tenant's fields at its top level (`client`, `targets`, `orgnr_parent`, ...);
the file name without `.toml` is the tenant's name, so a file cannot claim another tenant's name. Entries
whose names start with a dot are skipped: Kubernetes mounts a ConfigMap as `..data` (a symlink to a
timestamped folder) and one symlink per key into it; the per-key symlinks are followed. Other files and
folders are ignored.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.config.problems import Problems

SUFFIX = ".toml"


@dataclass(frozen=True, slots=True)
class TenantFiles:
    """The tenants read from a directory (name -> raw table) and the file each came from, as written
    in messages (`tenants.d/oslo.toml`)."""

    tables: Mapping[str, Mapping[str, Any]]
    files: Mapping[str, str]


def tenant_file_paths(directory: Path) -> list[Path]:
    """The tenant files of `directory`, by name; none when it does not exist (the caller reports that)."""
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    return sorted(
        (entry for entry in entries if not entry.name.startswith(".") and entry.name.endswith(SUFFIX)),
        key=lambda entry: entry.name,
    )


def read_tenant_files(directory: Path, shown: str, problems: Problems) -> TenantFiles:
    """Every tenant file of `directory`; each unreadable file is recorded under its own name."""
    if not directory.is_dir():
        problems.add("tenants_directory", f"{shown} is not a readable directory")
        return TenantFiles({}, {})
    tables: dict[str, Mapping[str, Any]] = {}
    files: dict[str, str] = {}
    for path in tenant_file_paths(directory):
        name = path.name[: -len(SUFFIX)]
        where = f"{shown}/{path.name}"
        if not path.is_file():  # a folder named *.toml, or a dangling symlink
            continue
        try:
            tables[name] = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.add(where, f"cannot read the tenant file ({exc.strerror})")
            continue
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.add(where, f"not valid TOML: {exc}")
            continue
        files[name] = where
    return TenantFiles(tables, files)
