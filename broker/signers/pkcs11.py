"""A `Signer` whose private key stays in a PKCS#11 token (an HSM; SoftHSM2 in the tests), via python-pkcs11.

The broker opens the module (the vendor's .so), finds the token by label, logs in with the user PIN, and finds
the private key by CKA_LABEL and its public key (same label, else the private key's CKA_ID). It reads only
public attributes (CKA_EC_PARAMS and CKA_EC_POINT, or CKA_MODULUS and CKA_PUBLIC_EXPONENT) to build the public
JWK; every signature is computed by the token:

- ES256/384/512: CKM_ECDSA over the SHA-2 digest, which returns r||s, exactly JWS's form (RFC 7518 §3.4);
- RS256/384/512: CKM_SHA*_RSA_PKCS;
- PS256/384/512: CKM_SHA*_RSA_PKCS_PSS with MGF1 of the same hash and a salt as long as the hash (RFC 7518
  §3.5).

PKCS#11 keeps the login per application and token, not per session, and C_Logout on any session logs out
all of them. So one logged-in session per (module, token) holds the login for the process (`_Login`), and each
signer signs in a session of its own opened without a PIN, so closing it never logs the others out. Every call
into one module is made under that module's lock: python-pkcs11 initialises a module without telling it to
lock for threads (C_Initialize(NULL)), so the module may assume one thread at a time, and a session is not
thread safe anyway. When the token reports the session or the login gone (a device reset, an HSM failover),
the signer logs in again and retries once.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import pkcs11
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import SignMixin

from broker.protocol.rfc7638 import jwk_thumbprint
from broker.signers import SignerUnavailableError

_log = logging.getLogger(__name__)

# DER of the named-curve OIDs in CKA_EC_PARAMS (secp256r1, secp384r1, secp521r1), with the JWS alg each
# signs with and the byte length of one coordinate (and of r and of s).
_CURVES: Final[Mapping[bytes, tuple[str, str, int]]] = {
    bytes.fromhex("06082a8648ce3d030107"): ("P-256", "ES256", 32),
    bytes.fromhex("06052b81040022"): ("P-384", "ES384", 48),
    bytes.fromhex("06052b81040023"): ("P-521", "ES512", 66),
}
_HASHES: Final[Mapping[str, Callable[[bytes], Any]]] = {
    "256": hashlib.sha256,
    "384": hashlib.sha384,
    "512": hashlib.sha512,
}
_RSA_PKCS: Final = {
    "256": Mechanism.SHA256_RSA_PKCS,
    "384": Mechanism.SHA384_RSA_PKCS,
    "512": Mechanism.SHA512_RSA_PKCS,
}
_RSA_PSS: Final = {
    "256": (Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.SHA256, MGF.SHA256, 32),
    "384": (Mechanism.SHA384_RSA_PKCS_PSS, Mechanism.SHA384, MGF.SHA384, 48),
    "512": (Mechanism.SHA512_RSA_PKCS_PSS, Mechanism.SHA512, MGF.SHA512, 64),
}
RSA_ALGS: Final = ("PS256", "PS384", "PS512", "RS256", "RS384", "RS512")
EC_ALGS: Final = ("ES256", "ES384", "ES512")
# PS256 for RSA, as for file keys: PSS is the modern padding and what HelseID's own tooling picks.
_DEFAULT_RSA_ALG: Final = "PS256"
_MIN_RSA_BITS: Final = 2048

# Errors after which the session (and maybe the login) is gone and opening them again may help.
_REOPEN: Final = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.UserNotLoggedIn,
    p11.KeyHandleInvalid,
    p11.ObjectHandleInvalid,
    p11.DeviceError,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    p11.GeneralError,
)


@dataclass(frozen=True, slots=True)
class Pkcs11KeyRef:
    """Where a key is: the module's path, the token's label, the key's CKA_LABEL, the user PIN; optionally
    the JWS alg (RSA keys: default PS256; EC keys: from the curve) and the kid (default: the thumbprint)."""

    module: str
    token: str
    key_label: str
    pin: str = field(repr=False)
    alg: str | None = None
    kid: str | None = None


class Pkcs11SetupError(ValueError):
    """A reference that cannot be used. `field` names its member (module, token, pin, key_label, alg, kid);
    the message names labels and paths, never the PIN."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class Pkcs11Signer:
    """Signs JWS signing inputs with one private key in a PKCS#11 token. Build it with `open_signer`."""

    def __init__(self, ref: Pkcs11KeyRef) -> None:
        self._ref = ref
        self._login = _login_for(ref)
        self._lock = self._login.lock
        with self._lock:
            self._generation = self._login.generation
            self._session = self._login.open_session()
            try:
                self._key = _private_key(self._session, ref)
                self._public = _public_jwk(self._session, self._key, ref)
            except BaseException:
                _close_quietly(self._session)
                raise
        self.alg = _algorithm(self._public, ref)
        self.kid = ref.kid or jwk_thumbprint(self._public)
        self._sign = _signing_function(self.alg)
        self._size = _CURVE_SIZES.get(self._public.get("crv", ""), 0)

    @property
    def ref(self) -> Pkcs11KeyRef:
        return self._ref

    def public_jwk(self) -> Mapping[str, str]:
        return dict(self._public)

    def sign(self, signing_input: bytes) -> bytes:
        with self._lock:
            try:
                return self._sign_once(signing_input)
            except _REOPEN as exc:
                _log.warning(
                    "PKCS#11 token %s reported %s signing with key %s; logging in again, retrying once",
                    self._ref.token,
                    type(exc).__name__,
                    self._ref.key_label,
                )
            try:
                self._reopen()
                return self._sign_once(signing_input)
            except (p11.PKCS11Error, Pkcs11SetupError) as exc:
                raise SignerUnavailableError(
                    f'the PKCS#11 token "{self._ref.token}" could not sign with key "{self._ref.key_label}" '
                    f"({type(exc).__name__})"
                ) from None

    def close(self) -> None:
        with self._lock:
            _close_quietly(self._session)

    def _sign_once(self, signing_input: bytes) -> bytes:
        try:
            signature = self._sign(self._key, signing_input)
        except _REOPEN:
            raise
        except p11.PKCS11Error as exc:
            raise SignerUnavailableError(
                f'the PKCS#11 token "{self._ref.token}" refused to sign with key "{self._ref.key_label}" '
                f"({type(exc).__name__})"
            ) from None
        if self._size and len(signature) != 2 * self._size:
            raise SignerUnavailableError(
                f'the PKCS#11 token "{self._ref.token}" returned an ECDSA signature of {len(signature)} '
                f"bytes, not the {2 * self._size} of r||s"
            )
        return signature

    def _reopen(self) -> None:
        """A new session (and login, when it was lost) and the key found again; refuses a different key."""
        _close_quietly(self._session)
        self._generation = self._login.relogin(self._generation)
        self._session = self._login.open_session()
        self._key = _private_key(self._session, self._ref)
        if _public_jwk(self._session, self._key, self._ref) != self._public:
            raise Pkcs11SetupError("key_label", "now names a different key on the token")


