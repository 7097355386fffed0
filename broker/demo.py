"""The embedded defaults: with no configuration the broker starts its own dev authority and a demo tenant.

Everything stays on loopback and in memory; the demo keys are generated at start and never written anywhere.
The dev authority is its own package (`devauthority/`, in the same distribution); this module is the only
part of the broker that imports it, and only when the defaults start, so a production broker never loads it.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import timedelta

from broker.app import serve
from broker.config import BrokerConfig, ServerSettings
from broker.model import Client, Target, Tenancy, Tenant, TokenType
from broker.protocol import keys

# The one line an operator sees when the defaults cannot start; the import error itself names a module only.
MISSING_EXTRA = (
    "the embedded defaults need the dev authority (the devauthority package), which is not installed: "
    "pip install . from the broker's source (or run with --config)"
)

DEMO_CLIENT_ID = "helseid-broker-demo"
DEMO_SUPPLIER = "999999999"
DEMO_TENANT = Tenant(
    name="demo",
    client="demo",
    targets=("demo-api", "demo-bearer"),
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
DEMO_BEARER_TARGET = Target(
    name="demo-bearer",
    scopes=("nhn:demo-bearer/read",),
    resource="nhn:demo-bearer",
    token_type=TokenType.BEARER,
)
# The dev authority serves a demo API (a resource server checking DPoP as NHN's APIs do) at these paths.
DEMO_API_PATH = "/demo-api/"
DEMO_BEARER_PATH = "/demo-bearer/"
DEFAULT_TOKEN_LIFETIME = timedelta(minutes=5)


def _exit_if_extra_missing(missing: ModuleNotFoundError) -> None:
    """Exits with one line (code 2) when the dev authority is not installed (a repackaging without it)."""
    # Any other missing module is a bug and keeps its traceback.
    if (missing.name or "").split(".")[0] == "devauthority":
        print(MISSING_EXTRA, file=sys.stderr, flush=True)
        raise SystemExit(2) from None


async def run_demo(*, listen: str, token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME) -> None:
    """Serves the embedded defaults; `token_lifetime` is the dev authority's (short ones show renewals)."""
    try:
        # Loaded only when the defaults start (see the module doc).
        from devauthority import RegisteredClient, start_dev_authority  # noqa: PLC0415
    except ModuleNotFoundError as missing:
        _exit_if_extra_missing(missing)
        raise
    signing_key = keys.generate_signing_key("ES256")
    dpop_key = keys.generate_signing_key("ES256")
    authority = await start_dev_authority(
        clients=[
            RegisteredClient(
                client_id=DEMO_CLIENT_ID,
                jwks={"keys": [keys.public_jwk(signing_key)]},
                tenancy="multi",
                organization_number=DEMO_SUPPLIER,
                allowed_scopes=(*DEMO_TARGET.scopes, *DEMO_BEARER_TARGET.scopes),
                require_dpop=False,  # the bearer target's tokens; the DPoP target's come with proofs
            )
        ],
        token_lifetime=token_lifetime,
    )
    client = Client("demo", DEMO_CLIENT_ID, authority.issuer, Tenancy.MULTI, signing_key, dpop_key)
    targets = {
        "demo-api": replace(
            DEMO_TARGET, allowed_urls=(*DEMO_TARGET.allowed_urls, authority.issuer + DEMO_API_PATH)
        ),
        "demo-bearer": replace(DEMO_BEARER_TARGET, allowed_urls=(authority.issuer + DEMO_BEARER_PATH,)),
    }
    config = BrokerConfig(
        clients={"demo": client},
        targets=targets,
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
        f"tenant 'demo', targets 'demo-api' and 'demo-bearer')\n"
        f"demo API:      {issuer}{DEMO_API_PATH} (DPoP, demands its nonce), {issuer}{DEMO_BEARER_PATH} "
        f"(bearer)\n"
        f"get a token:   python -m broker token --address {address} --tenant demo --target demo-api\n"
        f"get headers:   python -m broker token --address {address} --tenant demo --target demo-api "
        f"--url https://api.demo.test/records",
        file=sys.stderr,
        flush=True,
    )
