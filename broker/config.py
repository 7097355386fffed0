"""The broker's configuration: one TOML file, read once, validated whole before anything starts.

Errors name the dotted path of the offending field (`tenants.oslo.orgnr_parent: ...`). Secrets are
references (`{ file = "..." }` or `{ env = "..." }`), never values in the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from broker.audit import DEFAULT_FLUSH_INTERVAL, AuditSettings
from broker.errors import ConfigurationError, InvalidRequestError, ProtocolError
from broker.idp.jwks import parse_key_set
from broker.model import Caller, Client, ServiceAccountIssuer, SigningKey, Target, Tenancy, Tenant, TokenType
from broker.protocol import helseid, keys, rfc3986

DEFAULT_LISTEN = "127.0.0.1:50051"
_E = TypeVar("_E", Tenancy, TokenType)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    listen: str = DEFAULT_LISTEN
    workers: int = 1
    # PEM; with a certificate the server speaks TLS only; with a client CA it demands client certificates.
    tls_certificate: bytes | None = field(default=None, repr=False)
    tls_private_key: bytes | None = field(default=None, repr=False)
    tls_client_ca: bytes | None = field(default=None, repr=False)
    # Whose Kubernetes service-account tokens identify callers (`service_account = "ns:name"`).
    service_account_tokens: ServiceAccountIssuer | None = None


@dataclass(frozen=True, slots=True)
class StoreSettings:
    kind: str = "memory"
    url: str | None = None
    # AES-256-GCM key for values at rest in Redis; required with kind = "redis".
    encryption_key: bytes | None = field(default=None, repr=False)


DEFAULT_EXPIRY_SKEW = timedelta(seconds=30)
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=3)
DEFAULT_REQUEST_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class CacheSettings:
    # A token is never served later than its expiry minus this skew.
    expiry_skew: timedelta = DEFAULT_EXPIRY_SKEW
    # Stale (served, and refreshed in the background) from this fraction of the lifetime, +/- jitter.
    refresh_fraction: float = 0.5
    jitter_fraction: float = 0.1
    # How long a replica may hold a key's fetch lease before it must renew it.
    lease_ttl: timedelta = timedelta(seconds=10)
    # Background requests per second toward the STS (warm-up and refreshes), per replica.
    refresh_budget_per_s: float = 20.0


@dataclass(frozen=True, slots=True)
class StsSettings:
    connect_timeout: timedelta = DEFAULT_CONNECT_TIMEOUT
    request_timeout: timedelta = DEFAULT_REQUEST_TIMEOUT
    # The circuit opens after this many outage failures in a row and stays open for the cool-down.
    breaker_threshold: int = 5
    breaker_cool_down: timedelta = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    # STS requests a caller may drive (StartLogin, CompleteLogin, EndSession, exchange misses), per broker
    # process: the average rate and the burst. A login is two (PAR, then the code); 5/s is 2.5 logins a
    # second for one front end, and 50 covers a shift change's logins at once.
    sts_requests_per_caller_per_s: float = 5.0
    sts_burst: int = 50
    # Per-caller rates (`[callers.<name>] sts_requests_per_s`) that differ from the default.
    caller_rates: Mapping[str, float] = field(default_factory=dict)


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    log_format: str = "text"
    log_level: str = "INFO"
    # "host:port" of the Prometheus scrape endpoint; worker N of a multi-process broker serves on port + N.
    prometheus_listen: str | None = None
    # Base URL of an OTLP/HTTP receiver (the collector's :4318); /v1/traces and /v1/metrics are appended.
    otlp_endpoint: str | None = None
    trace_sample_ratio: float = 1.0
    # A server span for every RPC (the root of "RPC -> cache -> STS" traces). Off, only cache misses have
    # spans; on by default when traces are exported at all. It costs the hit path some microseconds.
    trace_rpcs: bool | None = None

    @property
    def traces_rpcs(self) -> bool:
        return self.otlp_endpoint is not None if self.trace_rpcs is None else self.trace_rpcs


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    clients: Mapping[str, Client]
    targets: Mapping[str, Target]
    tenants: Mapping[str, Tenant]
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    cache: CacheSettings = CacheSettings()
    sts: StsSettings = StsSettings()
    limits: LimitsSettings = LimitsSettings()
    # No callers: the broker serves anyone who reaches it, which it allows only on a loopback address.
    callers: Mapping[str, Caller] = field(default_factory=dict)
    telemetry: TelemetrySettings = TelemetrySettings()
    audit: AuditSettings = field(default_factory=AuditSettings)


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> BrokerConfig:
    """Reads and validates a configuration file; raises ConfigurationError naming the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(str(path), f"cannot read the configuration file ({exc.strerror})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(str(path), f"not valid TOML: {exc}") from exc
    return parse_config(raw, base_dir=path.parent, environ=os.environ if environ is None else environ)


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, environ: Mapping[str, str]) -> BrokerConfig:
    sections = {
        "authority",
        "server",
        "store",
        "cache",
        "sts",
        "limits",
        "telemetry",
        "audit",
        "clients",
        "targets",
        "tenants",
        "callers",
    }
    _only_keys(raw, "", sections)
    reader = _SecretReader(base_dir, environ)
    default_issuer = _parse_authority(_table(raw, "authority", required=False))
    clients = {
        name: _parse_client(
            f"clients.{name}", _as_table(value, f"clients.{name}"), name, default_issuer, reader
        )
        for name, value in _table(raw, "clients").items()
    }
    targets = {
        name: _parse_target(f"targets.{name}", _as_table(value, f"targets.{name}"), name)
        for name, value in _table(raw, "targets").items()
    }
    tenants = {
        name: _parse_tenant(f"tenants.{name}", _as_table(value, f"tenants.{name}"), name, clients, targets)
        for name, value in _table(raw, "tenants").items()
    }
    callers = _parse_callers(_table(raw, "callers", required=False), reader, targets, tenants)
    server = _parse_server(_table(raw, "server", required=False), reader, has_callers=bool(callers))
    _check_caller_identities(callers, server)
    return BrokerConfig(
        clients=clients,
        targets=targets,
        tenants=tenants,
        server=server,
        callers=callers,
        store=_parse_store(_table(raw, "store", required=False), reader),
        cache=_parse_cache(_table(raw, "cache", required=False)),
        sts=_parse_sts(_table(raw, "sts", required=False)),
        limits=_parse_limits(_table(raw, "limits", required=False), _table(raw, "callers", required=False)),
        telemetry=_parse_telemetry(_table(raw, "telemetry", required=False)),
        audit=_parse_audit(
            _table(raw, "audit", required=False), reader, base_dir, _table(raw, "telemetry", required=False)
        ),
    )


