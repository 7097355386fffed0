"""Drives the pure protocol flows over HTTP; the one place where httpx errors become broker errors."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Protocol, TypeVar

import httpx

from broker.errors import IdpUnavailableError
from broker.protocol.http import HTTPRequest, HTTPResponse

T = TypeVar("T")


class Transport(Protocol):
    """Carries a flow's requests: `token_transport.TokenTransport` for the token endpoint, `HttpxTransport`
    for the rest (and for the token endpoint where no other is given, as in tests)."""

    async def send(self, request: HTTPRequest, *, issuer: str) -> HTTPResponse: ...

    async def aclose(self) -> None: ...


class HttpxTransport:
    """An httpx client as a Transport; closing it is its owner's business."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def send(self, request: HTTPRequest, *, issuer: str) -> HTTPResponse:
        return await send(self._http, request, issuer=issuer)

    async def aclose(self) -> None:
        return None


async def send(http: httpx.AsyncClient, request: HTTPRequest, *, issuer: str) -> HTTPResponse:
    """Sends one request; network faults and timeouts raise IdpUnavailableError naming the issuer."""
    try:
        response = await http.request(
            request.method, request.url, headers=dict(request.headers), data=dict(request.form) or None
        )
    except httpx.TimeoutException as exc:
        raise IdpUnavailableError(
            f"the STS did not answer in time ({type(exc).__name__})", issuer=issuer
        ) from exc
    except httpx.HTTPError as exc:
        raise IdpUnavailableError(
            f"the STS could not be reached ({type(exc).__name__})", issuer=issuer
        ) from exc
    headers = {name.lower(): value for name, value in response.headers.items()}
    return HTTPResponse(status=response.status_code, headers=headers, body=response.content)


async def drive(
    transport: Transport,
    flow: Generator[HTTPRequest, HTTPResponse, T],
    *,
    issuer: str,
    on_request: Callable[[HTTPRequest], None] | None = None,
) -> T:
    """Runs a flow to its end: each request it yields is sent, and the response is sent back into it."""
    request = next(flow)
    try:
        while True:
            if on_request is not None:
                on_request(request)
            response = await transport.send(request, issuer=issuer)
            request = flow.send(response)
    except StopIteration as finished:
        return finished.value  # type: ignore[no-any-return]
    finally:
        flow.close()
