"""`python -m bench.signers`: what one signature costs per kind of client key, in memory and in SoftHSM2.

For each key kind it measures, on one thread, the raw signature (`Signer.sign` over a typical signing input)
and the whole client assertion and DPoP proof as the broker builds them (claims, JSON, base64url, signature),
and prints the cost per signature (µs, the median of the rounds) and signatures per second, each next to its
goal. The SoftHSM2 token is made in a temporary folder for the run (random PINs, keys generated on the token)
and removed afterwards; SoftHSM2 must be installed (`softhsm2` from Debian's packages, as scripts/test.sh
does). No key or PIN is printed.

    python -m bench.signers                 # 5 rounds of 0.5 s per row
    python -m bench.signers --rounds 3 --seconds 0.2 --json signers.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from joserfc.jwk import RSAKey

from broker.model import SigningKey
from broker.protocol import keys, rfc7523, rfc9449

MODULE_PATTERNS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/*/softhsm/libsofthsm2.so")
ISSUER = "https://helseid-sts.test.nhn.no"
API_URL = "https://sfm.test.nhn.no/api/patients/42"
# A token lifetime of 1 h refreshed at half of it: each tenant and target needs one assertion per 30 min.
TENANTS = 10_000
ASSERTIONS_PER_S = TENANTS / 1800


@dataclass
class Row:
    kind: str
    sign_us: float
    signatures_per_s: float
    assertion_us: float
    proof_us: float
    goal: str


@dataclass
class Token:
    module: str
    label: str
    pin: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signers", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per row; the median is shown")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one round")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for kind, key, goal in memory_keys():
        rows.append(measure(kind, key, goal, args.rounds, args.seconds))
    with softhsm_token() as token:
        for kind, key, goal in hsm_keys(token):
            rows.append(measure(kind, key, goal, args.rounds, args.seconds))
    print_table(rows)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2) + "\n")
    return 0


def memory_keys() -> Iterator[tuple[str, SigningKey, str]]:
    yield (
        "in-memory ES256",
        keys.generate_signing_key("ES256"),
        "the DPoP key: a proof per API call; goal ≥ 10,000/s (not the bottleneck)",
    )
    yield (
        "in-memory PS256 RSA-2048",
        rsa_key(2048),
        "fine for assertions; as DPoP key a core signs only this many proofs/s",
    )
    yield (
        "in-memory PS256 RSA-4096",
        rsa_key(4096),
        "over 1 ms a signature (issue 10): not for DPoP proofs",
    )


def hsm_keys(token: Token) -> Iterator[tuple[str, SigningKey, str]]:
    from broker.signers.pkcs11 import Pkcs11KeyRef, open_signer  # noqa: PLC0415 - after SOFTHSM2_CONF

    goal = f"assertion key: {ASSERTIONS_PER_S:.1f} assertions/s serve {TENANTS:,} tenants (1 h tokens)"
    for kind, label in (("SoftHSM ES256", "ec-p256"), ("SoftHSM PS256 RSA-2048", "rsa-2048")):
        signer = open_signer(Pkcs11KeyRef(token.module, token.label, label, token.pin))
        yield kind, keys.from_signer(signer, where="pkcs11"), goal


def rsa_key(bits: int) -> SigningKey:
    native = RSAKey.generate_key(bits, {"alg": "PS256", "use": "sig"}, auto_kid=True)
    return keys.from_signer(keys.MemorySigner(native, "PS256"))


def measure(kind: str, key: SigningKey, goal: str, rounds: int, seconds: float) -> Row:
    now = datetime.now(UTC)
    signing_input = keys.encode_segment({"typ": "dpop+jwt", "alg": key.alg}) + b"." + b"x" * 300

    def sign() -> None:
        key.signer.sign(signing_input)

    def assertion() -> None:
        rfc7523.build_client_assertion(
            client_id="8f1b2c3d", audience=ISSUER, key=key, now=now, jti=uuid.uuid4().hex
        )

    def proof() -> None:
        rfc9449.build_dpop_proof(
            key,
            htm="GET",
            htu=API_URL,
            now=now,
            jti=uuid.uuid4().hex,
            access_token="at",  # noqa: S106 - a stand-in
        )

    sign_us = per_call_us(sign, rounds, seconds)
    return Row(
        kind=kind,
        sign_us=sign_us,
        signatures_per_s=1e6 / sign_us,
        assertion_us=per_call_us(assertion, rounds, seconds),
        proof_us=per_call_us(proof, rounds, seconds),
        goal=goal,
    )


def per_call_us(call: Callable[[], None], rounds: int, seconds: float) -> float:
    """The median over `rounds` of the mean cost of `call` in a round of about `seconds`."""
    call()  # warm up: caches, the token's session
    results = []
    for _ in range(rounds):
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            call()
            count += 1
            if time.perf_counter() >= deadline:
                break
        results.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(results)


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'key kind':<26} {'sign µs':>9} {'sigs/s':>8} {'assertion µs':>13} {'proof µs':>9}  goal / remark"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.kind:<26} {row.sign_us:>9.0f} {row.signatures_per_s:>8.0f} {row.assertion_us:>13.0f} "
            f"{row.proof_us:>9.0f}  {row.goal}"
        )
    print(f"\none thread; python {sys.version.split()[0]}, {os.cpu_count()} cores; SoftHSM2 in a temp folder")


@contextmanager
def softhsm_token() -> Iterator[Token]:
    """A SoftHSM2 token with an EC P-256 and an RSA-2048 key pair generated on it, for this run only."""
    module = next((path for pattern in MODULE_PATTERNS for path in sorted(glob.glob(pattern))), None)
    if module is None or shutil.which("softhsm2-util") is None:
        raise SystemExit("SoftHSM2 is not installed: apt-get install softhsm2 (scripts/test.sh does)")
    module = os.path.realpath(module)
    with tempfile.TemporaryDirectory(prefix="bench-signers-") as folder:
        conf = Path(folder) / "softhsm2.conf"
        (Path(folder) / "tokens").mkdir()
        conf.write_text(f"directories.tokendir = {folder}/tokens\nobjectstore.backend = file\n")
        os.environ["SOFTHSM2_CONF"] = str(conf)
        token = Token(module, "bench", secrets.token_hex(8))
        command = ["softhsm2-util", "--init-token", "--free", "--label", token.label]
        command += ["--pin", token.pin, "--so-pin", secrets.token_hex(8)]
        subprocess.run(command, check=True, capture_output=True)  # noqa: S603 - a fixed command line
        generate_keys(token)
        yield token


def generate_keys(token: Token) -> None:
    import pkcs11  # noqa: PLC0415 - loaded once SOFTHSM2_CONF points to the run's token
    from pkcs11 import Attribute, KeyType, Mechanism  # noqa: PLC0415
    from pkcs11.util.ec import encode_named_curve_parameters  # noqa: PLC0415

    private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
    with pkcs11.lib(token.module).get_token(token_label=token.label).open(rw=True, user_pin=token.pin) as s:
        parameters = s.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True
        )
        parameters.generate_keypair(store=True, label="ec-p256", id=b"ec-p256", private_template=private)
        s.generate_keypair(
            KeyType.RSA,
            2048,
            store=True,
            label="rsa-2048",
            id=b"rsa-2048",
            mechanism=Mechanism.RSA_PKCS_KEY_PAIR_GEN,
            private_template=private,
        )


if __name__ == "__main__":
    sys.exit(main())