# --- sections -------------------------------------------------------------------------------------------


def _parse_authority(table: Mapping[str, Any]) -> str | None:
    _only_keys(table, "authority", {"issuer"})
    if "issuer" not in table:
        return None
    return _issuer(table["issuer"], "authority.issuer")


def _parse_client(
    path: str, table: Mapping[str, Any], name: str, default_issuer: str | None, reader: _SecretReader
) -> Client:
    _only_keys(table, path, {"client_id", "issuer", "tenancy", "signing_key", "dpop_key", "redirect_uris"})
    issuer = table.get("issuer", default_issuer)
    if issuer is None:
        raise ConfigurationError(f"{path}.issuer", "missing, and no [authority] issuer to fall back on")
    signing_key = reader.signing_key(table, f"{path}.signing_key")
    # HelseID accepts the client's own key for DPoP proofs; a separate DPoP key limits what a leak exposes.
    dpop_key = reader.signing_key(table, f"{path}.dpop_key") if "dpop_key" in table else signing_key
    return Client(
        name=name,
        client_id=_string(table, "client_id", path),
        issuer=_issuer(issuer, f"{path}.issuer"),
        tenancy=_enum(Tenancy, table.get("tenancy", "single"), f"{path}.tenancy"),
        signing_key=signing_key,
        dpop_key=dpop_key,
        redirect_uris=_redirect_uris(table, path),
    )


