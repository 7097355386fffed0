"""Key material a configuration refers to: private JWKs, HSM keys, 32-byte keys, PEM, a JWKS of public keys.

Each function turns the text a reference gave into what the broker uses, or raises ConfigurationError naming
the field; a message describes the mistake, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from broker.config.models import Pkcs11Model
from broker.config.secrets import SecretReader
from broker.errors import ConfigurationError, ProtocolError
from broker.idp.jwks import parse_key_set
from broker.model import SigningKey
from broker.protocol import keys

MIN_CREDENTIAL_LENGTH = 32


def signing_key(text: str, path: str) -> SigningKey:
    """A private EC or RSA JWK (ES256/384/512, RS/PS256/384/512)."""
    try:
        jwk = json.loads(text)
    except ValueError:
        raise ConfigurationError(path, "is not a JSON Web Key (not valid JSON)") from None
    if not isinstance(jwk, dict):
        raise ConfigurationError(path, "is not a JSON Web Key (not a JSON object)")
    try:
        return keys.load_signing_key(jwk)
    except ValueError as exc:
        raise ConfigurationError(path, str(exc)) from None


def pkcs11_signing_key(model: Pkcs11Model, path: str, reader: SecretReader) -> SigningKey:
    """A key in an HSM, used through its PKCS#11 module: the token is opened, logged in to and searched now,
    so a missing module, token or key or a wrong PIN stops the start (one line each, naming the member)."""
    # Imported here: python-pkcs11 is a compiled extension that a broker without HSM keys need not load.
    from broker.signers.pkcs11 import Pkcs11KeyRef, Pkcs11SetupError, open_signer  # noqa: PLC0415

    # A PIN file usually ends with a newline that is no part of the PIN.
    pin = reader.read(model.pin, f"{path}.pin").rstrip("\r\n")
    ref = Pkcs11KeyRef(
        module=str(reader.path(model.module)),
        token=model.token,
        key_label=model.key_label,
        pin=pin,
        alg=model.alg,
        kid=model.kid,
    )
    try:
        signer = open_signer(ref)
    except Pkcs11SetupError as exc:
        raise ConfigurationError(f"{path}.{exc.field}", exc.message) from None
    return keys.from_signer(signer, where="pkcs11")


def aes_key(text: str, path: str, *, what: str = "") -> bytes:
    """32 random bytes written as base64 (`head -c 32 /dev/urandom | base64`)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise ConfigurationError(path, "must be base64 of 32 random bytes") from None
    if len(key) != 32:
        raise ConfigurationError(path, f"must be base64 of exactly 32 bytes{what}")
    return key


def store_key(text: str, path: str) -> bytes:
    """The AES-256-GCM key that seals values at rest in Redis."""
    return aes_key(text, path, what=" (AES-256)")


def pem(text: str, path: str) -> bytes:
    if "-----BEGIN " not in text:
        raise ConfigurationError(path, "must be PEM")
    return text.encode()


def public_key_set(text: str, path: str) -> None:
    """Checks that a JWKS file holds usable public signing keys; the broker reads it again when it runs."""
    try:
        parse_key_set(text.encode())
    except ProtocolError as exc:
        raise ConfigurationError(path, exc.message) from None


def credential_digest(text: str, path: str) -> bytes:
    """The SHA-256 of a caller's credential: the broker keeps the digest, never the credential."""
    secret = text.strip()
    if len(secret) < MIN_CREDENTIAL_LENGTH:
        raise ConfigurationError(path, "must be at least 32 characters of random secret")
    return hashlib.sha256(secret.encode()).digest()
