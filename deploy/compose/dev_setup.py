"""One-shot setup of the compose stack (dev only): makes the secrets the brokers and the dev authority share.

Writes into the directory given (a volume), once; a second run keeps what is there:
  supplier.jwk   the HelseID client's private signing JWK (P-256), which the brokers read
  clients.json   the dev authority's registration of that client, with the public JWK only
  store.key      base64 of 32 random bytes: the brokers' Redis encryption key
  audit.key      base64 of 32 random bytes: the audit trail's hash key
  caller         the credential of the compose caller: authorization: Bearer <it>
Nothing is printed but the file names: the secrets stay in the volume.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

from joserfc.jwk import ECKey

CLIENT_ID = "compose-supplier"
# The image's numeric user: the setup runs as root (a fresh volume is root's) and hands the files over.
BROKER_UID = BROKER_GID = 10001
SUPPLIER_ORGNR = "999999999"


def _write(path: Path, text: str) -> None:
    # 0640: the brokers and the dev authority run as the same non-root user.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    if os.geteuid() == 0:
        os.chown(path, BROKER_UID, BROKER_GID)
    print(f"wrote {path}")


def main(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "clients.json").exists():
        print(f"{directory}: already set up")
        return 0
    key = ECKey.generate_key("P-256", private=True)
    private = {**key.as_dict(private=True), "kid": key.thumbprint(), "alg": "ES256"}
    public = {name: value for name, value in private.items() if name != "d"}
    client = {
        "client_id": CLIENT_ID,
        "jwks": {"keys": [public]},
        "tenancy": "multi",
        "organization_number": SUPPLIER_ORGNR,
        "allowed_scopes": ["e-helse:sfm.api/sfm.api2", "nhn:pps/provesvar-read"],
    }
    _write(directory / "supplier.jwk", json.dumps(private))
    _write(directory / "store.key", base64.b64encode(secrets.token_bytes(32)).decode())
    _write(directory / "audit.key", base64.b64encode(secrets.token_bytes(32)).decode())
    _write(directory / "caller", secrets.token_urlsafe(32))
    # Last: its presence means the set is complete.
    _write(directory / "clients.json", json.dumps([client], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "/run/dev-secrets")))
