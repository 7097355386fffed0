"""A tenants directory: one file per tenant beside the main file, read as a mounted ConfigMap lays it out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from broker.config import load_config
from broker.errors import ConfigurationError
from tests.unit.config.test_config import ENV, VALID, write

BERGEN = """
client = "supplier"
orgnr_parent = "923456789"
targets = ["sfm"]
warm = ["sfm"]
"""


def with_directory(tmp_path: Path, files: dict[str, str], main: str = VALID) -> Path:
    directory = tmp_path / "tenants.d"
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return write(tmp_path, 'tenants_directory = "tenants.d"\n' + main)


def test_tenants_of_the_main_file_and_the_directory_load_together(tmp_path: Path) -> None:
    config = load_config(with_directory(tmp_path, {"bergen.toml": BERGEN, "notes.txt": "ignored"}), ENV)
    print(f"tenants: {sorted(config.tenants)}")
    assert sorted(config.tenants) == ["bergen", "oslo"]
    assert config.tenants["bergen"].orgnr_parent == "923456789"
    assert config.tenants["bergen"].warm_targets == ("sfm",)
    assert config.tenants_directory == tmp_path / "tenants.d"


def test_a_configmap_mount_is_read_through_its_symlinks_and_dot_entries_are_skipped(tmp_path: Path) -> None:
    # What the kubelet writes: the keys in a timestamped folder, `..data` pointing at it, a symlink per key.
    directory = tmp_path / "tenants.d"
    stamped = directory / "..2026_12_01_12_00_00.000000001"
    stamped.mkdir(parents=True)
    (stamped / "bergen.toml").write_text(BERGEN)
    (stamped / "trondheim.toml").write_text(BERGEN.replace("923456789", "934567890"))
    os.symlink(stamped.name, directory / "..data")
    for key in ("bergen.toml", "trondheim.toml"):
        os.symlink(f"..data/{key}", directory / key)
    config = load_config(write(tmp_path, 'tenants_directory = "tenants.d"\n' + VALID), ENV)
    print(f"tenants through symlinks: {sorted(config.tenants)}")
    assert sorted(config.tenants) == ["bergen", "oslo", "trondheim"]


def test_a_mistake_in_a_tenant_file_names_the_file_and_the_field(tmp_path: Path) -> None:
    broken = BERGEN.replace('"923456789"', '"92345"').replace('warm = ["sfm"]', 'warm = ["kj"]')
    with pytest.raises(ConfigurationError) as caught:
        load_config(with_directory(tmp_path, {"bergen.toml": broken}), ENV)
    paths = [path for path, _ in caught.value.problems]
    print(f"problems: {caught.value.problems}")
    assert paths == ["tenants.d/bergen.toml: orgnr_parent", "tenants.d/bergen.toml: warm[0]"]


def test_unreadable_toml_and_unknown_fields_are_reported_per_file(tmp_path: Path) -> None:
    files = {"bergen.toml": "client = ", "molde.toml": BERGEN + 'name = "molde"\n'}
    with pytest.raises(ConfigurationError) as caught:
        load_config(with_directory(tmp_path, files), ENV)
    found = dict(caught.value.problems)
    assert found["tenants.d/bergen.toml"].startswith("not valid TOML")
    assert found["tenants.d/molde.toml: name"].startswith("unknown field")


def test_the_same_tenant_in_the_main_file_and_the_directory_names_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(with_directory(tmp_path, {"oslo.toml": BERGEN}), ENV)
    assert caught.value.problems == (
        ("tenants.oslo", "defined in this file and in tenants.d/oslo.toml: keep one"),
    )


def test_a_missing_directory_is_a_mistake_of_tenants_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, 'tenants_directory = "nowhere"\n' + VALID), ENV)
    assert caught.value.problems == (("tenants_directory", "nowhere is not a readable directory"),)


def test_every_tenant_may_live_in_the_directory(tmp_path: Path) -> None:
    main = VALID.split("[tenants.oslo]")[0]
    config = load_config(with_directory(tmp_path, {"bergen.toml": BERGEN}, main), ENV)
    assert list(config.tenants) == ["bergen"]
