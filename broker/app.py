"""The composition root: builds the engine from a configuration and runs the gRPC server until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from broker import audit
from broker.administration import Administration
from broker.api.ratelimit import StsTrafficLimiter
from broker.api.server import ServerTls, create_server, mark_serving
from broker.api.servicer import UserServices
from broker.config import BrokerConfig, load_config
from broker.errors import BrokerError, ConfigurationError
from broker.idp.breaker import CircuitBreaker
from broker.idp.endpoints import UserEndpoints
from broker.idp.selvbetjening import SelvbetjeningClient
from broker.idp.sts import StsClient
from broker.idp.token_transport import TokenTransport
from broker.observability import configure_logging, configure_telemetry, process_instance_id
from broker.reload import Reloader
from broker.rotation import KeyRotator
from broker.sessions.exchange import TokenExchanger
from broker.sessions.login import LoginService
from broker.sessions.tokens import SessionTokens
from broker.store.client_keys import KeyRecords, MemoryKeyRecords, RedisKeyRecords
from broker.store.memory import MemorySessionStore
from broker.store.redis import RedisTokenStore
from broker.store.redis_sessions import RedisSessionStore
from broker.store.tenants import MemoryTenantRecords, RedisTenantRecords, TenantRecords
from broker.stored_tenants import StoredTenants
from broker.telemetry import Metrics
from broker.tokens.budget import RequestBudget
from broker.tokens.engine import TokenEngine
from broker.tokens.policy import FreshnessPolicy
from broker.tokens.routes import RouteTable
from broker.tokens.scheduler import RefreshScheduler

_log = logging.getLogger(__name__)


def clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Broker:
    """Everything one process runs: the engine, its STS client, its refresh scheduler, user sessions."""

    engine: TokenEngine
    sts: StsClient
    scheduler: RefreshScheduler
    users: UserServices
    session_store: RedisSessionStore | MemorySessionStore
    endpoints: UserEndpoints
    tenant_records: TenantRecords  # tenants written through the AdminService
    key_records: KeyRecords  # client keys made by rotation


def build_broker(config: BrokerConfig, metrics: Metrics | None = None) -> Broker:
    """Wires the parts together; call it inside the event loop that will run them."""
    metrics = metrics or Metrics()
    timeout = httpx.Timeout(
        config.sts.request_timeout.total_seconds(), connect=config.sts.connect_timeout.total_seconds()
    )
    store: RedisTokenStore | None = None
    if config.store.kind == "redis":
        assert config.store.encryption_key is not None
        store = RedisTokenStore.from_url(config.store.address, config.store.encryption_key)

    def breaker(issuer: str) -> CircuitBreaker:
        return CircuitBreaker(
            issuer,
            threshold=config.sts.breaker_threshold,
            cool_down=config.sts.breaker_cool_down,
            on_transition=metrics.breaker,
        )

    sts = StsClient(
        httpx.AsyncClient(timeout=timeout, follow_redirects=False),
        clock,
        shared_nonces=store,
        metrics=metrics,
        breaker_factory=breaker,
        token_transport=TokenTransport(
            connect_timeout_s=config.sts.connect_timeout.total_seconds(),
            request_timeout_s=config.sts.request_timeout.total_seconds(),
        ),
    )
    policy = FreshnessPolicy(
        refresh_fraction=config.cache.refresh_fraction,
        jitter_fraction=config.cache.jitter_fraction,
        expiry_skew=config.cache.expiry_skew,
    )
    engine = TokenEngine(
        RouteTable(config.clients, config.targets, config.tenants),
        sts,
        store,
        store,
        policy=policy,
        lease_ttl=config.cache.lease_ttl,
        clock=clock,
        metrics=metrics,
        budget=RequestBudget(config.cache.refresh_budget_per_s),
    )
    scheduler = RefreshScheduler(engine)
    session_store: RedisSessionStore | MemorySessionStore = MemorySessionStore()
    tenant_records: TenantRecords = MemoryTenantRecords()
    key_records: KeyRecords = MemoryKeyRecords()
    if config.store.kind == "redis":
        assert config.store.encryption_key is not None
        address = config.store.address
        session_store = RedisSessionStore.from_url(address, config.store.encryption_key)
        tenant_records = RedisTenantRecords.from_url(address, config.store.encryption_key)
        key_records = RedisKeyRecords.from_url(address, config.store.encryption_key)
    endpoints = UserEndpoints(sts.http, sts.discovery, clock)
    users = UserServices(
        login=LoginService(engine.routes, endpoints, sts, session_store, clock),
        tokens=SessionTokens(
            engine.routes,
            sts,
            endpoints,
            session_store,
            clock,
            policy=policy,
            lease_ttl=config.cache.lease_ttl,
        ),
        exchanger=TokenExchanger(engine.routes, sts, clock, store, policy=policy),
    )
    return Broker(engine, sts, scheduler, users, session_store, endpoints, tenant_records, key_records)


async def serve(
    config: BrokerConfig,
    *,
    listen: str | None = None,
    reuse_port: bool = False,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    worker: int = 0,
    config_path: Path | None = None,
    own_process: bool = False,
) -> None:
    """Serves until `stop` is set or SIGINT/SIGTERM arrives, then drains in-flight calls. With the
    configuration's path, SIGHUP and changes of its files reload it (`broker/reload.py`). `own_process`: the
    process is the broker's alone (the command line, a worker), so its start-up may tune the collector."""
    telemetry = configure_telemetry(config.telemetry, service_instance=process_instance_id(), worker=worker)
    check_exposure(config, listen or config.server.listen)
    trail = _open_audit(config)
    try:
        await _serve_with(
            config,
            trail,
            listen=listen,
            reuse_port=reuse_port,
            on_ready=on_ready,
            stop=stop,
            config_path=config_path,
            own_process=own_process,
        )
    finally:
        # Also when the start is interrupted (a stop during a worker's start): what is queued is written.
        audit.configure(None)
        trail.close()  # after the engine, which records until it stops
        telemetry.shutdown()


