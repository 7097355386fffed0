"""The demo environment the tests run against, from the variables tests/clients/conftest.py sets:
HELSEID_BROKER_ADDR, DEMO_API_URL, DEMO_BEARER_URL, DEMO_STATS_URL, DEMO_ROTATE_URL, DEMO_TENANT,
DEMO_TARGET, DEMO_BEARER_TARGET. A test that needs them fails, naming every one that is unset."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx
import pytest

NAMES = (
    "HELSEID_BROKER_ADDR",
    "DEMO_API_URL",
    "DEMO_BEARER_URL",
    "DEMO_STATS_URL",
    "DEMO_ROTATE_URL",
    "DEMO_TENANT",
    "DEMO_TARGET",
    "DEMO_BEARER_TARGET",
)


@dataclass(frozen=True)
class Demo:
    address: str
    api_url: str
    bearer_url: str
    stats_url: str
    rotate_url: str
    tenant: str
    target: str
    bearer_target: str

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = httpx.get(self.stats_url).json()["demo_api"]
        return counts

    def rotate_nonce(self) -> None:
        httpx.post(self.rotate_url).raise_for_status()


@pytest.fixture(scope="session")
def demo() -> Demo:
    missing = [name for name in NAMES if not os.environ.get(name)]
    if missing:
        pytest.fail(
            f"unset: {', '.join(missing)}. These tests run against a broker with the demo API: "
            "run them through tests/clients/test_python_client.py (or set the variables by hand)",
            pytrace=False,
        )
    return Demo(*(os.environ[name] for name in NAMES))
