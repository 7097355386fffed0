"""The token endpoint's transport: aiohttp, because every renewal of every tenant is one request here.

A background renewal's CPU is mostly this request. Measured on the 2-core machine (one keep-alive connection
to the dev authority, the process's CPU per request): httpx's AsyncClient 1.31 ms, aiohttp's ClientSession
0.35 ms; httpx's pool checks each connection's expiry with socket calls and looks for trio by import on
every request. Discovery, JWKS, PAR, revocation and Selvbetjening (rare, per issuer or per login) stay on the
shared httpx client; the pure flows neither know nor care which one carries them.

It behaves as that httpx client does: no redirects followed, the same connect and whole-request timeouts,
certifi's trust roots, proxies from the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), and every
fault an IdpUnavailableError naming only the error's type. The proxy is looked up once per origin here:
aiohttp's own `trust_env` looks it up, and reads ~/.netrc, in a thread on every request. No cookies.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
import certifi

from broker.errors import IdpUnavailableError
from broker.protocol.http import HTTPRequest, HTTPResponse

# At most this many connections per STS host; the StsGate already bounds the requests in flight.
_CONNECTIONS_PER_HOST = 64


class TokenTransport:
    """Sends token-endpoint requests over one aiohttp session, opened in the running loop on first use."""

    def __init__(self, *, connect_timeout_s: float, request_timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}  # (scheme, host) -> proxy URL, or None

    async def send(self, request: HTTPRequest, *, issuer: str) -> HTTPResponse:
        session = self._session or self._open()
        try:
            async with session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                data=form_pairs(request.form) or None,
                allow_redirects=False,
                proxy=self._proxy_for(request.url),
            ) as response:
                body = await response.read()
                status = response.status
                headers = _merged(response.headers)
        except TimeoutError as exc:
            raise IdpUnavailableError(
                f"the STS did not answer in time ({type(exc).__name__})", issuer=issuer
            ) from exc
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise IdpUnavailableError(
                f"the STS could not be reached ({type(exc).__name__})", issuer=issuer
            ) from exc
        return HTTPResponse(status=status, headers=headers, body=body)

    def _open(self) -> aiohttp.ClientSession:
        context = ssl.create_default_context(cafile=certifi.where())
        connector = aiohttp.TCPConnector(ssl=context, limit=0, limit_per_host=_CONNECTIONS_PER_HOST)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self._session

    def _proxy_for(self, url: str) -> str | None:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "")
        if origin not in self._proxies:
            self._proxies[origin] = proxy_from_environment(*origin)
        return self._proxies[origin]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def proxy_from_environment(scheme: str, host: str) -> str | None:
    """The proxy the environment names for this scheme (or ALL_PROXY), unless NO_PROXY exempts the host."""
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    return proxy


def form_pairs(form: Mapping[str, str | tuple[str, ...]]) -> list[tuple[str, str]]:
    """The form as ordered pairs: a tuple value is one field per value (RFC 8707's several `resource`)."""
    pairs: list[tuple[str, str]] = []
    for name, value in form.items():
        for one in value if isinstance(value, tuple) else (value,):
            pairs.append((name, one))
    return pairs


def _merged(headers: Mapping[str, str]) -> dict[str, str]:
    """Header fields by lower-case name; a repeated field's values joined with ", " (RFC 9110 §5.3), as
    httpx does."""
    merged: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return merged
