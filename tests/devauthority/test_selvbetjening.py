"""The Selvbetjening-like key API of the dev authority: clients register, list and lose their own keys.

Against a running dev authority over HTTP, with keys generated here; tokens come from the authority's own
token endpoint, the way a broker fetches them with its current key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from devauthority import RegisteredClient, RunningAuthority, start_dev_authority

from .conftest import PPS_SCOPE, SINGLE_ORG, registration
from .helpers import Caller, DevClient, MovableClock, error_of, rfc7638_thumbprint

SCOPE = "nhn:selvbetjening/client"
OTHER_SELVBETJENING_SCOPE = "nhn:selvbetjening/read-only"  # made up: same audience, not the key scope
PATH = "/v1/client-secret"
YEAR_S = 365 * 24 * 3600


@pytest.fixture
def owner() -> DevClient:
    key = ECKey.generate_key("P-256", parameters={"kid": "owner-key-1", "use": "sig"})
    return DevClient("rotating-client", key, "ES256")


@pytest.fixture
def neighbour() -> DevClient:
    key = RSAKey.generate_key(2048, parameters={"kid": "neighbour-key-1"})
    return DevClient("neighbour-client", key, "PS256")


@pytest.fixture
def outsider() -> DevClient:
    key = ECKey.generate_key("P-256", parameters={"kid": "outsider-key-1"})
    return DevClient("outsider-client", key, "ES256")


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
async def authority(
    owner: DevClient, neighbour: DevClient, outsider: DevClient, clock: MovableClock
) -> AsyncIterator[RunningAuthority]:
    clients = [
        registration(
            owner,
            tenancy="single",
            organization_number=SINGLE_ORG,
            allowed_scopes=[SCOPE, OTHER_SELVBETJENING_SCOPE, PPS_SCOPE],
        ),
        # A bearer client: the key API takes bearer tokens too.
        registration(
            neighbour,
            tenancy="single",
            organization_number=SINGLE_ORG,
            allowed_scopes=[SCOPE],
            require_dpop=False,
        ),
        registration(outsider, tenancy="single", organization_number=SINGLE_ORG, allowed_scopes=[PPS_SCOPE]),
    ]
    running = await start_dev_authority(clients=clients, clock=clock)
    yield running
    await running.stop()


@pytest.fixture
def caller(http: httpx.AsyncClient, authority: RunningAuthority, clock: MovableClock) -> Caller:
    return Caller(http=http, issuer=authority.issuer, clock=clock)


def new_key(kid: str) -> DevClient:
    return DevClient("", ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig"}), "ES256")


def signing_with(client: DevClient, key: DevClient) -> DevClient:
    """The same client, signing its assertions with another of its keys."""
    return DevClient(client.client_id, key.key, key.alg)


class KeyApi:
    """Calls the key API as NHN's libraries do: ``Authorization: DPoP`` plus a proof with ``ath``."""

    def __init__(self, caller: Caller, client: DevClient, *, dpop: bool = True) -> None:
        self.caller, self.client, self.dpop = caller, client, dpop
        self.url = caller.issuer + PATH

    async def token(self, scope: str = SCOPE) -> str:
        response = await self.caller.request_token(self.client, scope=scope, dpop=self.dpop)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def headers(self, token: str, method: str, url: str) -> dict[str, str]:
        if not self.dpop:
            return {"Authorization": f"Bearer {token}"}
        return {"Authorization": f"DPoP {token}", "DPoP": self.proof(token, method, url)}

    def proof(self, token: str, method: str, url: str) -> str:
        ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()
        claims = {
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": url,
            "iat": int(self.caller.clock()),
            "ath": ath,
        }
        header = {
            "typ": "dpop+jwt",
            "alg": self.caller.dpop_alg,
            "jwk": self.caller.dpop_key.as_dict(private=False),
        }
        return jwt.encode(header, claims, self.caller.dpop_key, algorithms=[self.caller.dpop_alg])

    async def post(self, body: Any, *, token: str | None = None) -> httpx.Response:
        token = token or await self.token()
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {**self.headers(token, "POST", self.url), "Content-Type": "application/json"}
        return await self.caller.http.post(self.url, content=content, headers=headers)

    async def list(self, *, token: str | None = None) -> httpx.Response:
        token = token or await self.token()
        return await self.caller.http.get(self.url, headers=self.headers(token, "GET", self.url))

    async def delete(self, kid: str) -> httpx.Response:
        url = f"{self.url}/{kid}"
        return await self.caller.http.delete(url, headers=self.headers(await self.token(), "DELETE", url))


