"""The token endpoint's aiohttp transport: the form, the headers, proxies, and faults as broker errors."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from broker.errors import IdpUnavailableError
from broker.idp.token_transport import TokenTransport, form_pairs, proxy_from_environment
from broker.protocol.http import HTTPRequest


def test_a_tuple_value_is_one_field_per_value_in_order() -> None:
    form = {"grant_type": "client_credentials", "resource": ("a", "b")}
    assert form_pairs(form) == [("grant_type", "client_credentials"), ("resource", "a"), ("resource", "b")]


def test_the_environment_names_the_proxy_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert proxy_from_environment("https", "helseid-sts.nhn.no") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.cluster.local")
    assert proxy_from_environment("https", "helseid-sts.nhn.no") == "http://proxy.internal:3128"
    assert proxy_from_environment("https", "sts.svc.cluster.local") is None
    assert proxy_from_environment("http", "helseid-sts.nhn.no") is None


async def test_the_request_arrives_as_sent_and_the_answer_comes_back_whole() -> None:
    seen: dict[str, object] = {}

    async def token(request: web.Request) -> web.Response:
        seen["form"] = list((await request.post()).items())
        seen["dpop"] = request.headers.get("DPoP")
        response = web.Response(status=400, body=b'{"error":"use_dpop_nonce"}')
        response.headers["DPoP-Nonce"] = "n-1"
        response.headers.add("WWW-Authenticate", 'DPoP error="use_dpop_nonce"')
        response.headers.add("WWW-Authenticate", "Bearer")
        return response

    app = web.Application()
    app.router.add_post("/connect/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    transport = TokenTransport(connect_timeout_s=2, request_timeout_s=5)
    try:
        request = HTTPRequest(
            "POST",
            f"http://127.0.0.1:{port}/connect/token",
            {"DPoP": "proof"},
            {"grant_type": "client_credentials", "resource": ("r1", "r2")},
        )
        response = await transport.send(request, issuer="http://sts")
    finally:
        await transport.aclose()
        await runner.cleanup()
    assert seen == {
        "form": [("grant_type", "client_credentials"), ("resource", "r1"), ("resource", "r2")],
        "dpop": "proof",
    }
    assert response.status == 400
    assert response.headers["dpop-nonce"] == "n-1"
    assert response.headers["www-authenticate"] == 'DPoP error="use_dpop_nonce", Bearer'
    assert response.json_object() == {"error": "use_dpop_nonce"}


async def test_an_sts_that_does_not_answer_is_unavailable_in_time_without_detail() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    port = silent.getsockname()[1]
    transport = TokenTransport(connect_timeout_s=1, request_timeout_s=0.3)
    try:
        with pytest.raises(IdpUnavailableError) as raised:
            await transport.send(HTTPRequest("POST", f"http://127.0.0.1:{port}/t", {}, {}), issuer="http://s")
    finally:
        await transport.aclose()
        silent.close()
    assert "did not answer in time" in raised.value.message


async def test_an_sts_that_refuses_the_connection_is_unreachable() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    transport = TokenTransport(connect_timeout_s=1, request_timeout_s=1)
    try:
        with pytest.raises(IdpUnavailableError) as raised:
            await transport.send(HTTPRequest("POST", f"http://127.0.0.1:{port}/t", {}, {}), issuer="http://s")
    finally:
        await transport.aclose()
    assert "could not be reached (ClientConnectorError)" in raised.value.message
