"""Allowed URL prefixes are normalised once, at load, or stop the start naming their field."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import load_config
from broker.errors import ConfigurationError

from .test_config import ENV, VALID, write

PREFIX = '"https://sfm.test.nhn.no/api/"'


def test_prefixes_are_stored_in_normal_form_when_the_configuration_loads(tmp_path: Path) -> None:
    text = VALID.replace(PREFIX, '"HTTPS://SFM.Test.NHN.no:443/v1/../api/%7eall", "http://LOCALHOST:80"')
    config = load_config(write(tmp_path, text), ENV)
    assert config.targets["sfm"].allowed_urls == ("https://sfm.test.nhn.no/api/~all", "http://localhost/")


@pytest.mark.parametrize(
    "prefix",
    [
        '"https://user@sfm.test.nhn.no/api/"',
        '"https://sfm.test.nhn.no/api/?x=1"',
        '"https://sfm.test.nhn.no/api/#top"',
        '"https://sfm.test.nhn.no/api%2fv2/"',
        '"https://0x7f.1/api/"',
        '"http://sfm.test.nhn.no/api/"',
        '"ftp://sfm.test.nhn.no/api/"',
        '"https://sfm.test.nhn.no/api/..;/"',
    ],
)
def test_prefix_stops_the_start_naming_its_field_when_it_does_not_normalise(
    tmp_path: Path, prefix: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_config(write(tmp_path, VALID.replace(PREFIX, prefix)), ENV)
    assert caught.value.field == "targets.sfm.allowed_urls[0]"
