"""The broker's domain values: clients, targets, tenants, keys and tokens.

All are frozen, slotted dataclasses. Instants are timezone-aware UTC `datetime`s named `*_at`; durations are
`timedelta`s.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol


class Tenancy(enum.Enum):
    """How HelseID knows the client: one organisation, or a supplier acting for many (Altinn delegation)."""

    SINGLE = "single"
    MULTI = "multi"


class TokenType(enum.Enum):
    """The `token_type` of an access token; also the scheme of its `Authorization` header."""

    DPOP = "DPoP"
    BEARER = "Bearer"


class Signer(Protocol):
    """The one seam every signature of the broker passes (client assertions, request objects, DPoP proofs):
    sign these bytes with this key. Where the key lives is the signer's business: process memory (a file or
    environment JWK), an HSM over PKCS#11 (`broker/signers/`), or anything else that can sign."""

    @property
    def alg(self) -> str:
        """The JWS algorithm (RFC 7518 §3.1): ES256/384/512, RS256/384/512, PS256/384/512."""
        ...

    @property
    def kid(self) -> str: ...

    def public_jwk(self) -> Mapping[str, str]:
        """The public key's members only (kty, and crv, x, y or n, e)."""
        ...

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature over `signing_input`: for ES* the fixed-size r||s of RFC 7518 §3.4, for RS* and
        PS* the PKCS#1 signature."""
        ...


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A key the broker signs with, through its signer, with its algorithm, `kid`, RFC 7638 thumbprint and
    public members."""

    signer: Signer = field(repr=False)
    alg: str
    kid: str
    thumbprint: str
    public: Mapping[str, str] = field(repr=False)
    where: str = "memory"  # where the private key lives: "memory", "pkcs11", "store"


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When and how a client's signing key is rotated through Selvbetjening."""

    selvbetjening_url: str
    rotate_before_expiry: timedelta | None = None
    every: timedelta | None = None
    keep_old_key: timedelta = timedelta(hours=1)
    check_interval: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Client:
    """A HelseID client registered in Selvbetjening."""

    name: str
    client_id: str
    issuer: str
    tenancy: Tenancy
    signing_key: SigningKey
    dpop_key: SigningKey
    # Registered redirect URIs for user logins (the first is the default); empty: no logins.
    redirect_uris: tuple[str, ...] = ()
    rotation: RotationPolicy | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A resource server (API) the broker gets tokens for, such as SFM or PPS."""

    name: str
    scopes: tuple[str, ...]
    resource: str | None = None
    token_type: TokenType = TokenType.DPOP
    # URL prefixes the broker may mint DPoP proofs for; a proof for any other URL is refused.
    allowed_urls: tuple[str, ...] = ()
    # Which NHN API it is, so the broker renders that API's request headers from a care context
    # (protocol/api_headers.py); "none": no headers beyond Authorization and DPoP.
    api_profile: str = "none"


@dataclass(frozen=True, slots=True)
class Tenant:
    """An organisation the platform acts for, through one of its clients."""

    name: str
    client: str
    targets: tuple[str, ...]
    orgnr_parent: str | None = None
    orgnr_child: str | None = None
    sfm_journal_id: str | None = None
    warm_targets: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AccessToken:
    """An access token as the STS issued it, with what the broker learned from the response."""

    value: str = field(repr=False)
    token_type: TokenType
    issued_at: datetime
    expires_at: datetime
    scopes: tuple[str, ...] = ()
    rejected_scopes: tuple[str, ...] = ()
    audience: tuple[str, ...] = ()
    # RFC 7638 thumbprint of the DPoP key the token is bound to (`cnf.jkt`), None for bearer tokens.
    jkt: str | None = None

    @property
    def lifetime(self) -> timedelta:
        return self.expires_at - self.issued_at

    def remaining(self, now: datetime) -> timedelta:
        return self.expires_at - now


@dataclass(frozen=True, slots=True)
class TokenSet:
    """Everything a token response of a user grant carries (authorization code, refresh, exchange)."""

    access_token: AccessToken
    refresh_token: str | None = field(default=None, repr=False)
    # HelseID's `rt_expires_in`: when the refresh token, and so the user's session, runs out.
    refresh_expires_at: datetime | None = None
    id_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """Who logged in, from the verified ID token (HelseID's identity and HPR claims)."""

    subject: str
    pid: str | None = None
    hpr_number: str | None = None
    security_level: str | None = None
    assurance_level: str | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A login started by the broker and not yet completed: what the callback must match and redeem."""

    tenant: str
    targets: tuple[str, ...]
    redirect_uri: str
    code_verifier: str = field(repr=False)
    nonce: str = field(repr=False)
    expires_at: datetime
    # The caller that started the login; only it may complete it (None: the broker has no callers).
    caller: str | None = None
    attested: bool = False  # its request object carried a trust-framework attest (session-wide)


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user's session: the refresh token and who the user is. Encrypted at rest."""

    session_key: str  # a hash of the session id; the id itself is the caller's credential and is not stored
    tenant: str
    targets: tuple[str, ...]
    refresh_token: str = field(repr=False)
    expires_at: datetime
    user: UserIdentity
    created_at: datetime
    # The caller that completed the login (for the audit trail; who may use the session is the grant rule).
    owner: str | None = None
    # The login carried a trust-framework attest: every token of the session has it, and a per-request one
    # would be refused by HelseID (HID-DOUBLE-STRUCTURE).
    attested: bool = False


@dataclass(frozen=True, slots=True)
class Caller:
    """A service allowed to call the broker, known by any of: the secret it presents
    (`authorization: Bearer ...`), its client certificate (a SPIFFE ID or a DNS name among its SANs), or a
    Kubernetes service-account token. When two of them arrive they must name the same caller."""

    name: str
    credential_sha256: bytes | None = field(repr=False)  # None: no shared secret
    tenants: frozenset[str] | None  # None: every tenant
    targets: frozenset[str] | None  # None: every target
    sessions: bool = False  # may start logins and use sessions
    admin: bool = False  # may use the AdminService
    spiffe_id: str | None = None  # the one URI SAN of its X.509-SVID, "spiffe://trust-domain/path"
    dns_name: str | None = None  # a DNS SAN of its client certificate (exact, lower case)
    service_account: str | None = None  # "<namespace>:<name>" of its projected service-account token


@dataclass(frozen=True, slots=True)
class ServiceAccountIssuer:
    """The cluster issuer whose service-account tokens callers may present, and how to get its keys."""

    issuer: str
    audience: str  # the broker: a token must name it in `aud`
    jwks_file: str | None = None  # a JWKS file; None: OIDC discovery of the issuer
    # An unknown `kid` fetches the keys again at most once per this interval, never once per call.
    refetch_interval: timedelta = timedelta(seconds=30)
    leeway: timedelta = timedelta(seconds=10)  # on exp and nbf


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload of the configuration changed on a replica."""

    added_tenants: tuple[str, ...]
    removed_tenants: tuple[str, ...]
    routes_added: int
    routes_removed: int
    tokens_dropped: int
    warming: int
    needs_restart: tuple[str, ...]  # settings that changed but take effect only after a restart


@dataclass(frozen=True, slots=True)
class Practitioner:
    """The health personnel making a request (empty strings: not given)."""

    hpr_number: str = ""
    authorization: str = ""  # HPR authorisation, code system 9060 (LE, SP, ...)
    legal_entity: str = ""  # organisation number
    point_of_care: str = ""  # organisation number
    department: str = ""  # RESH id


@dataclass(frozen=True, slots=True)
class CareRelationship:
    """Why a practitioner accesses a patient's data."""

    healthcare_service: str = ""  # code system 8666
    purpose_of_use: str = ""  # TREAT, ETREAT, COC
    purpose_of_use_details: str = ""
    decision_ref: str = ""
    user_selected: bool = False


@dataclass(frozen=True, slots=True)
class CareContext:
    """Who makes one request to an NHN API, for which patient, and why. Health data: never logged."""

    patient_id: str = field(default="", repr=False)  # national id (fnr or dnr)
    practitioner: Practitioner = Practitioner()
    care_relationship: CareRelationship = CareRelationship()
    access_basis: str = ""  # UNNTAK, SAMTYKKE, FORHOYET_SAMTYKKE, AKUTT, FORHOYET_AKUTT
    event_id: str = ""
    source_system: str = ""
