"""Client assertions and DPoP proofs signed in SoftHSM verify with independent verifiers (joserfc, the dev
authority's own), and a broker configured with `{ pkcs11 = ... }` keys gets tokens from the dev authority."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import JWKRegistry
from joserfc.jws import JWSRegistry

from broker.config import load_config
from broker.model import SigningKey
from broker.protocol import keys, rfc7523, rfc9449
from broker.signers.pkcs11 import open_signer
from broker.v1 import token_broker_service_pb2 as pb
from devauthority.assertions import AssertionVerifier
from devauthority.dpop import DPoPVerifier, NonceKeeper
from devauthority.registry import ClientRegistry, RegisteredClient
from tests.fixtures.broker_server import JOURNAL_ID, broker_stub, get_token, running_broker
from tests.fixtures.softhsm import SoftHsm
from tests.fixtures.sts import TestClient, running_sts

ISSUER = "https://sts.example.test"
TOKEN_ENDPOINT = f"{ISSUER}/connect/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SFM_SCOPES = ("e-helse:sfm.api/sfm.api2",)
SFM_API = "https://sfm.test.nhn.no/api/"
LABELS = [
    ("ec-p256", None),
    ("ec-p384", None),
    ("rsa-2048", None),
    ("rsa-2048", "RS256"),
    ("rsa-3072", "PS384"),
]


def lenient_registry() -> JWSRegistry:
    # An RSA key's `jwk` header outgrows joserfc's default 512-byte limit (the dev authority sets its own).
    registry = JWSRegistry(algorithms=list(keys.SUPPORTED_ALGS))
    registry.max_header_length = 4096
    return registry


def hsm_key(hsm: SoftHsm, label: str, alg: str | None = None) -> SigningKey:
    return keys.from_signer(open_signer(hsm.ref(label, alg=alg)), where="pkcs11")


@pytest.mark.parametrize(("label", "alg"), LABELS)
def test_a_client_assertion_signed_in_the_hsm_verifies(softhsm: SoftHsm, label: str, alg: str | None) -> None:
    key = hsm_key(softhsm, label, alg)
    client_id = f"client-{label}"
    assertion = rfc7523.build_client_assertion(
        client_id=client_id, audience=ISSUER, key=key, now=datetime.now(UTC), jti=uuid.uuid4().hex
    )
    public = JWKRegistry.import_key(keys.public_jwk(key))
    token = jwt.decode(assertion, public, algorithms=[key.alg])
    assert token.header == {"typ": "client-authentication+jwt", "alg": key.alg, "kid": key.kid}
    assert token.claims["iss"] == client_id

    registered = TestClient(client_id, "multi", "999888777", SFM_SCOPES, "e-helse:sfm.api", signing_key=key)
    verifier = AssertionVerifier(
        registry=ClientRegistry([RegisteredClient.from_json(registered.for_devauthority())]),
        issuer=ISSUER,
        token_endpoint=TOKEN_ENDPOINT,
        clock=time.time,
    )
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    assert verifier.verify(form).client.client_id == client_id


@pytest.mark.parametrize(("label", "alg"), LABELS)
def test_a_dpop_proof_signed_in_the_hsm_verifies(softhsm: SoftHsm, label: str, alg: str | None) -> None:
    key = hsm_key(softhsm, label, alg)
    for access_token in (None, "at-1"):  # a token request's proof, then a resource call's with ath
        proof = rfc9449.build_dpop_proof(
            key,
            htm="POST",
            htu=TOKEN_ENDPOINT,
            now=datetime.now(UTC),
            jti=uuid.uuid4().hex,
            access_token=access_token,
        )
        public = JWKRegistry.import_key(keys.public_jwk(key))
        header = jwt.decode(proof, public, algorithms=[key.alg], registry=lenient_registry()).header
        assert header["jwk"] == keys.public_members(key)
        verifier = DPoPVerifier(
            htu=TOKEN_ENDPOINT,
            nonces=NonceKeeper(period_s=60, clock=time.time),
            clock=time.time,
            require_nonce=False,
        )
        assert verifier.verify(proof, method="POST").jkt == key.thumbprint


def broker_toml(hsm: SoftHsm, issuer: str, multi: TestClient, single: TestClient) -> str:
    def pkcs11(label: str) -> str:
        return (
            f'{{ pkcs11 = {{ module = "{hsm.module}", token = "{hsm.token}", key_label = "{label}", '
            'pin = { env = "HSM_PIN" } } }'
        )

    return f"""