def _redirect_uris(table: Mapping[str, Any], path: str) -> tuple[str, ...]:
    uris = _strings(table, "redirect_uris", path)
    for index, uri in enumerate(uris):
        _absolute_url(uri, f"{path}.redirect_uris[{index}]")
    return uris


def _parse_target(path: str, table: Mapping[str, Any], name: str) -> Target:
    _only_keys(table, path, {"scopes", "resource", "token_type", "allowed_urls"})
    scopes = _strings(table, "scopes", path, required=True)
    if not scopes:
        raise ConfigurationError(f"{path}.scopes", "needs at least one scope")
    token_type = _enum(TokenType, _token_type_name(table.get("token_type", "dpop")), f"{path}.token_type")
    # Normalised once here, so requests compare against the form their own URLs are normalised to.
    allowed_urls = tuple(
        _url_prefix(url, f"{path}.allowed_urls[{index}]")
        for index, url in enumerate(_strings(table, "allowed_urls", path))
    )
    resource = table.get("resource")
    if resource is not None and (not isinstance(resource, str) or not resource):
        raise ConfigurationError(f"{path}.resource", "must be a non-empty string")
    return Target(
        name=name, scopes=scopes, resource=resource, token_type=token_type, allowed_urls=allowed_urls
    )


def _url_prefix(url: str, path: str) -> str:
    if "?" in url or "#" in url:
        raise ConfigurationError(path, "a URL prefix has no query or fragment")
    try:
        return rfc3986.normalize_http_url(url, field=path)
    except InvalidRequestError as exc:
        raise ConfigurationError(path, exc.description) from exc


def _parse_tenant(
    path: str,
    table: Mapping[str, Any],
    name: str,
    clients: Mapping[str, Client],
    targets: Mapping[str, Target],
) -> Tenant:
    _only_keys(table, path, {"client", "targets", "warm", "orgnr_parent", "orgnr_child", "sfm_journal_id"})
    client_name = _string(table, "client", path)
    client = clients.get(client_name)
    if client is None:
        raise ConfigurationError(f"{path}.client", f"no client named {client_name!r} in [clients]")
    tenant_targets = _strings(table, "targets", path, required=True)
    for index, target in enumerate(tenant_targets):
        if target not in targets:
            raise ConfigurationError(f"{path}.targets[{index}]", f"no target named {target!r} in [targets]")
    warm = _strings(table, "warm", path)
    for index, target in enumerate(warm):
        if target not in tenant_targets:
            raise ConfigurationError(f"{path}.warm[{index}]", f"{target!r} is not among the tenant's targets")
    parent = _checked(table, "orgnr_parent", path, helseid.validate_orgnr)
    child = _checked(table, "orgnr_child", path, helseid.validate_orgnr)
    journal_id = _checked(table, "sfm_journal_id", path, helseid.validate_journal_id)
    if client.tenancy is Tenancy.MULTI and parent is None:
        raise ConfigurationError(
            f"{path}.orgnr_parent", "a tenant of a multi-tenant client needs its parent org"
        )
    if client.tenancy is Tenancy.SINGLE and parent is not None:
        raise ConfigurationError(
            f"{path}.orgnr_parent", "HelseID sets the parent of a single-tenant client itself; remove it"
        )
    return Tenant(
        name=name,
        client=client_name,
        targets=tenant_targets,
        orgnr_parent=parent,
        orgnr_child=child,
        sfm_journal_id=journal_id,
        warm_targets=warm,
    )


