"""The `[audit]` section: what it sets, what it defaults to, and how a mistake is named (never a key)."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from pathlib import Path

import pytest

from broker.audit import AuditSettings
from broker.config import load_config
from broker.errors import ConfigurationError
from tests.unit.config.test_config import ENV, VALID, write

KEY = base64.b64encode(os.urandom(32)).decode()


def _load(
    tmp_path: Path, audit: str, telemetry: str = "", env: dict[str, str] | None = None
) -> AuditSettings:
    text = f"{VALID}\n[telemetry]\n{telemetry}\n\n[audit]\n{audit}\n"
    return load_config(write(tmp_path, text), {**ENV, "AUDIT_KEY": KEY, **(env or {})}).audit


def test_no_audit_section_gives_the_log_stream_a_random_key_and_fsync(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, VALID), ENV).audit
    assert settings == AuditSettings()
    assert (settings.directory, settings.hash_key, settings.fsync) == (None, None, True)


def test_audit_section_sets_directory_relative_to_the_file_key_otel_and_flushing(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        'directory = "audit"\nhash_key = { env = "AUDIT_KEY" }\notel = true\n'
        "fsync = false\nflush_interval_s = 0.05",
        telemetry='otlp_endpoint = "http://127.0.0.1:4318"',
    )
    assert settings.directory == tmp_path / "audit"
    assert settings.hash_key == base64.b64decode(KEY)
    assert settings.otlp_endpoint == "http://127.0.0.1:4318"
    assert (settings.fsync, settings.flush_interval) == (False, timedelta(milliseconds=50))
    assert KEY not in repr(settings)


@pytest.mark.parametrize(
    ("audit", "field"),
    [
        ("otel = true", "audit.otel"),  # no telemetry.otlp_endpoint to export to
        ("fsync = 1", "audit.fsync"),
        ("flush_interval_s = 5", "audit.flush_interval_s"),
        ('hash_key = { env = "SHORT_KEY" }', "audit.hash_key"),
        ('hash_key = "inline"', "audit.hash_key"),
        ('file = "audit.jsonl"', "audit.file"),
    ],
)
def test_audit_mistakes_name_their_field_and_not_the_key(tmp_path: Path, audit: str, field: str) -> None:
    short = base64.b64encode(b"k" * 16).decode()
    with pytest.raises(ConfigurationError) as error:
        _load(tmp_path, audit, env={"SHORT_KEY": short})
    assert error.value.field == field
    assert short not in str(error.value)
