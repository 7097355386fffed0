"""deploy/healthcheck.py, the image's HEALTHCHECK and the TLS probe of the chart, against a real broker."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from broker.config import BrokerConfig
from tests.fixtures.broker_server import running_broker
from tests.fixtures.redis_server import free_port

HEALTHCHECK = Path(__file__).resolve().parents[2] / "deploy" / "healthcheck.py"


async def _check(address: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK),
        "--address",
        address,
        "--timeout",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, output.decode().strip()


async def test_healthcheck_says_serving_for_a_running_broker_and_fails_without_one() -> None:
    async with running_broker(BrokerConfig(clients={}, targets={}, tenants={})) as address:
        serving = await _check(address)
    nobody = await _check(f"127.0.0.1:{free_port()}")
    print(f"running broker: {serving}; closed port: {nobody}")
    assert serving == (0, "SERVING")
    assert nobody[0] == 1
    assert nobody[1].startswith("unhealthy: UNAVAILABLE")