def _parse_callers(
    raw: Mapping[str, Any],
    reader: _SecretReader,
    targets: Mapping[str, Target],
    tenants: Mapping[str, Tenant],
) -> dict[str, Caller]:
    callers = {}
    for name, value in raw.items():
        path = f"callers.{name}"
        table = _as_table(value, path)
        _only_keys(table, path, {"tenants", "targets", "sessions", "sts_requests_per_s", *_CALLER_IDENTITIES})
        if not _CALLER_IDENTITIES & set(table):
            raise ConfigurationError(
                path, "needs a way to authenticate: credential, spiffe_id, dns_name or service_account"
            )
        sessions = table.get("sessions", False)
        if not isinstance(sessions, bool):
            raise ConfigurationError(f"{path}.sessions", "must be true or false")
        callers[name] = Caller(
            name=name,
            credential_sha256=_credential(table, path, reader),
            tenants=_names(table, "tenants", path, tenants),
            targets=_names(table, "targets", path, targets),
            sessions=sessions,
            spiffe_id=_identity(table, "spiffe_id", path),
            dns_name=_identity(table, "dns_name", path),
            service_account=_identity(table, "service_account", path),
        )
    return callers


_CALLER_IDENTITIES = frozenset({"credential", "spiffe_id", "dns_name", "service_account"})
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# What each identity must look like: SPIFFE ID (SPIFFE-ID §2), DNS name (no wildcard), and a namespace (a
# DNS label) with a service account's name (a DNS subdomain), as Kubernetes names objects.
_IDENTITY_FORMS = {
    "spiffe_id": (
        re.compile(r"spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*"),
        "a SPIFFE ID, spiffe://<trust domain>/<path>",
    ),
    "dns_name": (re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}"), "a DNS name (no wildcard)"),
    "service_account": (
        re.compile(rf"{_LABEL}:[a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?"),
        "'<namespace>:<name>'",
    ),
}


def _credential(table: Mapping[str, Any], path: str, reader: _SecretReader) -> bytes | None:
    if "credential" not in table:
        return None
    secret = reader.secret(table["credential"], f"{path}.credential", required=True).strip()
    if len(secret) < 32:
        raise ConfigurationError(f"{path}.credential", "must be at least 32 characters of random secret")
    return hashlib.sha256(secret.encode()).digest()


def _identity(table: Mapping[str, Any], name: str, path: str) -> str | None:
    value = table.get(name)
    if value is None:
        return None
    if isinstance(value, str) and name == "dns_name":
        value = value.lower().rstrip(".")  # compared with the certificate's SANs the same way
    pattern, form = _IDENTITY_FORMS[name]
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ConfigurationError(f"{path}.{name}", f"must be {form}")
    return value


def _check_caller_identities(callers: Mapping[str, Caller], server: ServerSettings) -> None:
    """Certificate identities need mTLS, tokens an issuer; no identity may name two callers."""
    seen: dict[tuple[str, str], str] = {}
    for caller in callers.values():
        path = f"callers.{caller.name}"
        for name in ("spiffe_id", "dns_name", "service_account"):
            value = getattr(caller, name)
            if value is None:
                continue
            if (name, value) in seen:
                raise ConfigurationError(f"{path}.{name}", f"already names caller {seen[name, value]!r}")
            seen[name, value] = caller.name
            if name != "service_account" and server.tls_client_ca is None:
                raise ConfigurationError(f"{path}.{name}", "needs mTLS: set server.tls.client_ca")
            if name == "service_account" and server.service_account_tokens is None:
                raise ConfigurationError(f"{path}.{name}", "needs a [server.service_account_tokens] section")


def _names(
    table: Mapping[str, Any], name: str, path: str, known: Mapping[str, object]
) -> frozenset[str] | None:
    values = _strings(table, name, path, required=True)
    if values == ("*",):
        return None
    for index, value in enumerate(values):
        if value not in known:
            raise ConfigurationError(f"{path}.{name}[{index}]", f"no {name[:-1]} named {value!r}")
    return frozenset(values)


