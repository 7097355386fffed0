"""Reading a configuration: the file, then every section validated, then the domain; all mistakes at once."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from broker.config.directory import TenantFiles, read_tenant_files
from broker.config.domain import build_config, check_tenant
from broker.config.models import TENANTS_DIRECTORY, TenantModel, validate_file
from broker.config.problems import Problems
from broker.config.secrets import SecretReader
from broker.config.settings import BrokerConfig
from broker.errors import ConfigurationError
from broker.model import Tenant


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> BrokerConfig:
    """Reads and validates a configuration file; raises one ConfigurationError listing every mistake.

    Relative paths in the file (key files, the audit directory, a JWKS file) are relative to the file's
    folder, not to the directory the broker was started in."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(str(path), f"cannot read the configuration file ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(str(path), f"not valid TOML: {exc}") from None
    return parse_config(raw, base_dir=path.parent, environ=os.environ if environ is None else environ)


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, environ: Mapping[str, str]) -> BrokerConfig:
    """The main file's table plus its tenants directory (if it names one), validated whole: a mistake in a
    tenant file is reported under that file's name (`tenants.d/oslo.toml: orgnr_parent: ...`)."""
    problems = Problems(raw)
    directory = _tenants_directory(raw, base_dir, problems)
    found = TenantFiles({}, {}) if directory is None else read_tenant_files(*directory, problems)
    merged, origins = _merge_tenants(raw, found, problems)
    file = validate_file(merged, problems)
    config = build_config(file, SecretReader(base_dir, environ), problems)
    try:
        problems.raise_if_any()
    except ConfigurationError as exc:
        raise _named_by_file(exc, origins) from None
    if directory is not None:
        config = replace(config, tenants_directory=directory[0])
    return config


def _tenants_directory(raw: Mapping[str, Any], base_dir: Path, problems: Problems) -> tuple[Path, str] | None:
    """The folder `tenants_directory` names (relative: to the main file's folder), and its name as written."""
    value = raw.get(TENANTS_DIRECTORY)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        problems.add(TENANTS_DIRECTORY, "must be a path (relative: to this file's folder)")
        return None
    return base_dir / value, value.rstrip("/")


def _merge_tenants(
    raw: Mapping[str, Any], found: TenantFiles, problems: Problems
) -> tuple[dict[str, Any], dict[str, str]]:
    """The main file's table with the directory's tenants added to [tenants] (a name in both is refused),
    and the file of each tenant added."""
    merged = {key: value for key, value in raw.items() if key != TENANTS_DIRECTORY}
    origins: dict[str, str] = {}
    if not found.tables:
        return merged, origins
    own = raw.get("tenants", {})
    tenants = dict(own) if isinstance(own, Mapping) else {}
    for name, table in found.tables.items():
        if name in tenants:
            problems.add(f"tenants.{name}", f"defined in this file and in {found.files[name]}: keep one")
            continue
        tenants[name] = table
        origins[name] = found.files[name]
    merged["tenants"] = tenants
    return merged, origins


def _named_by_file(error: ConfigurationError, files: Mapping[str, str]) -> ConfigurationError:
    """`tenants.oslo.orgnr_parent` of a tenant from a file becomes `tenants.d/oslo.toml: orgnr_parent`."""
    if not files:
        return error

    def where(path: str) -> str:
        for name in sorted(files, key=len, reverse=True):
            prefix = f"tenants.{name}"
            if path == prefix:
                return files[name]
            if path.startswith(f"{prefix}."):
                return f"{files[name]}: {path[len(prefix) + 1 :]}"
        return path

    problems = [(where(path), message) for path, message in error.problems]
    return ConfigurationError(problems[0][0], problems[0][1], problems=problems)


def parse_tenant(name: str, raw: Mapping[str, Any], config: BrokerConfig) -> Tenant:
    """One tenant (from a tenants directory or the store) checked against a running configuration's clients
    and targets exactly as the main file's tenants are; ConfigurationError lists every mistake."""
    problems = Problems({"tenants": {name: raw}})
    path = f"tenants.{name}"
    model, failed = problems.validate_leniently(TenantModel, raw, path)
    tenancies = {client_name: client.tenancy for client_name, client in config.clients.items()}
    broken = {f"{path}.{field}" for field in failed}
    tenant = (
        None
        if model is None
        else check_tenant(name, model, tenancies, config.targets, problems, broken=broken)
    )
    problems.raise_if_any()
    assert tenant is not None  # no mistakes means the model validated
    return tenant
