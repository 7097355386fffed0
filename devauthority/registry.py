"""The clients the dev authority knows: what Selvbetjening and Altinn know about a client in HelseID."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from joserfc.jwk import Key

from .algorithms import import_public_jwk
from .timing import Clock, is_numeric_date

Tenancy = Literal["single", "multi"]

_ORGNR = re.compile(r"[0-9]{9}")  # not \d, which also matches non-ASCII digits

# Grant types, named once; the token endpoint implements each of them (see grants.py).
CLIENT_CREDENTIALS = "client_credentials"
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a grant type, not a secret
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 - RFC 8693 grant type
KNOWN_GRANT_TYPES = (CLIENT_CREDENTIALS, AUTHORIZATION_CODE, REFRESH_TOKEN, TOKEN_EXCHANGE)


def is_orgnr(value: object) -> bool:
    """Norwegian organisation numbers are exactly nine digits (HelseID's HID-1004 rule)."""
    return isinstance(value, str) and _ORGNR.fullmatch(value) is not None


@dataclass(frozen=True, kw_only=True)
class RegisteredClient:
    """One client as registered in the dev authority.

    ``organization_number`` is the client's own org: the parent org of a single-tenant client, the
    supplier org of a multi-tenant one. ``child_organizations`` is the single-tenant child whitelist.
    ``delegations`` stands in for Altinn: the parent orgs that delegated to a multi-tenant client
    (``None`` accepts any parent, as a test environment with synthetic orgs effectively does).
    ``not_signed`` maps a parent org to the scopes whose terms it has not signed; those scopes are
    dropped and reported in ``rejected_scope``. ``allowed_resources`` defaults to the audiences of
    ``allowed_scopes``. Sequences may be given as lists; they are stored as tuples.

    ``grant_types`` lists what the client may use at the token endpoint (and ``authorization_code``
    also gates PAR and authorize). A client with ``authorization_code`` needs ``redirect_uris``;
    ``redirect_uri`` must then match one of them exactly. ``allowed_scopes`` holds API scopes and may
    also hold identity scopes (an auth-code client may use the standard identity scopes anyway).

    ``key_expirations`` maps a ``kid`` of ``jwks`` to the time (seconds since the epoch) the key stops
    verifying, as Selvbetjening's key expiry does; keys not named never expire.
    """

    client_id: str
    jwks: Mapping[str, Any]
    tenancy: Tenancy
    organization_number: str
    allowed_scopes: Sequence[str] = ()
    child_organizations: Sequence[str] = ()
    delegations: Sequence[str] | None = None
    not_signed: Mapping[str, Sequence[str]] = field(default_factory=dict)
    allowed_resources: Sequence[str] | None = None
    sfm_id: str | None = None
    require_dpop: bool = True
    grant_types: Sequence[str] = (CLIENT_CREDENTIALS,)
    redirect_uris: Sequence[str] = ()
    key_expirations: Mapping[str, float] = field(default_factory=dict)
    _keys: Mapping[str, Key] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Fail at registration, naming the field, rather than with a puzzling token error later.
        if not isinstance(self.client_id, str) or not self.client_id:
            raise ValueError("client_id must be a non-empty string")
        where = f"client {self.client_id!r}"
        if self.tenancy not in ("single", "multi"):
            raise ValueError(f"{where}: tenancy must be 'single' or 'multi'")
        if not is_orgnr(self.organization_number):
            raise ValueError(f"{where}: organization_number must be 9 digits")
        freeze = self._freeze
        freeze("allowed_scopes", _strings(self.allowed_scopes, f"{where}: allowed_scopes"))
        freeze("child_organizations", _orgnrs(self.child_organizations, f"{where}: child_organizations"))
        if self.delegations is not None:
            freeze("delegations", _orgnrs(self.delegations, f"{where}: delegations"))
        if self.allowed_resources is not None:
            freeze("allowed_resources", _strings(self.allowed_resources, f"{where}: allowed_resources"))
        freeze("grant_types", _strings(self.grant_types, f"{where}: grant_types"))
        if unknown := sorted(set(self.grant_types) - set(KNOWN_GRANT_TYPES)):
            raise ValueError(f"{where}: unknown grant_types {unknown}; known are {list(KNOWN_GRANT_TYPES)}")
        freeze("redirect_uris", _redirect_uris(self.redirect_uris, f"{where}: redirect_uris"))
        if AUTHORIZATION_CODE in self.grant_types and not self.redirect_uris:
            raise ValueError(f"{where}: a client with the {AUTHORIZATION_CODE} grant needs redirect_uris")
        if not isinstance(self.not_signed, Mapping):
            raise ValueError(f"{where}: not_signed must map parent org numbers to scope lists")
        not_signed: dict[str, tuple[str, ...]] = {}
        for orgnr, scopes in self.not_signed.items():
            if not is_orgnr(orgnr):
                raise ValueError(f"{where}: not_signed keys must be 9-digit org numbers")
            not_signed[orgnr] = _strings(scopes, f"{where}: not_signed[{orgnr}]")
        freeze("not_signed", not_signed)
        if self.sfm_id is not None and (not isinstance(self.sfm_id, str) or not self.sfm_id):
            raise ValueError(f"{where}: sfm_id must be a non-empty string")
        if not isinstance(self.require_dpop, bool):
            raise ValueError(f"{where}: require_dpop must be true or false")
        freeze("_keys", _import_jwks(self.jwks, where))
        freeze("key_expirations", _expirations(self.key_expirations, self._keys, where))

    def _freeze(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def verification_key(self, kid: str) -> Key | None:
        """The registered public key with this ``kid``, if any."""
        return self._keys.get(kid)

    def verification_keys(self) -> list[Key]:
        """Every registered public key."""
        return list(self._keys.values())

    def expired_kids(self, now: float) -> frozenset[str]:
        """The kids whose expiry has passed at ``now``."""
        return frozenset(kid for kid, at in self.key_expirations.items() if at <= now)

    def without_keys(self, kids: frozenset[str]) -> RegisteredClient:
        """This client with those keys no longer verifying; ``jwks`` still lists them (for key listings).

        A copy rather than a new registration: a client whose every key expired must still be found (to
        answer ``invalid_client`` about its kid), and a registration needs at least one key.
        """
        view = copy.copy(self)
        object.__setattr__(view, "_keys", {k: v for k, v in self._keys.items() if k not in kids})
        return view

    @property
    def resources(self) -> tuple[str, ...]:
        """The resources (audiences) the client may ask for with ``resource``."""
        if self.allowed_resources is not None:
            return tuple(self.allowed_resources)
        return tuple(dict.fromkeys(a for a in map(audience_of_scope, self.allowed_scopes) if a))

    @classmethod
    def from_json(cls, data: Any) -> RegisteredClient:
        """Build a client from its JSON form (the same field names); unknown fields are an error."""
        if not isinstance(data, Mapping):
            raise ValueError("a client must be a JSON object")
        init_fields = [f for f in fields(cls) if f.init]
        known = {f.name for f in init_fields}
        required = {f.name for f in init_fields if f.default is MISSING and f.default_factory is MISSING}
        problems = []
        if unknown := sorted(set(data) - known):
            problems.append(f"unknown fields {unknown}")
        if missing := sorted(required - set(data)):
            problems.append(f"missing fields {missing}")
        if problems:
            raise ValueError(f"client {data.get('client_id')!r}: {', '.join(problems)}")
        return cls(**data)


def audience_of_scope(scope: str) -> str | None:
    """The API a scope belongs to, as HelseID derives ``aud``: the part before the first ``/``.

    ``helseid://`` scopes describe the client or the user, not an API, so they give no audience;
    neither does a scope without a ``/``.
    """
    if scope.startswith("helseid://") or "/" not in scope:
        return None
    return scope.split("/", 1)[0]


def load_clients(path: str | Path) -> list[RegisteredClient]:
    """Read clients from a JSON file: a list of clients, or ``{"clients": [...]}``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return clients_from_json(data)


def clients_from_json(data: Any) -> list[RegisteredClient]:
    """Parse the JSON form of one client list (see :func:`load_clients`)."""
    if isinstance(data, Mapping) and "clients" in data:
        data = data["clients"]
    if not isinstance(data, list):
        raise ValueError('the client file must hold a list of clients or {"clients": [...]}')
    clients = [RegisteredClient.from_json(item) for item in data]
    ids = [c.client_id for c in clients]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"client ids registered twice: {duplicates}")
    return clients


class ClientRegistry:
    """The live set of clients. Registering a known client_id replaces it (as a key rotation would)."""

    def __init__(self, clients: Sequence[RegisteredClient] = (), *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._clients: dict[str, RegisteredClient] = {}
        for client in clients:
            self.register(client)

    def register(self, client: RegisteredClient) -> None:
        if not isinstance(client, RegisteredClient):
            raise TypeError("register() takes a RegisteredClient")
        self._clients[client.client_id] = client

    def get(self, client_id: str) -> RegisteredClient | None:
        """The client as it verifies now: keys past their ``key_expirations`` no longer verify."""
        client = self._clients.get(client_id)
        if client is None or not client.key_expirations:
            return client
        expired = client.expired_kids(self._clock())
        return client.without_keys(expired) if expired else client

    def __iter__(self) -> Iterator[RegisteredClient]:
        return iter(list(self._clients.values()))

    def __len__(self) -> int:
        return len(self._clients)


def _strings(values: object, where: str) -> tuple[str, ...]:
    # A bare string is a sequence too; accepting it would register each character as a scope.
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValueError(f"{where} must be a list of strings")
    if not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{where} must be a list of non-empty strings")
    return tuple(cast("Sequence[str]", values))


def _redirect_uris(values: object, where: str) -> tuple[str, ...]:
    result = _strings(values, where) if values else ()
    for uri in result:
        try:
            parts = urlsplit(uri)
        except ValueError:
            raise ValueError(f"{where}: {uri!r} is not a URI") from None
        # OAuth compares redirect URIs as strings, so each must be absolute and carry no fragment
        # (RFC 6749 §3.1.2); custom schemes of native apps are fine.
        if not parts.scheme or parts.fragment or "#" in uri:
            raise ValueError(f"{where}: {uri!r} must be an absolute URI without a fragment")
    return result


def _orgnrs(values: object, where: str) -> tuple[str, ...]:
    result = _strings(values, where)
    if not all(is_orgnr(v) for v in result):
        raise ValueError(f"{where} must hold 9-digit org numbers")
    return result


def _expirations(values: object, keys: Mapping[str, Key], where: str) -> dict[str, float]:
    if not isinstance(values, Mapping):
        raise ValueError(f"{where}: key_expirations must map kids to times (seconds since the epoch)")
    for kid, at in values.items():
        if kid not in keys:
            raise ValueError(f"{where}: key_expirations names {kid!r}, which is not a kid of jwks")
        if not is_numeric_date(at):
            raise ValueError(f"{where}: key_expirations[{kid!r}] must be a number (seconds since the epoch)")
    return {kid: float(at) for kid, at in values.items()}


def _import_jwks(jwks: object, where: str) -> dict[str, Key]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError(f'{where}: jwks must be {{"keys": [public JWKs]}} with at least one key')
    keys: dict[str, Key] = {}
    for index, data in enumerate(jwks["keys"]):
        kid = data.get("kid") if isinstance(data, Mapping) else None
        # HelseID picks the verification key by the assertion's kid, so every key needs one.
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"{where}: jwks key #{index} has no kid")
        if kid in keys:
            raise ValueError(f"{where}: jwks kid {kid!r} appears twice")
        try:
            keys[kid] = import_public_jwk(data)
        except ValueError as exc:
            raise ValueError(f"{where}: jwks key {kid!r}: {exc}") from exc
    return keys
