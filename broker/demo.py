"""The embedded defaults: with no configuration the broker starts its own dev authority and a demo tenant.

Everything stays on loopback and in memory; the demo keys are generated at start and never written anywhere.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from broker.app import serve
from broker.config import BrokerConfig, ServerSettings
from broker.devauthority import RegisteredClient, start_dev_authority
from broker.model import Client, Target, Tenancy, Tenant
from broker.protocol import keys

DEMO_CLIENT_ID = "helseid-broker-demo"
DEMO_SUPPLIER = "999999999"
DEMO_TENANT = Tenant(
    name="demo",
    client="demo",
    targets=("demo-api",),
    orgnr_parent="912345678",
    orgnr_child="998877665",
    sfm_journal_id="6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    warm_targets=("demo-api",),
)
DEMO_TARGET = Target(
    name="demo-api",
    scopes=("nhn:demo-api/read",),
    resource="nhn:demo-api",
    allowed_urls=("https://api.demo.test/",),
)


async def run_demo(*, listen: str) -> None:
    signing_key = keys.generate_signing_key("ES256")
    dpop_key = keys.generate_signing_key("ES256")
    authority = await start_dev_authority(
        clients=[
            RegisteredClient(
                client_id=DEMO_CLIENT_ID,
                jwks={"keys": [keys.public_jwk(signing_key)]},
                tenancy="multi",
                organization_number=DEMO_SUPPLIER,
                allowed_scopes=DEMO_TARGET.scopes,
            )
        ],
        token_lifetime=timedelta(minutes=5),
    )
    client = Client("demo", DEMO_CLIENT_ID, authority.issuer, Tenancy.MULTI, signing_key, dpop_key)
    config = BrokerConfig(
        clients={"demo": client},
        targets={"demo-api": DEMO_TARGET},
        tenants={"demo": DEMO_TENANT},
        server=ServerSettings(listen=listen),
    )
    try:
        await serve(
            config, listen=listen, on_ready=lambda port: _print_welcome(listen, port, authority.issuer)
        )
    finally:
        await authority.stop()


def _print_welcome(listen: str, port: int, issuer: str) -> None:
    address = f"{listen.rsplit(':', 1)[0]}:{port}"
    print(
        f"broker listening on {address} (embedded defaults: in-memory store, dev authority at {issuer}, "
        f"tenant 'demo', target 'demo-api')\n"
        f"get a token:   python -m broker token --address {address} --tenant demo --target demo-api\n"
        f"get headers:   python -m broker token --address {address} --tenant demo --target demo-api "
        f"--url https://api.demo.test/records",
        file=sys.stderr,
        flush=True,
    )
