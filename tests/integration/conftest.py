from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.broker_server import sfm_clients
from tests.fixtures.redis_server import RunningRedis, start_redis
from tests.fixtures.sts import STS_KINDS, RunningSts, TestClient, running_sts


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=STS_KINDS)
def sts(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningSts, tuple[TestClient, TestClient]]]:
    """Each STS process, with a multi-tenant and a single-tenant client registered."""
    clients = sfm_clients()
    workdir: Path = tmp_path_factory.mktemp(str(request.param))
    with running_sts(str(request.param), workdir, clients) as running:
        yield running, clients
