"""Signers whose private key lives outside the broker's memory: each implements `broker.model.Signer`.

A `Signer` signs the bytes of a JWS signing input and tells its `alg`, `kid` and public JWK; the protocol code
(`broker.protocol.keys.sign_jwt`) builds headers and claims around it and never sees a private key. The
in-memory signer of a file or environment JWK is in `broker.protocol.keys`; this package holds the others:

- `pkcs11`: a key in an HSM (or SoftHSM2), used through its PKCS#11 module; the key never leaves the token.

Adding a cloud KMS or a Vault transit signer
---------------------------------------------
Neither can be tested offline, so neither is implemented; this is where one plugs in:

1. Implement `Signer` in a module here (`broker/signers/vault.py`, say): `alg` and `kid` fixed when it is
   built, `public_jwk()` from the service's public key (read once, at start), `sign(signing_input)` returning
   the JWS signature itself: for ES* the fixed-size r||s of RFC 7518 §3.4 (a KMS usually returns DER, which
   must be converted), for RS*/PS* the PKCS#1 bytes. `sign` is called on the request path, synchronously:
   keep a connection, time out in well under a second, and raise `SignerUnavailableError` on failure.
2. Register a reference form in `broker/config/material.py` (and its pydantic model beside `Pkcs11Model` in
   `broker/config/models.py`), e.g. `signing_key = { vault = { ... } }`, which builds the signer and wraps
   it with `keys.from_signer(signer, where="vault")`. Errors name the field, never a credential.
3. Mind the rate: a DPoP proof is signed per API call, so keep `dpop_key` in memory when the assertion key
   is remote (a cloud KMS allows on the order of a thousand signatures a second per account).
"""

from __future__ import annotations

from broker.errors import BrokerError, Reason


class SignerUnavailableError(BrokerError):
    """A signer could not sign (the HSM or the signing service failed); the call may be tried again."""

    reason = Reason.INTERNAL
    retryable = True
