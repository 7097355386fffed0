"""RFC 9449: OAuth 2.0 Demonstrating Proof of Possession (DPoP). https://www.rfc-editor.org/rfc/rfc9449

Implements §4.2 (the proof JWT: typ, alg, jwk header; jti, htm, htu, iat, ath, nonce claims), §4.3 step 9
(htu compared without query and fragment, after RFC 3986 §6.2.2-6.2.3 normalisation), §8 (nonces from the
authorization server: `use_dpop_nonce` and the `DPoP-Nonce` header) and §9 (the same from a resource
server, in `WWW-Authenticate`). Proofs are signed on a hot path, so the per-key header is built once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from datetime import datetime
from typing import Any, Final

from broker.errors import InvalidRequestError
from broker.model import Signer, SigningKey
from broker.protocol import keys, rfc3986
from broker.protocol.http import HTTPResponse
from broker.protocol.rfc7519 import numeric_date

DPOP_PROOF_TYPE: Final = "dpop+jwt"
USE_DPOP_NONCE: Final = "use_dpop_nonce"

_TCHARS: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110 §5.6.2
_METHOD: Final = re.compile(_TCHARS)
_NONCE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 9449 §8.1: 1*NQCHAR
# A challenge's scheme, with its token68 credentials if it has them instead of parameters.
_SCHEME: Final = re.compile(rf"[\s,]*({_TCHARS})(?:\s+(?:[A-Za-z0-9._~+/-]+=*\s*(?=,|$))?|\s*(?:,|$))")
_AUTH_PARAM: Final = re.compile(rf'[\s,]*({_TCHARS})\s*=\s*(?:"((?:[^"\\]|\\.)*)"|({_TCHARS}))\s*(?=,|$)')

# Encoded proof headers by the identity of the signer; the signer is kept in the entry so that a recycled id()
# can never hand out another key's header. Bounded, since keys rotate over a long uptime.
_PROOF_HEADERS: dict[int, tuple[Signer, str, bytes]] = {}
_PROOF_HEADERS_MAX: Final = 256


def build_dpop_proof(
    key: SigningKey,
    *,
    htm: str,
    htu: str,
    now: datetime,
    jti: str,
    nonce: str | None = None,
    access_token: str | None = None,
    htu_is_normal: bool = False,
) -> str:
    """A DPoP proof (RFC 9449 §4.2) for one request. An empty `nonce` or `access_token` counts as absent
    (proto3 strings have no null); `ath` is added when an access token is given (§4.2, for resource calls).
    `htu_is_normal`: the caller already has `htu` from `normalize_htu` (checking it against the target's
    URLs), so it is not normalised a second time on the hot path."""
    if not _METHOD.fullmatch(htm):
        raise InvalidRequestError("method", "must be an HTTP method such as GET or POST")
    if not jti:
        raise ValueError("jti must not be empty")
    claims: dict[str, Any] = {
        "jti": jti,
        "htm": htm.upper(),
        "htu": htu if htu_is_normal else normalize_htu(htu),
        "iat": numeric_date(now),
    }
    if nonce:
        claims["nonce"] = nonce
    if access_token:
        claims["ath"] = access_token_hash(access_token)
    return keys.sign_compact(key, _proof_header(key), claims)


def normalize_htu(url: str) -> str:
    """`url` as an `htu` value (§4.2: no query or fragment), in the RFC 3986 normal form that §4.3 step 9
    compares; InvalidRequestError("url") when it is not an http(s) URL the broker signs for.

    Not cached: the URL is a caller's, and a cache keyed by it grows with what callers send."""
    return rfc3986.normalize_http_url(url, field="url")


@functools.lru_cache(maxsize=1024)  # a cached token is proven many times; hash it once
def access_token_hash(token: str) -> str:
    """The `ath` claim: base64url SHA-256 of the ASCII access token (RFC 9449 §4.2)."""
    try:
        data = token.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidRequestError("access_token", "must be ASCII") from None
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def nonce_challenge(response: HTTPResponse) -> str | None:
    """The nonce to retry with when `response` demands one (§8.2: 400 `use_dpop_nonce`; §9.1: 401 with
    `WWW-Authenticate: DPoP error="use_dpop_nonce"`) and carries a `DPoP-Nonce` header; else None."""
    nonce = response_nonce(response)
    if nonce is None:
        return None
    if response.status == 400:
        body = response.json_object()
        return nonce if body is not None and body.get("error") == USE_DPOP_NONCE else None
    if response.status == 401:
        params = _challenge_params(response.headers.get("www-authenticate", ""), "dpop")
        return nonce if params is not None and params.get("error") == USE_DPOP_NONCE else None
    return None


def response_nonce(response: HTTPResponse) -> str | None:
    """The `DPoP-Nonce` header of any response (§8.2: servers may send a fresh one on success too), if it
    is a well-formed nonce."""
    nonce = response.headers.get("dpop-nonce", "").strip()
    return nonce if _NONCE.fullmatch(nonce) else None


def _proof_header(key: SigningKey) -> bytes:
    """The key's proof header, encoded once (a proof is signed per API call, its header never changes)."""
    cached = _PROOF_HEADERS.get(id(key.signer))
    if cached is not None and cached[0] is key.signer and cached[1] == key.alg:
        return cached[2]
    # §4.2: the jwk header "MUST NOT contain a private key"; only the public members go in.
    header = keys.encode_segment({"typ": DPOP_PROOF_TYPE, "alg": key.alg, "jwk": keys.public_members(key)})
    if len(_PROOF_HEADERS) >= _PROOF_HEADERS_MAX:
        _PROOF_HEADERS.clear()
    _PROOF_HEADERS[id(key.signer)] = (key.signer, key.alg, header)
    return header


def _challenge_params(header: str, scheme: str) -> dict[str, str] | None:
    """The auth-params of the `scheme` challenge in a WWW-Authenticate value (RFC 9110 §11.6.1), or None.

    Challenges and their parameters are both comma-separated, so a name followed by "=" is a parameter of
    the current challenge and a bare name starts the next one.
    """
    current: str | None = None
    found: dict[str, dict[str, str]] = {}
    position = 0
    while position < len(header):
        param = _AUTH_PARAM.match(header, position)
        if param is not None and current is not None:
            name, quoted, token = param.groups()
            value = token if quoted is None else re.sub(r"\\(.)", r"\1", quoted)
            found[current][name.lower()] = value
            position = param.end()
            continue
        start = _SCHEME.match(header, position)
        if start is None:
            break  # malformed: what was read so far stands
        current = start.group(1).lower()
        found.setdefault(current, {})
        position = start.end()
    return found.get(scheme)