def _parse_tls(table: Mapping[str, Any], reader: _SecretReader) -> dict[str, bytes | None]:
    _only_keys(table, "server.tls", {"certificate", "private_key", "client_ca"})
    pem = {
        name: reader.secret(table.get(name), f"server.tls.{name}", required=name != "client_ca").encode()
        or None
        for name in ("certificate", "private_key", "client_ca")
    }
    for name, value in pem.items():
        if value is not None and b"-----BEGIN " not in value:
            raise ConfigurationError(f"server.tls.{name}", "must be PEM")
    return {
        "tls_certificate": pem["certificate"],
        "tls_private_key": pem["private_key"],
        "tls_client_ca": pem["client_ca"],
    }


def _parse_server(table: Mapping[str, Any], reader: _SecretReader, *, has_callers: bool) -> ServerSettings:
    _only_keys(table, "server", {"listen", "workers", "tls", "service_account_tokens"})
    listen = table.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str) or ":" not in listen:
        raise ConfigurationError("server.listen", "must be 'host:port'")
    workers = table.get("workers", 1)
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise ConfigurationError("server.workers", "must be a whole number from 1 to 64")
    host = listen.rsplit(":", 1)[0].strip("[]")
    if not has_callers and host not in {"127.0.0.1", "localhost", "::1"}:
        raise ConfigurationError(
            "callers", "none configured: without caller credentials the broker listens on loopback only"
        )
    tls = _parse_tls(_as_table(table["tls"], "server.tls"), reader) if "tls" in table else {}
    tokens = table.get("service_account_tokens")
    issuer = None if tokens is None else _parse_service_account_tokens(tokens, reader)
    return ServerSettings(listen=listen, workers=workers, **tls, service_account_tokens=issuer)


def _parse_service_account_tokens(value: Any, reader: _SecretReader) -> ServiceAccountIssuer:
    path = "server.service_account_tokens"
    table = _as_table(value, path)
    _only_keys(table, path, {"issuer", "audience", "jwks", "refetch_interval_s", "leeway_s"})
    issuer = _string(table, "issuer", path)
    # Kept exactly as written: a token's iss must equal it character for character.
    _absolute_url(issuer, f"{path}.issuer")
    jwks_file = None
    if "jwks" in table:
        jwks = table["jwks"]
        if not isinstance(jwks, Mapping) or set(jwks) != {"file"}:
            raise ConfigurationError(f"{path}.jwks", 'must be { file = "path" } (omit it for OIDC discovery)')
        jwks_file = reader.path(jwks["file"])
        try:
            parse_key_set(reader.secret(jwks, f"{path}.jwks", required=True).encode())
        except ProtocolError as exc:
            raise ConfigurationError(f"{path}.jwks", exc.message) from None
    refetch = _seconds(table, "refetch_interval_s", path, timedelta(seconds=30))
    leeway = _seconds(table, "leeway_s", path, timedelta(seconds=10))
    if refetch < timedelta(seconds=1):
        raise ConfigurationError(f"{path}.refetch_interval_s", "must be at least 1 second")
    if leeway > timedelta(minutes=5):
        raise ConfigurationError(f"{path}.leeway_s", "must be at most 300 seconds")
    audience = _string(table, "audience", path)
    return ServiceAccountIssuer(issuer, audience, str(jwks_file) if jwks_file else None, refetch, leeway)


def _parse_store(table: Mapping[str, Any], reader: _SecretReader) -> StoreSettings:
    _only_keys(table, "store", {"kind", "url", "encryption_key"})
    kind = table.get("kind", "memory")
    if kind == "memory":
        return StoreSettings()
    if kind != "redis":
        raise ConfigurationError("store.kind", f"must be 'memory' or 'redis', not {kind!r}")
    url = _string(table, "url", "store")
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise ConfigurationError("store.url", "must be a redis://, rediss:// or unix:// URL")
    secret = reader.secret(table.get("encryption_key"), "store.encryption_key", required=True)
    try:
        key = base64.b64decode(secret.strip(), validate=True)
    except ValueError as exc:
        raise ConfigurationError("store.encryption_key", "must be base64 of 32 random bytes") from exc
    if len(key) != 32:
        raise ConfigurationError("store.encryption_key", "must be base64 of exactly 32 bytes (AES-256)")
    return StoreSettings(kind="redis", url=url, encryption_key=key)