async def stats(caller: Caller) -> dict[str, int]:
    result: dict[str, int] = (await caller.http.get(caller.issuer + "/dev/stats")).json()["selvbetjening"]
    return result


async def set_faults(caller: Caller, **faults: Any) -> None:
    response = await caller.http.post(caller.issuer + "/dev/selvbetjening/faults", json=faults)
    assert response.status_code == 200, response.text


def parse_time(value: str) -> float:
    assert value.endswith("Z")
    return datetime.fromisoformat(value).astimezone(UTC).timestamp()


# --- the token ---------------------------------------------------------------------------------------


async def test_token_for_the_key_scope_has_the_selvbetjening_audience(
    caller: Caller, owner: DevClient
) -> None:
    token = await KeyApi(caller, owner).token()

    _, claims = await caller.verified_claims(token)

    assert claims["aud"] == "nhn:selvbetjening"
    assert claims["scope"] == [SCOPE]
    assert claims["client_id"] == owner.client_id


async def test_token_endpoint_refuses_the_key_scope_when_the_client_is_not_allowed_it(
    caller: Caller, outsider: DevClient
) -> None:
    response = await caller.request_token(outsider, scope=SCOPE)

    assert error_of(response) == "invalid_scope"


# --- registering and listing -------------------------------------------------------------------------


async def test_posted_key_is_listed_beside_the_registered_one_and_both_sign_assertions(
    caller: Caller, owner: DevClient
) -> None:
    api = KeyApi(caller, owner)
    second = new_key("owner-key-2")
    public = second.key.as_dict(private=False)
    before = time.time()

    posted = await api.post(public)

    assert posted.status_code == 200, posted.text
    assert set(posted.json()) == {"expiration"}
    expiration = parse_time(posted.json()["expiration"])
    assert before + YEAR_S - 5 <= expiration <= time.time() + YEAR_S + 5

    listed = await api.list()
    assert listed.status_code == 200
    by_kid = {entry["kid"]: entry for entry in listed.json()}
    assert set(by_kid) == {"owner-key-1", "owner-key-2"}
    first = by_kid["owner-key-1"]
    assert first["origin"] == "Gui"
    assert first["expiration"] is None
    assert first["jwkThumbprint"] == rfc7638_thumbprint(owner.key.as_dict(private=False))
    added = by_kid["owner-key-2"]
    assert added["origin"] == "Api"
    assert added["expiration"] == posted.json()["expiration"]
    assert added["jwkThumbprint"] == rfc7638_thumbprint(public)
    assert json.loads(added["publicJwk"]) == public
    for entry in listed.json():
        assert set(entry) == {"expiration", "kid", "jwkThumbprint", "origin", "publicJwk"}

    assert (await caller.request_token(signing_with(owner, second), scope=PPS_SCOPE)).status_code == 200
    assert (await caller.request_token(owner, scope=PPS_SCOPE)).status_code == 200  # the old key stays
    assert await stats(caller) == {"registrations": 1, "refused": 0, "lists": 1, "removals": 0}


async def test_keys_posted_as_a_json_string_or_without_kid_are_accepted(
    caller: Caller, owner: DevClient
) -> None:
    api = KeyApi(caller, owner)
    as_string = new_key("owner-key-string")
    rsa = RSAKey.generate_key(2048)  # no kid: the key is then known by its thumbprint
    rsa_public = rsa.as_dict(private=False)
    rsa_public.pop("kid", None)

    # FHI's tool serialises the JWK's JSON text as a JSON string.
    assert (await api.post(json.dumps(as_string.key.as_dict(private=False)))).status_code == 200
    assert (await api.post(rsa_public)).status_code == 200

    kids = {entry["kid"] for entry in (await api.list()).json()}
    assert kids == {"owner-key-1", "owner-key-string", rfc7638_thumbprint(rsa_public)}
    by_thumbprint = RSAKey.import_key(rsa.as_dict(private=True) | {"kid": rfc7638_thumbprint(rsa_public)})
    with_thumbprint_kid = DevClient(owner.client_id, by_thumbprint, "PS256")
    assert (await caller.request_token(with_thumbprint_kid, scope=PPS_SCOPE)).status_code == 200


