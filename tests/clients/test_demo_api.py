"""The demo API every client's tests call: it checks DPoP as NHN's APIs do and demands its own nonce.

Driven here by hand, with the broker's AuthorizeRequest and httpx, so each client's test can trust it.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import httpx
import pytest

from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.clients.runner import DemoBroker


@pytest.fixture(scope="module")
def stub(demo_broker: DemoBroker) -> Iterator[pb_grpc.TokenBrokerServiceStub]:
    with grpc.insecure_channel(demo_broker.address) as channel:
        yield pb_grpc.TokenBrokerServiceStub(channel)


def headers_for(
    stub: pb_grpc.TokenBrokerServiceStub, method: str, url: str, nonce: str = "", target: str = "demo-api"
) -> dict[str, str]:
    answer = stub.AuthorizeRequest(
        pb.AuthorizeRequestRequest(
            tenant="demo", target=target, http_method=method, url=url, dpop_nonce=nonce
        ),
        timeout=20,
    )
    headers = {"Authorization": answer.authorization}
    if answer.dpop:
        headers["DPoP"] = answer.dpop
    return headers


def stats(demo_broker: DemoBroker) -> dict[str, int]:
    counted: dict[str, int] = httpx.get(demo_broker.env["DEMO_STATS_URL"], timeout=5).json()["demo_api"]
    return counted


def test_a_request_without_the_nonce_is_challenged_then_served_with_it(
    demo_broker: DemoBroker, stub: pb_grpc.TokenBrokerServiceStub
) -> None:
    url = demo_broker.env["DEMO_API_URL"] + "records?page=1"
    before = stats(demo_broker)
    challenged = httpx.get(url, headers=headers_for(stub, "GET", url), timeout=5)
    assert challenged.status_code == 401
    assert 'error="use_dpop_nonce"' in challenged.headers["WWW-Authenticate"]
    nonce = challenged.headers["DPoP-Nonce"]

    served = httpx.get(url, headers=headers_for(stub, "GET", url, nonce), timeout=5)
    assert served.status_code == 200, served.text
    assert served.json() == {
        "method": "GET",
        "path": "/demo-api/records",
        "client_id": "helseid-broker-demo",
        "token_type": "DPoP",
        "body_bytes": 0,
    }
    posted = httpx.post(url, headers=headers_for(stub, "POST", url, nonce), content=b"{}", timeout=5)
    assert posted.status_code == 200
    assert posted.json()["body_bytes"] == 2
    after = stats(demo_broker)
    assert after["nonce_challenges"] - before["nonce_challenges"] == 1
    assert after["accepted"] - before["accepted"] == 2


def test_a_replayed_proof_or_one_for_another_url_or_method_is_refused(
    demo_broker: DemoBroker, stub: pb_grpc.TokenBrokerServiceStub
) -> None:
    url = demo_broker.env["DEMO_API_URL"] + "records"
    nonce = httpx.get(url, timeout=5).headers["DPoP-Nonce"]
    headers = headers_for(stub, "GET", url, nonce)
    assert httpx.get(url, headers=headers, timeout=5).status_code == 200
    replayed = httpx.get(url, headers=headers, timeout=5)
    assert replayed.status_code == 401
    assert 'error="invalid_dpop_proof"' in replayed.headers["WWW-Authenticate"]

    other = httpx.get(url + "/other", headers=headers_for(stub, "GET", url, nonce), timeout=5)
    assert 'error="invalid_dpop_proof"' in other.headers["WWW-Authenticate"]
    wrong_method = httpx.delete(url, headers=headers_for(stub, "GET", url, nonce), timeout=5)
    assert 'error="invalid_dpop_proof"' in wrong_method.headers["WWW-Authenticate"]

    # The token without its proof, or presented as a bearer token, is not enough.
    bare = {"Authorization": headers_for(stub, "GET", url, nonce)["Authorization"]}
    assert httpx.get(url, headers=bare, timeout=5).status_code == 401
    as_bearer = {"Authorization": bare["Authorization"].replace("DPoP ", "Bearer ", 1)}
    assert httpx.get(url, headers=as_bearer, timeout=5).status_code == 401


def test_a_rotated_nonce_is_challenged_once_more(
    demo_broker: DemoBroker, stub: pb_grpc.TokenBrokerServiceStub
) -> None:
    url = demo_broker.env["DEMO_API_URL"] + "records"
    old = httpx.get(url, timeout=5).headers["DPoP-Nonce"]
    httpx.post(demo_broker.env["DEMO_ROTATE_URL"], timeout=5).raise_for_status()
    challenged = httpx.get(url, headers=headers_for(stub, "GET", url, old), timeout=5)
    assert 'error="use_dpop_nonce"' in challenged.headers["WWW-Authenticate"]
    new = challenged.headers["DPoP-Nonce"]
    assert new != old
    assert httpx.get(url, headers=headers_for(stub, "GET", url, new), timeout=5).status_code == 200


def test_the_bearer_path_takes_bearer_tokens_of_its_own_audience(
    demo_broker: DemoBroker, stub: pb_grpc.TokenBrokerServiceStub
) -> None:
    url = demo_broker.env["DEMO_BEARER_URL"] + "status"
    headers = headers_for(stub, "GET", url, target="demo-bearer")
    assert headers["Authorization"].startswith("Bearer ")
    assert "DPoP" not in headers
    served = httpx.get(url, headers=headers, timeout=5)
    assert served.status_code == 200
    assert served.json()["token_type"] == "Bearer"
    # A token of the DPoP API's audience is refused here.
    api_url = demo_broker.env["DEMO_API_URL"] + "x"
    dpop_token = headers_for(stub, "GET", api_url)["Authorization"].split(" ", 1)[1]
    refused = httpx.get(url, headers={"Authorization": f"Bearer {dpop_token}"}, timeout=5)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
