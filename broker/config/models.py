"""The configuration FILE as pydantic models: one per section or entry, unknown fields refused.

These check each value on its own (types, ranges, URL and identifier forms); the rules that relate values
(a tenant's client exists, warm targets are among its targets, ...) are in `domain.py`, which turns these
into the broker's settings. Each entry (a client, a target, a tenant, a caller) validates alone, so one bad
entry does not hide the mistakes of the others, and a tenant from another source validates the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.config.fields import (
    AbsoluteUrl,
    DnsName,
    Fraction,
    HostPort,
    HttpEndpoint,
    Issuer,
    JournalId,
    Listen,
    LogLevel,
    Name,
    Names,
    Orgnr,
    RequestRate,
    Seconds,
    ServiceAccountName,
    SpiffeId,
    UrlPrefix,
    described,
)
from broker.config.problems import Problems, invalid
from broker.config.secrets import REFERENCE_FORM, FileRef, SecretRef
from broker.config.settings import DEFAULT_LISTEN


class Section(BaseModel):
    # strict: TOML has types; "1" is not a number and 1 is not true.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AuthorityModel(Section):
    issuer: Issuer | None = None


JwsAlg = Literal["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]


class Pkcs11Model(Section):
    """A key in an HSM, used through its PKCS#11 module; the private key never leaves the token."""

    module: Annotated[str, Field(min_length=1), described("must be the path of the PKCS#11 module (.so)")]
    token: Name  # the token's label
    key_label: Name  # the private key's CKA_LABEL
    pin: SecretRef  # the user PIN, by reference only
    # EC keys: the curve's alg (P-256 -> ES256, ...), so only that one; RSA keys: PS256 unless given.
    alg: JwsAlg | None = None
    kid: Name | None = None  # else the RFC 7638 thumbprint


KEY_REFERENCE_FORM = f"{REFERENCE_FORM}, or {{ pkcs11 = {{ module, token, key_label, pin }} }}"


class KeyRef(SecretRef):
    """A private key: a JWK in a file or a variable (SecretRef), or a key in an HSM (`pkcs11`)."""

    pkcs11: Pkcs11Model | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        # Replaces SecretRef's check of the same name: exactly one of file, env and pkcs11.
        if not isinstance(data, Mapping) or len(data) != 1 or not {"file", "env", "pkcs11"} >= set(data):
            raise invalid(KEY_REFERENCE_FORM)
        return data


Days = Annotated[float, Field(gt=0), described("must be a number of days above 0")]


class RotationModel(Section):
    # The client's Selvbetjening key API (POST/GET of /v1/client-secret).
    selvbetjening_url: AbsoluteUrl
    # Rotate when the current key expires within this many days (HelseID's expiration), or every N days.
    rotate_before_expiry_days: (
        Annotated[float, Field(gt=0), described("must be a number of days above 0")] | None
    ) = None
    every_days: Annotated[float, Field(gt=0), described("must be a number of days above 0")] | None = None
    # A replaced key is kept this long (every token it fetched has expired by then), then deleted.
    keep_old_key_s: Seconds = 3600
    # How often each replica looks whether a rotation is due (and reads the keys' expiry).
    check_interval_s: Annotated[float, Field(ge=1), described("must be at least 1 second")] = 600

    @model_validator(mode="after")
    def _has_a_trigger(self) -> RotationModel:
        if self.rotate_before_expiry_days is None and self.every_days is None:
            raise invalid("needs rotate_before_expiry_days or every_days")
        return self


class ClientModel(Section):
    client_id: Name
    issuer: Issuer | None = None  # else [authority] issuer
    tenancy: Literal["single", "multi"] = "single"
    signing_key: KeyRef
    # HelseID accepts the client's own key for DPoP proofs; a separate DPoP key limits what a leak exposes.
    dpop_key: KeyRef | None = None
    redirect_uris: list[AbsoluteUrl] = Field(default_factory=list)
    # Rotates the signing key through Selvbetjening before it expires (none: the operator rotates it).
    rotation: RotationModel | None = None