async def _serve_with(
    config: BrokerConfig,
    trail: audit.AuditTrail,
    *,
    listen: str | None,
    reuse_port: bool,
    on_ready: Callable[[int], None] | None,
    stop: asyncio.Event | None,
    config_path: Path | None = None,
    own_process: bool = False,
) -> None:
    broker = build_broker(config)
    stored = StoredTenants(broker.tenant_records)
    reloader = Reloader(
        config_path,
        config,
        broker.engine,
        broker.scheduler,
        metrics=broker.engine.metrics,
        sources=[stored],
    )
    await _load_stored_tenants(stored, reloader)
    rotator = KeyRotator(
        reloader,
        broker.key_records,
        broker.sts,
        SelvbetjeningClient(broker.sts.http, clock),
        metrics=broker.engine.metrics,
        clock=clock,
    )
    rotating = any(client.rotation is not None for client in config.clients.values())
    if rotating:
        await rotator.start()  # the rotated keys sign from the first call on
    server, port, health = create_server(
        broker.engine,
        listen or config.server.listen,
        reuse_port=reuse_port,
        scheduler=broker.scheduler,
        users=broker.users,
        trace_rpcs=config.telemetry.traces_rpcs,
        callers=config.callers,
        tls=_tls(config),
        audit=trail,
        service_accounts=config.server.service_account_tokens,
        limiter=StsTrafficLimiter.from_config(config),
        administration=Administration(reloader, stored, workers=config.server.workers, rotator=rotator),
        max_watch_streams=config.server.max_watch_streams,
    )
    stop = stop or _stop_on_signals()
    warm = broker.engine.routes.warm()
    broker.scheduler.start_warm(warm, config.cache.refresh_budget_per_s)
    loop = asyncio.get_running_loop()
    background = [loop.create_task(broker.scheduler.run()), loop.create_task(stored.run(reloader))]
    if rotating:
        background.append(loop.create_task(rotator.run()))
    if config_path is not None:
        reloader.listen_for_sighup()
        background.append(loop.create_task(reloader.run()))
    if own_process:
        # What start-up built (modules, configuration, routes: a lot with many tenants) lives as long as the
        # process. Frozen, it is out of the collector's walks, so a full collection costs what serving
        # allocated: with thousands of WatchToken streams open, full collections stalled a replica for up
        # to 1.5 s.
        gc.collect()
        gc.freeze()
    try:
        await server.start()
        await mark_serving(health)
        if on_ready is not None:
            on_ready(port)
        await stop.wait()
    finally:
        await health.enter_graceful_shutdown()
        await server.stop(grace=5)
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await broker.engine.close()
        await broker.session_store.close()
        await broker.tenant_records.close()
        await broker.key_records.close()
        await broker.endpoints.close()  # an in-flight JWKS fetch others shared
        await broker.sts.close()