def _parse_cache(table: Mapping[str, Any]) -> CacheSettings:
    fields = {"expiry_skew_s", "refresh_fraction", "jitter_fraction", "lease_ttl_s", "refresh_budget_per_s"}
    _only_keys(table, "cache", fields)
    defaults = CacheSettings()
    refresh = _number(table, "refresh_fraction", "cache", defaults.refresh_fraction, above=0, at_most=1)
    jitter = _number(table, "jitter_fraction", "cache", defaults.jitter_fraction, above=-1, at_most=refresh)
    if jitter < 0 or jitter >= refresh:
        raise ConfigurationError(
            "cache.jitter_fraction", "must be 0 or more and below cache.refresh_fraction"
        )
    lease_ttl = _seconds(table, "lease_ttl_s", "cache", defaults.lease_ttl)
    if lease_ttl < timedelta(seconds=1):
        raise ConfigurationError("cache.lease_ttl_s", "must be at least 1 second")
    return CacheSettings(
        expiry_skew=_seconds(table, "expiry_skew_s", "cache", DEFAULT_EXPIRY_SKEW),
        refresh_fraction=refresh,
        jitter_fraction=jitter,
        lease_ttl=lease_ttl,
        refresh_budget_per_s=_number(
            table, "refresh_budget_per_s", "cache", defaults.refresh_budget_per_s, above=0, at_most=10_000
        ),
    )


def _parse_sts(table: Mapping[str, Any]) -> StsSettings:
    _only_keys(
        table, "sts", {"connect_timeout_s", "request_timeout_s", "breaker_threshold", "breaker_cool_down_s"}
    )
    defaults = StsSettings()
    threshold = table.get("breaker_threshold", defaults.breaker_threshold)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise ConfigurationError("sts.breaker_threshold", "must be a whole number, 1 or more")
    return StsSettings(
        connect_timeout=_seconds(table, "connect_timeout_s", "sts", DEFAULT_CONNECT_TIMEOUT),
        request_timeout=_seconds(table, "request_timeout_s", "sts", DEFAULT_REQUEST_TIMEOUT),
        breaker_threshold=threshold,
        breaker_cool_down=_seconds(table, "breaker_cool_down_s", "sts", defaults.breaker_cool_down),
    )


def _parse_limits(table: Mapping[str, Any], callers: Mapping[str, Any]) -> LimitsSettings:
    _only_keys(table, "limits", {"sts_requests_per_caller_per_s", "sts_burst"})
    defaults = LimitsSettings()
    default_rate = defaults.sts_requests_per_caller_per_s
    rate = _number(table, "sts_requests_per_caller_per_s", "limits", default_rate, above=0, at_most=10_000)
    burst = table.get("sts_burst", defaults.sts_burst)
    if not isinstance(burst, int) or isinstance(burst, bool) or not 1 <= burst <= 100_000:
        raise ConfigurationError("limits.sts_burst", "must be a whole number from 1 to 100000")
    caller_rates = {
        name: _number(caller, "sts_requests_per_s", f"callers.{name}", rate, above=0, at_most=10_000)
        for name, caller in ((name, _as_table(value, f"callers.{name}")) for name, value in callers.items())
        if "sts_requests_per_s" in caller
    }
    return LimitsSettings(rate, burst, caller_rates)