class TargetModel(Section):
    scopes: Annotated[list[Name], Field(min_length=1)]
    resource: Name | None = None
    token_type: Literal["dpop", "bearer", "DPoP", "Bearer"] = "dpop"  # noqa: S105 - a name, not a secret
    allowed_urls: list[UrlPrefix] = Field(default_factory=list)
    # The NHN API it is: which request headers the broker renders from a care context.
    api_profile: Literal[
        "none", "sfm", "pps", "critical-information", "journal-documents", "parek", "kjernejournal"
    ] = "none"


class TenantModel(Section):
    client: Name
    targets: Names
    warm: Names = Field(default_factory=list)
    # The organisation data of the client assertion's assertion_details.
    orgnr_parent: Orgnr | None = None
    orgnr_child: Orgnr | None = None
    sfm_journal_id: JournalId | None = None


CALLER_IDENTITIES = ("credential", "spiffe_id", "dns_name", "service_account")


class CallerModel(Section):
    credential: SecretRef | None = None
    spiffe_id: SpiffeId | None = None
    dns_name: DnsName | None = None
    service_account: ServiceAccountName | None = None
    tenants: Names  # ["*"]: every tenant
    targets: Names  # ["*"]: every target
    sessions: bool = False
    admin: bool = False  # may use the AdminService (tenants, reload, public keys)
    sts_requests_per_s: RequestRate | None = None  # else limits.sts_requests_per_caller_per_s

    @model_validator(mode="after")
    def _has_identity(self) -> CallerModel:
        if all(getattr(self, name) is None for name in CALLER_IDENTITIES):
            raise invalid("needs a way to authenticate: credential, spiffe_id, dns_name or service_account")
        return self


class TlsModel(Section):
    certificate: SecretRef
    private_key: SecretRef
    client_ca: SecretRef | None = None  # with it, callers need a client certificate it signed


class ServiceAccountTokensModel(Section):
    # Kept exactly as written: a token's iss must equal it character for character.
    issuer: AbsoluteUrl
    audience: Name
    jwks: Annotated[FileRef, described('must be { file = "path" } (omit it for OIDC discovery)')] | None = (
        None
    )
    refetch_interval_s: Annotated[float, Field(ge=1), described("must be at least 1 second")] = 30
    leeway_s: Annotated[float, Field(ge=0, le=300), described("must be from 0 to 300 seconds")] = 10


class ServerModel(Section):
    listen: Listen = DEFAULT_LISTEN
    workers: Annotated[int, Field(ge=1, le=64), described("must be a whole number from 1 to 64")] = 1
    tls: TlsModel | None = None
    service_account_tokens: ServiceAccountTokensModel | None = None
    max_watch_streams: Annotated[
        int, Field(ge=1, le=1_000_000), described("must be a whole number from 1 to 1,000,000")
    ] = 10_000


class StoreModel(Section):
    kind: Literal["memory", "redis"] = "memory"
    # A reference when the URL holds a password, so it can stay in a Secret and out of the ConfigMap.
    url: (
        Annotated[
            Name | SecretRef,
            described('must be a URL string or a reference: { env = "NAME" } or { file = "path" }'),
        ]
        | None
    ) = None
    # Redis Sentinel instead of one server: the sentinels ("host:port") and the name they watch the master
    # under; the broker asks them for the master, and again after a failover.
    sentinels: list[HostPort] | None = None
    service_name: Name | None = None
    # Redis Cluster instead: some of its nodes ("host:port"); the broker discovers the rest.
    nodes: list[HostPort] | None = None
    encryption_key: SecretRef | None = None  # base64 of 32 random bytes


class CacheModel(Section):
    expiry_skew_s: Seconds = 30
    refresh_fraction: Fraction = 0.5
    jitter_fraction: Annotated[
        float, Field(ge=0), described("must be 0 or more and below refresh_fraction")
    ] = 0.1
    lease_ttl_s: Annotated[float, Field(ge=1), described("must be at least 1 second")] = 10
    refresh_budget_per_s: RequestRate = 20


class StsModel(Section):
    connect_timeout_s: Seconds = 3
    request_timeout_s: Seconds = 10
    breaker_threshold: Annotated[int, Field(ge=1), described("must be a whole number, 1 or more")] = 5
    breaker_cool_down_s: Seconds = 5


