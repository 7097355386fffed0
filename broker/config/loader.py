"""Reading a configuration: the file, then every section validated, then the domain; all mistakes at once."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broker.config.domain import build_config, check_tenant
from broker.config.models import TenantModel, validate_file
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
    problems = Problems(raw)
    file = validate_file(raw, problems)
    config = build_config(file, SecretReader(base_dir, environ), problems)
    problems.raise_if_any()
    return config


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
