"""The signing keys of a service-account issuer (a Kubernetes cluster), from a JWKS file or by OIDC discovery.

Discovery (OpenID Connect Discovery 1.0 §4) reads `<issuer>/.well-known/openid-configuration`, checks that
it names the issuer (§4.3), and fetches its `jwks_uri`. Keys are fetched on demand: for the first token, and
again when a token names a `kid` the cached set lacks (the cluster rotated its key), but at most once per
`refetch_interval` however many calls ask, so made-up key ids cannot make the broker hammer the issuer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from broker.errors import BrokerError, IdpUnavailableError, ProtocolError
from broker.model import ServiceAccountIssuer

WELL_KNOWN: Final = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES: Final = 256 * 1024  # a JWKS of a few keys is a few KB
# A JWKS publishes public keys; private members, should a misconfigured file carry them, are dropped.
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
_log = logging.getLogger(__name__)


class IssuerKeys:
    """The issuer's current key set; `fetch_for(kid)` refreshes it when `kid` is new, rate-limited."""

    def __init__(
        self,
        settings: ServiceAccountIssuer,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 5.0,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._timeout_s = timeout_s
        self._keys = KeySet([])
        self._kids: frozenset[str] = frozenset()
        self._fetched_at: float | None = None
        self._fetch: asyncio.Task[None] | None = None

    @property
    def keys(self) -> KeySet:
        return self._keys

    @property
    def loaded(self) -> bool:
        return bool(self._kids)

    def knows(self, kid: str) -> bool:
        return kid in self._kids

    async def fetch_for(self, kid: str) -> None:
        """Fetches the keys if `kid` is unknown and the last fetch is old enough; callers that come while a
        fetch is under way wait for that one (shielded: a caller that gives up does not cancel it)."""
        if kid in self._kids:
            return
        fetch = self._fetch
        if fetch is None:
            last = self._fetched_at
            if last is not None and self._clock() - last < self._settings.refetch_interval.total_seconds():
                return
            # Stamped before the fetch: a failing issuer is asked no more often than a working one.
            self._fetched_at = self._clock()
            fetch = self._fetch = asyncio.get_running_loop().create_task(self._refresh())
            fetch.add_done_callback(self._fetched)
        await asyncio.shield(fetch)

    def _fetched(self, _: asyncio.Task[None]) -> None:
        self._fetch = None

    async def _refresh(self) -> None:
        try:
            keys = await self._load()
        except BrokerError as exc:
            _log.warning("service-account issuer keys not fetched: %s", exc.message)
            return
        self._keys, self._kids = keys, frozenset(str(key.kid) for key in keys.keys)
        _log.info("service-account issuer keys fetched: %d key(s)", len(self._kids))

    async def _load(self) -> KeySet:
        if self._settings.jwks_file is not None:
            path = Path(self._settings.jwks_file)
            try:
                body = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                raise ProtocolError(f"cannot read the JWKS file ({exc.strerror})") from None
            return parse_key_set(body)
        async with httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=False) as http:
            issuer = self._settings.issuer
            discovery = _json_object(await _get(http, issuer.rstrip("/") + WELL_KNOWN, issuer), "discovery")
            if not isinstance(discovery.get("issuer"), str) or discovery["issuer"] != issuer:
                raise ProtocolError("the discovery document names another issuer", issuer=issuer)
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not _is_safe_url(jwks_uri):
                raise ProtocolError("the discovery document has no https jwks_uri", issuer=issuer)
            return parse_key_set(await _get(http, jwks_uri, issuer))


def parse_key_set(body: bytes) -> KeySet:
    """The public signing keys (RSA, EC; with a kid; not `use: enc`) of a JWKS document."""
    document = _json_object(body, "JWKS")
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ProtocolError("the JWKS has no keys list")
    usable = [
        {name: value for name, value in entry.items() if name not in _PRIVATE_MEMBERS}
        for entry in entries
        if isinstance(entry, dict)
        and entry.get("kty") in {"RSA", "EC"}
        and entry.get("use", "sig") == "sig"
        and isinstance(entry.get("kid"), str)
    ]
    try:
        keys = KeySet.import_key_set({"keys": usable})
    except (JoseError, ValueError, TypeError) as exc:
        raise ProtocolError(f"the JWKS has a key that does not load ({type(exc).__name__})") from None
    if not keys.keys:
        raise ProtocolError("the JWKS has no RSA or EC signing key with a kid")
    return keys


def _is_safe_url(url: str) -> bool:
    parts = urlsplit(url)
    loopback = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    return bool(parts.hostname) and (parts.scheme == "https" or (parts.scheme == "http" and loopback))


async def _get(http: httpx.AsyncClient, url: str, issuer: str) -> bytes:
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ProtocolError(f"the issuer answered HTTP {response.status_code}", issuer=issuer)
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ProtocolError("the issuer's document is too large", issuer=issuer)
            return body
    except httpx.HTTPError as exc:
        raise IdpUnavailableError(
            f"the service-account issuer could not be reached ({type(exc).__name__})", issuer=issuer
        ) from None


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        document: Any = json.loads(body)
    except ValueError:
        raise ProtocolError(f"the {what} document is not JSON") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"the {what} document is not a JSON object")
    return document
