"""The composition root: builds the engine from a configuration and runs the gRPC server until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from broker.api.server import create_server, mark_serving
from broker.config import BrokerConfig, load_config
from broker.idp.sts import StsClient
from broker.store.redis import RedisTokenStore
from broker.tokens.engine import TokenEngine
from broker.tokens.ports import TokenStore
from broker.tokens.routes import RouteTable

_log = logging.getLogger(__name__)


def clock() -> datetime:
    return datetime.now(UTC)


def build_engine(config: BrokerConfig) -> TokenEngine:
    timeout = httpx.Timeout(
        config.sts.request_timeout.total_seconds(), connect=config.sts.connect_timeout.total_seconds()
    )
    http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
    store: TokenStore | None = None
    if config.store.kind == "redis":
        assert config.store.url is not None
        assert config.store.encryption_key is not None
        store = RedisTokenStore.from_url(config.store.url, config.store.encryption_key)
    routes = RouteTable(config.clients, config.targets, config.tenants)
    return TokenEngine(
        routes, StsClient(http, clock), store, expiry_skew=config.cache.expiry_skew, clock=clock
    )


async def serve(
    config: BrokerConfig,
    *,
    listen: str | None = None,
    reuse_port: bool = False,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serves until `stop` is set or SIGINT/SIGTERM arrives, then drains in-flight calls."""
    engine = build_engine(config)
    server, port, health = create_server(engine, listen or config.server.listen, reuse_port=reuse_port)
    stop = stop or _stop_on_signals()
    await server.start()
    await mark_serving(health)
    if on_ready is not None:
        on_ready(port)
    try:
        await stop.wait()
    finally:
        await health.enter_graceful_shutdown()
        await server.stop(grace=5)
        await engine.close()


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
        context.Process(target=_worker, args=(str(config_path), listen), name=f"broker-worker-{index}")
        for index in range(config.server.workers)
    ]
    for process in processes:
        process.start()
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


def _worker(config_path: str, listen: str) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(processName)s %(levelname)s %(name)s %(message)s"
    )
    config = load_config(Path(config_path))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, listen=listen, reuse_port=True))