class LimitsModel(Section):
    sts_requests_per_caller_per_s: RequestRate = 5.0
    sts_burst: Annotated[
        int, Field(ge=1, le=100_000), described("must be a whole number from 1 to 100000")
    ] = 50


class TelemetryModel(Section):
    log_format: Literal["text", "json"] = "text"
    log_level: LogLevel = "INFO"
    prometheus_listen: HostPort | None = None
    otlp_endpoint: HttpEndpoint | None = None
    trace_sample_ratio: Annotated[float, Field(ge=0, le=1), described("must be a number from 0 to 1")] = 1.0
    trace_rpcs: bool | None = None


class AuditModel(Section):
    directory: (
        Annotated[str, Field(min_length=1), described("must be a path (relative: to this file's folder)")]
        | None
    ) = None
    otel: bool = False  # needs telemetry.otlp_endpoint
    hash_key: SecretRef | None = None  # base64 of 32 random bytes
    fsync: bool = True
    flush_interval_s: Annotated[float, Field(ge=0.01, le=1), described("must be from 0.01 to 1 second")] = 0.2


# The sections of the file with one table each, and those with a table per named entry.
SECTIONS: dict[str, type[Section]] = {
    "authority": AuthorityModel,
    "server": ServerModel,
    "store": StoreModel,
    "cache": CacheModel,
    "sts": StsModel,
    "limits": LimitsModel,
    "telemetry": TelemetryModel,
    "audit": AuditModel,
}
ENTRIES: dict[str, type[Section]] = {
    "clients": ClientModel,
    "targets": TargetModel,
    "tenants": TenantModel,
    "callers": CallerModel,
}
# No [tenants] is fine: they may all come from the tenants directory or the AdminService.
REQUIRED = ("clients", "targets")
# A top-level value, not a section: the folder of one-file-per-tenant (`directory.py`), read by the loader.
TENANTS_DIRECTORY = "tenants_directory"


@dataclass(frozen=True, slots=True)
class ValidatedFile:
    """A file's sections as models. A section absent from the file is its defaults. A field that failed
    validation holds its default and its path is in `broken`, so rules that need it are skipped, not
    misreported; an entry that could not be read at all is None, and its name still counts (a tenant may
    name that client)."""

    authority: AuthorityModel
    server: ServerModel
    store: StoreModel
    cache: CacheModel
    sts: StsModel
    limits: LimitsModel
    telemetry: TelemetryModel
    audit: AuditModel
    clients: Mapping[str, ClientModel | None]
    targets: Mapping[str, TargetModel | None]
    tenants: Mapping[str, TenantModel | None]
    callers: Mapping[str, CallerModel | None]
    broken: frozenset[str]

    def is_broken(self, path: str) -> bool:
        """Whether the field at `path`, or the table holding it, failed validation."""
        return path in self.broken or any(path.startswith(f"{failed}.") for failed in self.broken)


def validate_file(raw: Mapping[str, Any], problems: Problems) -> ValidatedFile:
    """Every section and every entry validated on its own; each mistake recorded in `problems`."""
    for name in raw:
        if name not in SECTIONS and name not in ENTRIES and name != TENANTS_DIRECTORY:
            allowed = ", ".join(sorted([*SECTIONS, *ENTRIES, TENANTS_DIRECTORY]))
            problems.add(name, f"unknown section (allowed: {allowed})")
    broken: set[str] = set()
    sections: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        validated, failed = problems.validate_leniently(model, raw.get(name, {}), name)
        sections[name] = model() if validated is None else validated
        broken |= {name} if validated is None else {f"{name}.{field}" for field in failed}
    entries: dict[str, Any] = {}
    for name, model in ENTRIES.items():
        if name not in raw and name in REQUIRED:
            problems.add(name, "missing section")
        table = raw.get(name, {})
        if not isinstance(table, Mapping):
            problems.add(name, "must be a table")
            table = {}
        entries[name] = {}
        for key, value in table.items():
            entries[name][key], failed = problems.validate_leniently(model, value, f"{name}.{key}")
            broken |= {f"{name}.{key}.{field}" for field in failed}
    return ValidatedFile(**sections, **entries, broken=frozenset(broken))
