"""Key material a configuration refers to: private JWKs, 32-byte keys, PEM, a JWKS of public keys.

Each function turns the text a reference gave into what the broker uses, or raises ConfigurationError naming
the field; a message describes the mistake, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

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