_CURVE_SIZES: Final = {name: size for name, _, size in _CURVES.values()}
_SIGNERS: dict[tuple[str, str, str, str | None, str | None], Pkcs11Signer] = {}
_SIGNERS_LOCK = threading.Lock()


def open_signer(ref: Pkcs11KeyRef) -> Pkcs11Signer:
    """The signer for `ref`; the same one again for the same reference (a configuration reload must not open
    a new session per key each time: HSMs limit sessions). Pkcs11SetupError when the reference is unusable."""
    key = (os.path.realpath(ref.module), ref.token, ref.key_label, ref.alg, ref.kid)
    with _SIGNERS_LOCK:
        signer = _SIGNERS.get(key)
        if signer is not None:
            # The PIN is checked again: a changed PIN in the configuration must not pass unnoticed.
            _login_for(ref)
            return signer
        signer = Pkcs11Signer(ref)
        _SIGNERS[key] = signer
        return signer


class _Login:
    """The process's login to one token: a logged-in session kept open, and the PIN to log in again."""

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        self._module = module
        self._label = token_label
        self._pin = pin
        self._salt = secrets.token_bytes(16)
        self.lock = _module_lock(module)
        with self.lock:
            self._token = _find_token(module, token_label)
            self._anchor = self._log_in()
        self._generation = 0

    def matches(self, pin: str) -> bool:
        return hmac.compare_digest(self._digest(pin), self._digest(self._pin))

    def open_session(self) -> pkcs11.Session:
        # No PIN: the login is the anchor's; this session's close must not log the others out.
        try:
            return self._token.open()
        except p11.PKCS11Error as exc:
            raise Pkcs11SetupError(
                "token", f'cannot open a session on token "{self._label}" ({type(exc).__name__})'
            ) from None

    @property
    def generation(self) -> int:
        """How many times the process logged in to this token; a signer remembers the one it opened in."""
        return self._generation

    def relogin(self, seen: int) -> int:
        """Logs in again unless another signer already did since `seen` (closing the anchor logs every
        session out, so two signers recovering from one reset must not take turns logging each other out)."""
        with self.lock:
            if self._generation == seen:
                _close_quietly(self._anchor)
                self._token = _find_token(self._module, self._label)
                self._anchor = self._log_in()
                self._generation += 1
            return self._generation

    def _log_in(self) -> pkcs11.Session:
        try:
            return self._token.open(user_pin=self._pin)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            raise Pkcs11SetupError("pin", f'wrong PIN for token "{self._label}"') from None
        except p11.PinLocked:
            raise Pkcs11SetupError("pin", f'the user PIN of token "{self._label}" is locked') from None
        except p11.UserPinNotInitialized:
            raise Pkcs11SetupError("pin", f'token "{self._label}" has no user PIN set') from None
        except p11.PKCS11Error as exc:
            raise Pkcs11SetupError(
                "pin", f'cannot log in to token "{self._label}" ({type(exc).__name__})'
            ) from None

    def _digest(self, pin: str) -> bytes:
        return hmac.new(self._salt, pin.encode(), hashlib.sha256).digest()


