"""From the validated file to the broker's settings, with the rules that relate one value to another.

Each rule records its mistake and goes on, so one run names every mistake. A value that could not be built
(an unreadable key) is left out; the loader raises before such a partial configuration is returned.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from broker.audit import AuditSettings
from broker.config import material
from broker.config.fields import LOOPBACK_HOSTS
from broker.config.models import (
    CALLER_IDENTITIES,
    AuditModel,
    CallerModel,
    ClientModel,
    KeyRef,
    RotationModel,
    ServerModel,
    ServiceAccountTokensModel,
    TargetModel,
    TenantModel,
    ValidatedFile,
)
from broker.config.problems import Problems
from broker.config.secrets import FileRef, SecretReader, SecretRef
from broker.config.settings import (
    BrokerConfig,
    CacheSettings,
    LimitsSettings,
    ServerSettings,
    StoreSettings,
    StsSettings,
    TelemetrySettings,
)
from broker.model import (
    Caller,
    Client,
    RotationPolicy,
    ServiceAccountIssuer,
    SigningKey,
    Target,
    Tenancy,
    Tenant,
    TokenType,
)

T = TypeVar("T")


def build_config(file: ValidatedFile, reader: SecretReader, problems: Problems) -> BrokerConfig:
    clients = _clients(file, reader, problems)
    targets = {name: _target(name, model) for name, model in file.targets.items() if model is not None}
    tenancies = {
        name: None if model is None or file.is_broken(f"clients.{name}.tenancy") else Tenancy(model.tenancy)
        for name, model in file.clients.items()
    }
    tenants = {
        name: check_tenant(name, model, tenancies, file.targets, problems, broken=file.broken)
        for name, model in file.tenants.items()
        if model is not None
    }
    callers = {
        name: _caller(name, model, reader, file, problems)
        for name, model in file.callers.items()
        if model is not None
    }
    _check_caller_identities(file, problems)
    return BrokerConfig(
        clients=clients,
        targets=targets,
        tenants=tenants,
        server=_server(file.server, reader, has_callers=bool(file.callers), problems=problems),
        callers=callers,
        store=_store(file, reader, problems),
        cache=_cache(file, problems),
        sts=StsSettings(
            connect_timeout=timedelta(seconds=file.sts.connect_timeout_s),
            request_timeout=timedelta(seconds=file.sts.request_timeout_s),
            breaker_threshold=file.sts.breaker_threshold,
            breaker_cool_down=timedelta(seconds=file.sts.breaker_cool_down_s),
        ),
        limits=_limits(file),
        telemetry=_telemetry(file),
        audit=_audit(file.audit, file, reader, problems),
    )


def check_tenant(
    name: str,
    model: TenantModel,
    tenancies: Mapping[str, Tenancy | None],
    target_names: Collection[str],
    problems: Problems,
    *,
    broken: Collection[str] = (),
) -> Tenant:
    """A tenant checked against the clients (name -> tenancy; None: a client whose tenancy is unknown) and
    the targets it may name: alone, so a tenant from any source is checked the same way. A field in
    `broken` already failed validation (it holds its default) and is not checked again."""
    path = f"tenants.{name}"
    if model.client not in tenancies and f"{path}.client" not in broken:
        problems.add(f"{path}.client", f"no client named {model.client!r} in [clients]")
    for index, target in enumerate(model.targets):
        if target not in target_names:
            problems.add(f"{path}.targets[{index}]", f"no target named {target!r} in [targets]")
    for index, target in enumerate(model.warm):
        if target not in model.targets and f"{path}.targets" not in broken:
            problems.add(f"{path}.warm[{index}]", f"{target!r} is not among the tenant's targets")
    tenancy = None if f"{path}.orgnr_parent" in broken else tenancies.get(model.client)
    if tenancy is Tenancy.MULTI and model.orgnr_parent is None:
        problems.add(f"{path}.orgnr_parent", "a tenant of a multi-tenant client needs its parent org")
    if tenancy is Tenancy.SINGLE and model.orgnr_parent is not None:
        problems.add(
            f"{path}.orgnr_parent", "HelseID sets the parent of a single-tenant client itself; remove it"
        )
    return Tenant(
        name=name,
        client=model.client,
        targets=tuple(model.targets),
        orgnr_parent=model.orgnr_parent,
        orgnr_child=model.orgnr_child,
        sfm_journal_id=model.sfm_journal_id,
        warm_targets=tuple(model.warm),
    )


def _clients(file: ValidatedFile, reader: SecretReader, problems: Problems) -> dict[str, Client]:
    clients = {}
    for name, model in file.clients.items():
        client = None if model is None else _client(name, model, file, reader, problems)
        if client is not None:
            clients[name] = client
    return clients


def _client(
    name: str, model: ClientModel, file: ValidatedFile, reader: SecretReader, problems: Problems
) -> Client | None:
    path = f"clients.{name}"
    issuer = model.issuer or file.authority.issuer
    if issuer is None and not file.is_broken("authority.issuer") and not file.is_broken(f"{path}.issuer"):
        problems.add(f"{path}.issuer", "missing, and no [authority] issuer to fall back on")
    signing_key = _signing_key(model.signing_key, f"{path}.signing_key", reader, problems)
    dpop_key = (
        signing_key
        if model.dpop_key is None
        else _signing_key(model.dpop_key, f"{path}.dpop_key", reader, problems)
    )
    if issuer is None or signing_key is None or dpop_key is None:
        return None
    return Client(
        name=name,
        client_id=model.client_id,
        issuer=issuer,
        tenancy=Tenancy(model.tenancy),
        signing_key=signing_key,
        dpop_key=dpop_key,
        redirect_uris=tuple(model.redirect_uris),
        rotation=None if model.rotation is None else _rotation(model.rotation),
    )


def _rotation(model: RotationModel) -> RotationPolicy:
    def days(value: float | None) -> timedelta | None:
        return None if value is None else timedelta(days=value)

    return RotationPolicy(
        selvbetjening_url=model.selvbetjening_url,
        rotate_before_expiry=days(model.rotate_before_expiry_days),
        every=days(model.every_days),
        keep_old_key=timedelta(seconds=model.keep_old_key_s),
        check_interval=timedelta(seconds=model.check_interval_s),
    )


def _signing_key(ref: KeyRef, path: str, reader: SecretReader, problems: Problems) -> SigningKey | None:
    hsm = ref.pkcs11
    if hsm is not None:
        return problems.attempt(lambda: material.pkcs11_signing_key(hsm, f"{path}.pkcs11", reader))
    return _resolve(ref, path, material.signing_key, reader, problems)


def _resolve(
    ref: SecretRef | FileRef,
    path: str,
    convert: Callable[[str, str], T],
    reader: SecretReader,
    problems: Problems,
) -> T | None:
    """The referenced text through `convert`, or None with the mistake recorded under `path`."""
    return problems.attempt(lambda: convert(reader.read(ref, path), path))


def _target(name: str, model: TargetModel) -> Target:
    token_type = TokenType.BEARER if model.token_type.lower() == "bearer" else TokenType.DPOP
    return Target(
        name=name,
        scopes=tuple(model.scopes),
        resource=model.resource,
        token_type=token_type,
        allowed_urls=tuple(model.allowed_urls),
        api_profile=model.api_profile,
    )


def _caller(
    name: str, model: CallerModel, reader: SecretReader, file: ValidatedFile, problems: Problems
) -> Caller:
    path = f"callers.{name}"
    digest = (
        None
        if model.credential is None
        else _resolve(model.credential, f"{path}.credential", material.credential_digest, reader, problems)
    )
    return Caller(
        name=name,
        credential_sha256=digest,
        tenants=_names(model.tenants, f"{path}.tenants", "tenant", file.tenants, problems),
        targets=_names(model.targets, f"{path}.targets", "target", file.targets, problems),
        sessions=model.sessions,
        admin=model.admin,
        spiffe_id=model.spiffe_id,
        dns_name=model.dns_name,
        service_account=model.service_account,
    )


def _names(
    values: list[str], path: str, kind: str, known: Collection[str], problems: Problems
) -> frozenset[str] | None:
    if values == ["*"]:
        return None
    for index, value in enumerate(values):
        if value not in known:
            problems.add(f"{path}[{index}]", f"no {kind} named {value!r}")
    return frozenset(values)


def _check_caller_identities(file: ValidatedFile, problems: Problems) -> None:
    """Certificate identities need mTLS, tokens an issuer; no identity may name two callers."""
    seen: dict[tuple[str, str], str] = {}
    tls = file.server.tls
    needs_client_ca = not file.is_broken("server.tls") and (tls is None or tls.client_ca is None)
    needs_issuer = (
        not file.is_broken("server.service_account_tokens") and file.server.service_account_tokens is None
    )
    for caller, model in file.callers.items():
        for name in CALLER_IDENTITIES[1:]:
            value = None if model is None else getattr(model, name)
            if value is None:
                continue
            path = f"callers.{caller}.{name}"
            if (name, value) in seen:
                problems.add(path, f"already names caller {seen[name, value]!r}")
            seen.setdefault((name, value), caller)
            if name != "service_account" and needs_client_ca:
                problems.add(path, "needs mTLS: set server.tls.client_ca")
            if name == "service_account" and needs_issuer:
                problems.add(path, "needs a [server.service_account_tokens] section")


def _server(
    model: ServerModel, reader: SecretReader, *, has_callers: bool, problems: Problems
) -> ServerSettings:
    host = model.listen.rsplit(":", 1)[0].strip("[]")
    if not has_callers and host not in LOOPBACK_HOSTS:
        problems.add(
            "callers", "none configured: without caller credentials the broker listens on loopback only"
        )
    pem: dict[str, bytes | None] = {}
    if model.tls is not None:
        refs = {"certificate": model.tls.certificate, "private_key": model.tls.private_key}
        refs |= {} if model.tls.client_ca is None else {"client_ca": model.tls.client_ca}
        for name, ref in refs.items():
            pem[name] = _resolve(ref, f"server.tls.{name}", material.pem, reader, problems)
    tokens = model.service_account_tokens
    return ServerSettings(
        listen=model.listen,
        workers=model.workers,
        tls_certificate=pem.get("certificate"),
        tls_private_key=pem.get("private_key"),
        tls_client_ca=pem.get("client_ca"),
        service_account_tokens=None if tokens is None else _service_account_issuer(tokens, reader, problems),
        max_watch_streams=model.max_watch_streams,
    )


def _service_account_issuer(
    model: ServiceAccountTokensModel, reader: SecretReader, problems: Problems
) -> ServiceAccountIssuer:
    jwks_file = None
    if model.jwks is not None:
        path = "server.service_account_tokens.jwks"
        jwks = model.jwks
        jwks_file = str(reader.path(jwks.file))
        _resolve(jwks, path, material.public_key_set, reader, problems)
    return ServiceAccountIssuer(
        model.issuer,
        model.audience,
        jwks_file,
        timedelta(seconds=model.refetch_interval_s),
        timedelta(seconds=model.leeway_s),
    )


def _store(file: ValidatedFile, reader: SecretReader, problems: Problems) -> StoreSettings:
    model = file.store
    if model.kind == "memory":
        return StoreSettings()
    sentinels: tuple[tuple[str, int], ...] = ()
    nodes: tuple[tuple[str, int], ...] = ()
    url = None
    if model.nodes is not None:
        if model.url is not None or model.sentinels is not None:
            problems.add("store.nodes", "give one of url (one server), sentinels or nodes (a cluster)")
        if not model.nodes:
            problems.add("store.nodes", "name at least one node of the cluster")
        nodes = tuple(_host_port(value) for value in model.nodes)
    elif model.sentinels is not None:
        if model.url is not None:
            problems.add("store.url", "give either url (one Redis server) or sentinels, not both")
        if not model.service_name:
            problems.add("store.service_name", "missing: the name the sentinels watch the master under")
        if not model.sentinels:
            problems.add("store.sentinels", "name at least one sentinel")
        sentinels = tuple(_host_port(value) for value in model.sentinels)
    elif not file.is_broken("store.url"):
        # A url that failed validation was already reported; it is not also missing.
        url = _store_url(model.url, reader, problems)
    key = None
    path = "store.encryption_key"
    ref = model.encryption_key
    if ref is None:
        problems.add(path, 'missing: a reference ({ env = "NAME" } or { file = "path" }) to 32 random bytes')
    else:
        key = _resolve(ref, path, material.store_key, reader, problems)
    return StoreSettings(
        kind="redis",
        url=url,
        encryption_key=key,
        sentinels=sentinels,
        service_name=model.service_name,
        nodes=nodes,
    )


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _store_url(value: str | SecretRef | None, reader: SecretReader, problems: Problems) -> str | None:
    """The Redis URL, written or referenced (a URL with a password lives in a Secret); None with the
    mistake recorded. Messages never quote it: it may hold the password."""
    path = "store.url"
    if value is None:
        problems.add(path, "missing: the Redis URL")
        return None
    # A Secret's file usually ends with a newline that is no part of the URL.
    url = value if isinstance(value, str) else _resolve(value, path, _stripped, reader, problems)
    if url is None:
        return None
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # a malformed IPv6 host, say
        scheme = ""
    if scheme not in {"redis", "rediss", "unix"}:
        problems.add(path, "must be a redis://, rediss:// or unix:// URL")
        return None
    return url


def _stripped(text: str, _path: str) -> str:
    return text.strip()


def _cache(file: ValidatedFile, problems: Problems) -> CacheSettings:
    model = file.cache
    both_read = not file.is_broken("cache.refresh_fraction") and not file.is_broken("cache.jitter_fraction")
    if both_read and model.jitter_fraction >= model.refresh_fraction:
        problems.add("cache.jitter_fraction", "must be 0 or more and below cache.refresh_fraction")
    return CacheSettings(
        expiry_skew=timedelta(seconds=model.expiry_skew_s),
        refresh_fraction=model.refresh_fraction,
        jitter_fraction=model.jitter_fraction,
        lease_ttl=timedelta(seconds=model.lease_ttl_s),
        refresh_budget_per_s=model.refresh_budget_per_s,
    )


def _limits(file: ValidatedFile) -> LimitsSettings:
    rates = {
        name: model.sts_requests_per_s
        for name, model in file.callers.items()
        if model is not None and model.sts_requests_per_s is not None
    }
    return LimitsSettings(file.limits.sts_requests_per_caller_per_s, file.limits.sts_burst, rates)


def _telemetry(file: ValidatedFile) -> TelemetrySettings:
    model = file.telemetry
    return TelemetrySettings(
        log_format=model.log_format,
        log_level=model.log_level,
        prometheus_listen=model.prometheus_listen,
        otlp_endpoint=model.otlp_endpoint,
        trace_sample_ratio=model.trace_sample_ratio,
        trace_rpcs=model.trace_rpcs,
    )


def _audit(model: AuditModel, file: ValidatedFile, reader: SecretReader, problems: Problems) -> AuditSettings:
    endpoint = file.telemetry.otlp_endpoint if model.otel else None
    if model.otel and endpoint is None and not file.is_broken("telemetry.otlp_endpoint"):
        problems.add("audit.otel", "needs telemetry.otlp_endpoint to export to")
    key = None
    ref = model.hash_key
    if ref is not None:
        key = _resolve(ref, "audit.hash_key", material.aes_key, reader, problems)
    return AuditSettings(
        directory=None if model.directory is None else reader.path(model.directory),
        otlp_endpoint=endpoint,
        hash_key=key,
        flush_interval=timedelta(seconds=model.flush_interval_s),
        fsync=model.fsync,
    )