[authority]
issuer = "{issuer}"

# The assertion key in the HSM, the DPoP key in memory: the README's advice.
[clients.multi]
client_id = "{multi.client_id}"
tenancy = "multi"
signing_key = {pkcs11("ec-p256")}
dpop_key = {{ file = "dpop.jwk" }}

# Both in the HSM (RSA, PS256): every DPoP proof is signed by the token.
[clients.single]
client_id = "{single.client_id}"
tenancy = "single"
signing_key = {pkcs11("rsa-2048")}

[targets.sfm]
resource = "e-helse:sfm.api"
scopes = {json.dumps(list(SFM_SCOPES))}
allowed_urls = ["{SFM_API}"]

[tenants.oslo]
client = "multi"
targets = ["sfm"]
orgnr_parent = "912345678"
orgnr_child = "998877665"
sfm_journal_id = "{JOURNAL_ID}"

[tenants.bergen]
client = "single"
targets = ["sfm"]
orgnr_child = "444555666"
"""


async def test_a_broker_with_hsm_keys_gets_tokens_from_the_dev_authority(
    tmp_path: Path, softhsm: SoftHsm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ec, rsa = hsm_key(softhsm, "ec-p256"), hsm_key(softhsm, "rsa-2048")
    suffix = uuid.uuid4().hex[:8]
    multi = TestClient(f"multi-{suffix}", "multi", "999888777", SFM_SCOPES, "e-helse:sfm.api", signing_key=ec)
    single = TestClient(
        f"single-{suffix}", "single", "111222333", SFM_SCOPES, "e-helse:sfm.api", ("444555666",), rsa
    )
    dpop = keys.generate_signing_key("ES256")
    (tmp_path / "dpop.jwk").write_text(json.dumps(keys.private_jwk(dpop)))
    with running_sts("devauthority", tmp_path / "sts", [multi, single]) as sts:
        path = tmp_path / "broker.toml"
        path.write_text(broker_toml(softhsm, sts.issuer, multi, single))
        config = load_config(path, {"HSM_PIN": softhsm.pin})
        assert config.clients["multi"].signing_key.where == "pkcs11"
        assert config.clients["multi"].dpop_key.where == "memory"
        async with running_broker(config) as address, broker_stub(address) as stub:
            oslo = await get_token(address, "oslo")
            bergen = await get_token(address, "bergen")
            request = pb.AuthorizeRequestRequest(
                tenant="bergen", target="sfm", http_method="GET", url=SFM_API
            )
            authorized = await stub.AuthorizeRequest(request, timeout=30)
        stats = sts.stats()
    # Each token is bound to its client's DPoP key: memory for oslo's client, the HSM key for bergen's.
    assert oslo.token_type == bergen.token_type == pb.TOKEN_TYPE_DPOP
    assert oslo.dpop_jkt == dpop.thumbprint
    assert bergen.dpop_jkt == rsa.thumbprint
    # The resource call's proof, signed in the HSM, verifies against the key the token is bound to.
    public = JWKRegistry.import_key(keys.public_jwk(rsa))
    proof = jwt.decode(authorized.dpop, public, algorithms=["PS256"], registry=lenient_registry())
    assert proof.claims["ath"] == rfc9449.access_token_hash(bergen.token)
    assert json.dumps(stats)  # the dev authority answered; its own checks passed for both clients
    for secret in (softhsm.pin, softhsm.so_pin):
        assert secret not in caplog.text
