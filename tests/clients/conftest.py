"""The fixture every client's test module uses: a broker with the embedded defaults and the demo API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.clients.runner import DemoBroker, demo_broker_process


@pytest.fixture(scope="module")
def demo_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoBroker]:
    with demo_broker_process(tmp_path_factory.mktemp("broker")) as running:
        yield running