async def test_bearer_client_registers_its_key_with_a_bearer_token(
    caller: Caller, neighbour: DevClient
) -> None:
    api = KeyApi(caller, neighbour, dpop=False)

    posted = await api.post(new_key("neighbour-key-2").key.as_dict(private=False))

    assert posted.status_code == 200, posted.text
    assert [entry["origin"] for entry in (await api.list()).json()] == ["Gui", "Api"]


async def test_private_duplicate_or_malformed_keys_are_refused_with_a_problem(
    caller: Caller, owner: DevClient
) -> None:
    api = KeyApi(caller, owner)
    private = new_key("owner-key-private").key.as_dict(private=True)
    duplicate = owner.key.as_dict(private=False)

    for body in (private, duplicate, b"not json", [1, 2], {"kty": "oct", "k": "c2VjcmV0", "kid": "sym"}):
        refused = await api.post(body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.headers["Content-Type"].startswith("application/problem+json")
        assert refused.json()["status"] == 400
        assert private["d"] not in refused.text  # no key material is echoed

    assert [entry["kid"] for entry in (await api.list()).json()] == ["owner-key-1"]
    assert (await stats(caller))["refused"] == 5


# --- who may call -------------------------------------------------------------------------------------


async def test_calls_without_a_valid_selvbetjening_token_are_refused(
    caller: Caller, owner: DevClient
) -> None:
    api = KeyApi(caller, owner)
    body = new_key("owner-key-x").key.as_dict(private=False)

    no_token = await caller.http.post(api.url, json=body)
    other_audience = await api.post(body, token=await api.token(PPS_SCOPE))
    other_scope = await api.post(body, token=await api.token(OTHER_SELVBETJENING_SCOPE))
    token = await api.token()
    as_bearer = await caller.http.post(api.url, json=body, headers={"Authorization": f"Bearer {token}"})
    wrong_url = await caller.http.post(
        api.url,
        json=body,
        headers={"Authorization": f"DPoP {token}", "DPoP": api.proof(token, "POST", api.url + "x")},
    )
    no_proof = await caller.http.get(api.url, headers={"Authorization": f"DPoP {token}"})

    for refused in (no_token, other_audience, as_bearer, wrong_url, no_proof):
        assert refused.status_code == 401, refused.text
        assert "WWW-Authenticate" in refused.headers
    assert other_scope.status_code == 403
    assert 'error="insufficient_scope"' in other_scope.headers["WWW-Authenticate"]
    assert [entry["kid"] for entry in (await api.list()).json()] == ["owner-key-1"]


async def test_a_token_changes_only_its_own_clients_keys(
    caller: Caller, owner: DevClient, neighbour: DevClient
) -> None:
    theirs = KeyApi(caller, neighbour, dpop=False)
    foreign = new_key("neighbour-key-3")
    assert (await theirs.post(foreign.key.as_dict(private=False))).status_code == 200

    ours = await KeyApi(caller, owner).list()
    removal = await theirs.delete("owner-key-1")
    borrowed = await caller.request_token(signing_with(owner, foreign), scope=PPS_SCOPE)

    assert [entry["kid"] for entry in ours.json()] == ["owner-key-1"]
    assert removal.status_code == 404
    assert error_of(borrowed) == "invalid_client"
    assert (
        await caller.request_token(signing_with(neighbour, foreign), scope=SCOPE, dpop=False)
    ).status_code == 200


# --- faults, expiry, removal -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403])
async def test_a_refused_registration_keeps_the_old_key(
    caller: Caller, owner: DevClient, status: int
) -> None:
    api = KeyApi(caller, owner)
    second = new_key("owner-key-2")
    await set_faults(caller, refuse=True, status=status)

    refused = await api.post(second.key.as_dict(private=False))
    again = await api.post(second.key.as_dict(private=False))

    assert refused.status_code == again.status_code == status
    assert refused.json()["status"] == status
    assert [entry["kid"] for entry in (await api.list()).json()] == ["owner-key-1"]
    assert (
        error_of(await caller.request_token(signing_with(owner, second), scope=PPS_SCOPE)) == "invalid_client"
    )
    assert (await caller.request_token(owner, scope=PPS_SCOPE)).status_code == 200
    assert await stats(caller) == {"registrations": 0, "refused": 2, "lists": 1, "removals": 0}

    await set_faults(caller, refuse=False)
    assert (await api.post(second.key.as_dict(private=False))).status_code == 200
    assert (await caller.request_token(signing_with(owner, second), scope=PPS_SCOPE)).status_code == 200


async def test_dev_hooks_refuse_nonsense(caller: Caller) -> None:
    hooks = caller.issuer + "/dev/selvbetjening/"
    for body in ({}, {"refuse": "yes"}, {"refuse": True, "status": 200}, {"other": 1}):
        assert (await caller.http.post(hooks + "faults", json=body)).status_code == 400, body
    for body in ({}, {"key_lifetime_s": 0}, {"key_lifetime_s": 1.5}):
        assert (await caller.http.post(hooks + "key-lifetime", json=body)).status_code == 400, body
    settings = (await caller.http.get(hooks + "faults")).json()
    assert settings == {"refuse": False, "status": 400, "key_lifetime_s": YEAR_S}


async def test_an_expired_key_stops_working_and_the_others_go_on(
    caller: Caller, owner: DevClient, clock: MovableClock
) -> None:
    api = KeyApi(caller, owner)
    second = new_key("owner-key-2")
    lifetime = await caller.http.post(
        caller.issuer + "/dev/selvbetjening/key-lifetime", json={"key_lifetime_s": 60}
    )
    assert lifetime.json()["key_lifetime_s"] == 60

    posted = await api.post(second.key.as_dict(private=False))
    assert parse_time(posted.json()["expiration"]) == pytest.approx(clock() + 60, abs=2)
    assert (await caller.request_token(signing_with(owner, second), scope=PPS_SCOPE)).status_code == 200

    clock.offset += 61

    assert (
        error_of(await caller.request_token(signing_with(owner, second), scope=PPS_SCOPE)) == "invalid_client"
    )
    assert (await caller.request_token(owner, scope=PPS_SCOPE)).status_code == 200
    # Still listed, with its past expiry, until removed.
    listed = {entry["kid"]: entry for entry in (await api.list()).json()}
    assert parse_time(listed["owner-key-2"]["expiration"]) < clock()


async def test_delete_removes_a_key_but_never_the_last(caller: Caller, owner: DevClient) -> None:
    api = KeyApi(caller, owner)
    second = new_key("owner-key-2")
    assert (await api.post(second.key.as_dict(private=False))).status_code == 200

    assert (await api.delete("owner-key-1")).status_code == 204
    api = KeyApi(caller, signing_with(owner, second))  # the remaining key fetches the tokens now
    last = await api.delete("owner-key-2")

    assert last.status_code == 400
    assert [entry["kid"] for entry in (await api.list()).json()] == ["owner-key-2"]
    assert error_of(await caller.request_token(owner, scope=PPS_SCOPE)) == "invalid_client"
    assert (await caller.request_token(signing_with(owner, second), scope=PPS_SCOPE)).status_code == 200
    assert (await stats(caller))["removals"] == 1


# --- the registry underneath --------------------------------------------------------------------------


def test_key_expirations_must_name_registered_kids_with_numeric_times(owner: DevClient) -> None:
    jwks = {"keys": [owner.key.as_dict(private=False)]}
    common: dict[str, Any] = {
        "client_id": "c",
        "jwks": jwks,
        "tenancy": "single",
        "organization_number": SINGLE_ORG,
    }

    with pytest.raises(ValueError, match="not a kid of jwks"):
        RegisteredClient(**common, key_expirations={"nope": 1.0})
    with pytest.raises(ValueError, match="must be a number"):
        RegisteredClient(**common, key_expirations={"owner-key-1": "tomorrow"})
    client = RegisteredClient.from_json({**common, "key_expirations": {"owner-key-1": 100}})
    assert client.expired_kids(100.0) == {"owner-key-1"}
    assert client.without_keys(frozenset({"owner-key-1"})).verification_key("owner-key-1") is None
    assert client.verification_key("owner-key-1") is not None