def _parse_telemetry(table: Mapping[str, Any]) -> TelemetrySettings:
    fields = {
        "log_format",
        "log_level",
        "prometheus_listen",
        "otlp_endpoint",
        "trace_sample_ratio",
        "trace_rpcs",
    }
    _only_keys(table, "telemetry", fields)
    log_format = table.get("log_format", "text")
    if log_format not in LOG_FORMATS:
        raise ConfigurationError("telemetry.log_format", f"must be 'text' or 'json', not {log_format!r}")
    log_level = table.get("log_level", "INFO")
    if not isinstance(log_level, str) or log_level.upper() not in LOG_LEVELS:
        raise ConfigurationError("telemetry.log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    listen = table.get("prometheus_listen")
    if listen is not None:
        host, _, port = listen.rpartition(":") if isinstance(listen, str) else ("", "", "")
        if not host or not port.isdigit() or int(port) > 65535:
            raise ConfigurationError("telemetry.prometheus_listen", "must be 'host:port'")
    endpoint = table.get("otlp_endpoint")
    if endpoint is not None:
        parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
        if parts is None or parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ConfigurationError("telemetry.otlp_endpoint", "must be an http or https URL")
    ratio = table.get("trace_sample_ratio", 1.0)
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 <= ratio <= 1:
        raise ConfigurationError("telemetry.trace_sample_ratio", "must be a number from 0 to 1")
    trace_rpcs = table.get("trace_rpcs")
    if trace_rpcs is not None and not isinstance(trace_rpcs, bool):
        raise ConfigurationError("telemetry.trace_rpcs", "must be true or false")
    return TelemetrySettings(log_format, log_level.upper(), listen, endpoint, float(ratio), trace_rpcs)


def _parse_audit(
    table: Mapping[str, Any], reader: _SecretReader, base_dir: Path, telemetry: Mapping[str, Any]
) -> AuditSettings:
    _only_keys(table, "audit", {"directory", "otel", "hash_key", "fsync", "flush_interval_s"})
    directory = table.get("directory")
    if directory is not None and (not isinstance(directory, str) or not directory):
        raise ConfigurationError("audit.directory", "must be a path (relative: to this file's directory)")
    flags = {name: table.get(name, default) for name, default in (("otel", False), ("fsync", True))}
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigurationError(f"audit.{name}", "must be true or false")
    endpoint = telemetry.get("otlp_endpoint") if flags["otel"] else None
    if flags["otel"] and endpoint is None:
        raise ConfigurationError("audit.otel", "needs telemetry.otlp_endpoint to export to")
    interval = _seconds(table, "flush_interval_s", "audit", DEFAULT_FLUSH_INTERVAL)
    if not timedelta(milliseconds=10) <= interval <= timedelta(seconds=1):
        raise ConfigurationError("audit.flush_interval_s", "must be from 0.01 to 1 second")
    key = None
    if "hash_key" in table:
        secret = reader.secret(table["hash_key"], "audit.hash_key", required=True)
        try:
            key = base64.b64decode(secret.strip(), validate=True)
        except ValueError as exc:
            raise ConfigurationError("audit.hash_key", "must be base64 of 32 random bytes") from exc
        if len(key) != 32:
            raise ConfigurationError("audit.hash_key", "must be base64 of exactly 32 bytes")
    return AuditSettings(
        directory=None if directory is None else base_dir / directory,
        otlp_endpoint=endpoint,
        hash_key=key,
        flush_interval=interval,
        fsync=flags["fsync"],
    )


# --- secrets --------------------------------------------------------------------------------------------


class _SecretReader:
    """Resolves `{ file = ... }` / `{ env = ... }` references; never puts a secret into an error message."""

    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self._base_dir = base_dir
        self._environ = environ

    def secret(self, ref: Any, path: str, *, required: bool) -> str:
        if ref is None and not required:
            return ""
        if not isinstance(ref, Mapping) or len(ref) != 1 or not ({"file", "env"} >= set(ref)):
            raise ConfigurationError(path, 'must be a reference: { file = "path" } or { env = "NAME" }')
        if "env" in ref:
            value = self._environ.get(str(ref["env"]))
            if not value:
                raise ConfigurationError(path, f"environment variable {ref['env']!r} is not set")
            return value
        file = Path(str(ref["file"]))
        file = file if file.is_absolute() else self._base_dir / file
        try:
            return file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(path, f"cannot read {file} ({exc.strerror})") from exc

    def path(self, name: Any) -> Path:
        file = Path(str(name))
        return file if file.is_absolute() else self._base_dir / file

    def signing_key(self, table: Mapping[str, Any], path: str) -> SigningKey:
        key_name = path.rsplit(".", 1)[1]
        text = self.secret(table.get(key_name), path, required=True)
        try:
            jwk = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(path, "is not a JSON Web Key (not valid JSON)") from exc
        if not isinstance(jwk, dict):
            raise ConfigurationError(path, "is not a JSON Web Key (not a JSON object)")
        try:
            return keys.load_signing_key(jwk)
        except ValueError as exc:
            raise ConfigurationError(path, str(exc)) from exc


# --- typed readers --------------------------------------------------------------------------------------


def _table(raw: Mapping[str, Any], name: str, *, required: bool = True) -> Mapping[str, Any]:
    if name not in raw:
        if required:
            raise ConfigurationError(name, "missing section")
        return {}
    return _as_table(raw[name], name)


def _as_table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError(path, "must be a table")
    return value


def _only_keys(table: Mapping[str, Any], path: str, allowed: set[str]) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        prefix = f"{path}." if path else ""
        raise ConfigurationError(
            f"{prefix}{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def _string(table: Mapping[str, Any], name: str, path: str) -> str:
    value = table.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{path}.{name}", "missing, or not a non-empty string")
    return value


def _strings(table: Mapping[str, Any], name: str, path: str, *, required: bool = False) -> tuple[str, ...]:
    if name not in table:
        if required:
            raise ConfigurationError(f"{path}.{name}", "missing")
        return ()
    value = table[name]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigurationError(f"{path}.{name}", "must be a list of non-empty strings")
    return tuple(value)


def _seconds(table: Mapping[str, Any], name: str, path: str, default: timedelta) -> timedelta:
    value = table.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{path}.{name}", "must be a number of seconds, zero or more")
    return timedelta(seconds=value)


def _number(
    table: Mapping[str, Any], name: str, path: str, default: float, *, above: float, at_most: float
) -> float:
    value = table.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not above < value <= at_most:
        raise ConfigurationError(f"{path}.{name}", f"must be a number above {above} and at most {at_most}")
    return float(value)


def _checked(table: Mapping[str, Any], name: str, path: str, check: Callable[[str, str], str]) -> str | None:
    if name not in table:
        return None
    value = table[name]
    if not isinstance(value, str):
        raise ConfigurationError(f"{path}.{name}", "must be a string")
    try:
        return check(value, f"{path}.{name}")
    except InvalidRequestError as exc:
        raise ConfigurationError(exc.field, exc.description) from exc


def _enum(kind: type[_E], value: Any, path: str) -> _E:
    for member in kind:
        if member.value == value:
            return member
    allowed = ", ".join(repr(member.value) for member in kind)
    raise ConfigurationError(path, f"must be one of {allowed}, not {value!r}")


def _token_type_name(value: Any) -> Any:
    return {"dpop": "DPoP", "bearer": "Bearer"}.get(value, value) if isinstance(value, str) else value


def _issuer(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(path, "must be a URL string")
    _absolute_url(value, path)
    # HelseID's discovery gives the issuer without a trailing slash; the assertion's aud must match exactly.
    return value.rstrip("/")


def _absolute_url(value: str, path: str) -> None:
    parts = urlsplit(value)
    loopback = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigurationError(path, "must be an https URL (http only on loopback)")
    if not parts.hostname:
        raise ConfigurationError(path, "must be an absolute URL")
