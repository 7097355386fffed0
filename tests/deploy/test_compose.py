"""deploy/compose.yaml: valid against the Compose Specification's JSON schema, and the stack it describes
holds together: two broker replicas on one Redis with AOF, a collector, the dev authority; the setup
script's secrets make both replicas' configurations pass check-config and the dev authority start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.fixtures.compose_schema import compose_schema

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_file_matches_the_compose_specification_schema() -> None:
    schema = compose_schema()
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(_compose()))
    services = sorted(_compose()["services"])
    print(f"compose.yaml: {len(services)} services {services}, {len(errors)} schema errors")
    assert not errors, "\n".join(f"{e.json_path}: {e.message}" for e in errors)


def test_compose_schema_rejects_a_misspelt_key() -> None:
    # The schema is strict enough to matter: an unknown service key is an error.
    broken = _compose()
    broken["services"]["redis"]["healtcheck"] = broken["services"]["redis"].pop("healthcheck")
    assert list(jsonschema.Draft201909Validator(compose_schema()).iter_errors(broken))


def test_compose_stack_has_two_hardened_brokers_redis_with_aof_a_collector_and_the_dev_authority() -> None:
    services = _compose()["services"]
    brokers = {name: s for name, s in services.items() if name.startswith("broker-")}
    assert len(brokers) == 2
    for name, broker in brokers.items():
        assert broker["user"] == "10001:10001", name
        assert broker["read_only"] is True, name
        assert broker["cap_drop"] == ["ALL"], name
        assert "healthcheck.py" in " ".join(broker["healthcheck"]["test"]), name
        assert broker["depends_on"]["redis"]["condition"] == "service_healthy", name
        mounted = [v.split(":")[0] for v in broker["volumes"]]
        assert all((DEPLOY / m).exists() for m in mounted if m.startswith("./")), name
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis
    assert services["otel-collector"]["image"].startswith("otel/opentelemetry-collector")
    assert services["dev-authority"]["build"]["target"] == "dev-authority"
    print(f"compose: brokers {sorted(brokers)}, redis '{redis}'")


def test_compose_secrets_make_both_broker_configurations_and_the_dev_authority_start(tmp_path: Path) -> None:
    # The containers' layout: /etc/helseid-broker/{config,dev-secrets}.
    secrets_dir = tmp_path / "dev-secrets"
    subprocess.run(
        [sys.executable, str(DEPLOY / "compose" / "dev_setup.py"), str(secrets_dir)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    made = sorted(p.name for p in secrets_dir.iterdir())
    assert made == ["audit.key", "caller", "clients.json", "store.key", "supplier.jwk"]
    public = json.loads((secrets_dir / "clients.json").read_text())[0]["jwks"]["keys"][0]
    assert "d" not in public, "the dev authority gets the public key only"
    outputs = []
    for replica in ("broker-a", "broker-b"):
        config = tmp_path / "config" / f"{replica}.toml"
        config.parent.mkdir(exist_ok=True)
        config.write_text((DEPLOY / "compose" / f"{replica}.toml").read_text())
        result = subprocess.run(
            [sys.executable, "-m", "broker", "check-config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(f"{replica}: {result.stdout.strip().rsplit(': ', 1)[-1]}")
    authority = subprocess.Popen(
        [sys.executable, "-m", "devauthority", "--port", "0", "--clients", str(secrets_dir / "clients.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert authority.stdout is not None
        ready = json.loads(authority.stdout.readline())
    finally:
        authority.terminate()
        authority.wait(timeout=10)
    print(f"compose secrets {made}; {outputs}; dev authority listened on port {ready['port']}")
    assert ready["port"] > 0