_LOGINS: dict[tuple[str, str], _Login] = {}
_LOGINS_LOCK = threading.Lock()
# Reentrant: a signer holding its module's lock logs in again (relogin) under the same lock.
_MODULE_LOCKS: dict[str, threading.RLock] = {}


def _module_lock(module: str) -> threading.RLock:
    return _MODULE_LOCKS.setdefault(module, threading.RLock())


def _login_for(ref: Pkcs11KeyRef) -> _Login:
    module = _module_path(ref.module)
    with _LOGINS_LOCK:
        login = _LOGINS.get((module, ref.token))
        if login is None:
            login = _Login(module, ref.token, ref.pin)
            _LOGINS[module, ref.token] = login
        elif not login.matches(ref.pin):
            # The token cannot check a second PIN while it is logged in; one PIN per token and process.
            raise Pkcs11SetupError(
                "pin", f'differs from the PIN another key reference logged in to token "{ref.token}" with'
            )
        return login


def _module_path(module: str) -> str:
    path = Path(module)
    if not path.is_absolute():
        raise Pkcs11SetupError("module", "must be the absolute path of the PKCS#11 module (.so)")
    if not path.is_file():
        raise Pkcs11SetupError("module", f"no PKCS#11 module at {module}")
    # python-pkcs11 loads a module once per path string; a second spelling (a symlink) would initialise the
    # same library twice, which PKCS#11 refuses.
    return os.path.realpath(module)


def _find_token(module: str, label: str) -> pkcs11.Token:
    try:
        library = pkcs11.lib(module)
    except (OSError, RuntimeError) as exc:
        reason = type(exc).__name__
        raise Pkcs11SetupError("module", f"cannot load {module} as a PKCS#11 module ({reason})") from None
    try:
        return library.get_token(token_label=label)
    except p11.NoSuchToken:
        raise Pkcs11SetupError("token", f'no token labelled "{label}" in {module}') from None
    except p11.MultipleTokensReturned:
        raise Pkcs11SetupError("token", f'several tokens are labelled "{label}"') from None
    except p11.PKCS11Error as exc:
        raise Pkcs11SetupError("token", f"cannot list the tokens ({type(exc).__name__})") from None


def _private_key(session: pkcs11.Session, ref: Pkcs11KeyRef) -> pkcs11.Key:
    try:
        return session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=ref.key_label)
    except p11.NoSuchKey:
        raise Pkcs11SetupError("key_label", f'no such key on token "{ref.token}"') from None
    except p11.MultipleObjectsReturned:
        raise Pkcs11SetupError(
            "key_label", f'several private keys on token "{ref.token}" carry this label'
        ) from None


def _public_key(session: pkcs11.Session, private: pkcs11.Key) -> pkcs11.Key | None:
    """The public half: same label, else same CKA_ID (tools differ in which they set)."""
    with contextlib.suppress(p11.NoSuchKey, p11.MultipleObjectsReturned):
        return session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=private.label)
    key_id = private.id
    if key_id:
        with contextlib.suppress(p11.NoSuchKey, p11.MultipleObjectsReturned):
            return session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id)
    return None


