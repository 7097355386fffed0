"""RFC 7636: Proof Key for Code Exchange (PKCE). https://www.rfc-editor.org/rfc/rfc7636

Implements §4.1 (code_verifier) and §4.2 (the S256 code_challenge). HelseID accepts S256 only.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

CODE_CHALLENGE_METHOD: Final = "S256"
_VERIFIER: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # §4.1 unreserved characters, 43-128 of them


def code_verifier(random_bytes: bytes) -> str:
    """A code_verifier from 32 or more random bytes (§4.1 recommends 32 octets, base64url-encoded)."""
    if len(random_bytes) < 32:
        raise ValueError("a code_verifier needs at least 32 random bytes")
    verifier = base64.urlsafe_b64encode(random_bytes).rstrip(b"=").decode()[:128]
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("code_verifier is not 43-128 unreserved characters")
    return verifier


def code_challenge(verifier: str) -> str:
    """BASE64URL(SHA256(ASCII(code_verifier))), §4.2."""
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("code_verifier is not 43-128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
