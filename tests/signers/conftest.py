"""One SoftHSM2 token for the whole session: SoftHSM reads its configuration once per process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.softhsm import SoftHsm, softhsm_token


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    with softhsm_token(tmp_path_factory.mktemp("softhsm")) as hsm:
        yield hsm