async def _load_stored_tenants(stored: StoredTenants, reloader: Reloader) -> None:
    """Serves the stored tenants from the start; with the store away, the files' tenants are served and
    the stored ones follow as soon as it answers (`StoredTenants.run` retries)."""
    try:
        await stored.load()
    except BrokerError as exc:
        _log.warning("stored tenants could not be read at start (%s); retrying in the background", exc.reason)
        return
    if stored.names():
        await reloader.reload("the shared store's tenants at start", reread_files=False)


def _open_audit(config: BrokerConfig) -> audit.AuditTrail:
    """This process's audit trail, made the one the engine and sessions record to."""
    try:
        trail = audit.open_trail(config.audit, instance=process_instance_id())
    except OSError as exc:
        raise ConfigurationError("audit.directory", f"cannot write the audit trail ({exc.strerror})") from exc
    audit.configure(trail)
    return trail


def _tls(config: BrokerConfig) -> ServerTls | None:
    server = config.server
    if server.tls_certificate is None or server.tls_private_key is None:
        return None
    return ServerTls(server.tls_certificate, server.tls_private_key, server.tls_client_ca)


def check_exposure(config: BrokerConfig, listen: str) -> None:
    """Default deny: a broker without caller credentials serves only on a loopback address."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if not config.callers and host not in {"127.0.0.1", "localhost", "::1"}:
        raise ConfigurationError(
            "callers",
            f"none configured: without caller credentials the broker listens on loopback only, not {host}",
        )


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def run_workers(config_path: Path, config: BrokerConfig, listen: str) -> None:
    """Runs `workers` processes sharing the port (SO_REUSEPORT): a Python gRPC server uses one core."""
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(str(config_path), listen, index), name=f"broker-worker-{index}")
        for index in range(config.server.workers)
    ]
    for process in processes:
        process.start()

    def forward(signum: int, _: object) -> None:
        # The workers drain their calls on SIGTERM; a container's stop must reach them, not orphan them.
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)

    def forward_reload(signum: int, _: object) -> None:
        # Each worker holds its own configuration: a SIGHUP to the parent reloads them all.
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP)

    signal.signal(signal.SIGHUP, forward_reload)
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=10)


def _worker(config_path: str, listen: str, index: int) -> None:
    # A stop (the parent's SIGTERM) that comes while this worker still starts, before serve() has its
    # handler, interrupts it like Ctrl-C: serve() then still closes its audit trail and writes what is
    # queued, where the default SIGTERM would kill the process on the spot.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    # A reload asked for (SIGHUP, forwarded by the parent) before serve() listens for it must not end the
    # worker, as SIGHUP's default would; the configuration it loads next is read fresh anyway.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config = load_config(Path(config_path))
    configure_logging(config.telemetry, worker=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                config,
                listen=listen,
                reuse_port=True,
                worker=index,
                config_path=Path(config_path),
                own_process=True,
            )
        )