def _public_jwk(session: pkcs11.Session, private: pkcs11.Key, ref: Pkcs11KeyRef) -> dict[str, str]:
    public = _public_key(session, private)
    key_type = private.key_type
    if key_type == KeyType.EC:
        if public is None:
            raise Pkcs11SetupError(
                "key_label", f'no public key with this label or the key\'s CKA_ID on token "{ref.token}"'
            )
        return _ec_jwk(public[Attribute.EC_PARAMS], public[Attribute.EC_POINT])
    if key_type == KeyType.RSA:
        # An RSA private key usually also shows its modulus and exponent, which are public.
        holder = public if public is not None else private
        return _rsa_jwk(holder[Attribute.MODULUS], holder[Attribute.PUBLIC_EXPONENT])
    raise Pkcs11SetupError("key_label", "names a key that is neither EC nor RSA")


def _ec_jwk(params: bytes, point: bytes) -> dict[str, str]:
    curve = _CURVES.get(bytes(params))
    if curve is None:
        raise Pkcs11SetupError("key_label", "names an EC key on a curve other than P-256, P-384 or P-521")
    name, _, size = curve
    raw = _uncompressed_point(bytes(point), size)
    return {"kty": "EC", "crv": name, "x": _b64(raw[1 : 1 + size]), "y": _b64(raw[1 + size :])}


def _uncompressed_point(point: bytes, size: int) -> bytes:
    """04||x||y from CKA_EC_POINT: the spec's DER OCTET STRING, or the raw point some modules return."""
    if len(point) == 1 + 2 * size and point[0] == 4:
        return point
    if len(point) > 2 and point[0] == 4:
        length, start = point[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, start = int.from_bytes(point[2 : 2 + count], "big"), 2 + count
        inner = point[start : start + length]
        if len(inner) == 1 + 2 * size and inner[0] == 4:
            return inner
    raise Pkcs11SetupError("key_label", "names an EC key whose public point is not an uncompressed point")


def _rsa_jwk(modulus: bytes, exponent: bytes) -> dict[str, str]:
    n = int.from_bytes(modulus, "big")
    if n.bit_length() < _MIN_RSA_BITS:
        raise Pkcs11SetupError(
            "key_label", f"names an RSA key of {n.bit_length()} bits; HelseID needs at least {_MIN_RSA_BITS}"
        )
    e = int.from_bytes(exponent, "big")
    return {"kty": "RSA", "n": _b64(_unsigned(n)), "e": _b64(_unsigned(e))}


def _algorithm(public: Mapping[str, str], ref: Pkcs11KeyRef) -> str:
    if public["kty"] == "EC":
        curve_alg = next(alg for name, alg, _ in _CURVES.values() if name == public["crv"])
        if ref.alg is not None and ref.alg != curve_alg:
            raise Pkcs11SetupError("alg", f"must be {curve_alg} for a {public['crv']} key (or left out)")
        return curve_alg
    if ref.alg is None:
        return _DEFAULT_RSA_ALG
    if ref.alg not in RSA_ALGS:
        raise Pkcs11SetupError("alg", f"must be one of {', '.join(RSA_ALGS)} for an RSA key")
    return ref.alg


def _signing_function(alg: str) -> Callable[[pkcs11.Key, bytes], bytes]:
    bits = alg[2:]
    if alg.startswith("ES"):
        digest = _HASHES[bits]

        def ecdsa(key: pkcs11.Key, data: bytes) -> bytes:
            # CKM_ECDSA signs a digest the caller computed; its output is r||s, each the curve's size.
            return _sign_with(key, digest(data).digest(), mechanism=Mechanism.ECDSA)

        return ecdsa
    if alg.startswith("PS"):
        mechanism, hash_mechanism, mgf, salt = _RSA_PSS[bits]

        def pss(key: pkcs11.Key, data: bytes) -> bytes:
            return _sign_with(key, data, mechanism=mechanism, mechanism_param=(hash_mechanism, mgf, salt))

        return pss
    pkcs1 = _RSA_PKCS[bits]

    def pkcs1_v15(key: pkcs11.Key, data: bytes) -> bytes:
        return _sign_with(key, data, mechanism=pkcs1)

    return pkcs1_v15


def _sign_with(key: pkcs11.Key, data: bytes, **mechanism: Any) -> bytes:
    # A private key object found by get_key signs (SignMixin); the stubs type get_key as the base Key.
    return bytes(cast(SignMixin, key).sign(data, **mechanism))


def _close_quietly(session: pkcs11.Session) -> None:
    # The session may already be gone with the device; there is nothing left to release then.
    with contextlib.suppress(p11.PKCS11Error):
        session.close()


def _unsigned(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
