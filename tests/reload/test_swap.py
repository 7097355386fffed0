"""The reload's swap, in one process: files on disk, the real loader, the engine and the scheduler.

The token source is the hand-written one of the engine's tests: the point here is what the swap keeps,
drops and warms, not HelseID (the replica test covers the whole path).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from broker.config import BrokerConfig, load_config, parse_tenant
from broker.errors import ConfigurationError, NotFoundError
from broker.model import Tenant
from broker.reload import Reloader, fingerprint, with_sources
from broker.telemetry import Metrics
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import RouteTable
from broker.tokens.scheduler import RefreshScheduler
from tests.unit.config.test_config import ENV, VALID, write
from tests.unit.tokens.test_engine import Clock, CountingSource

BERGEN = """
client = "supplier"
orgnr_parent = "923456789"
targets = ["sfm"]
"""


class Reloads(Metrics):
    """The real instruments, and the outcomes counted (an in-memory reader would need the SDK set up)."""

    def __init__(self) -> None:
        super().__init__()
        self.outcomes: list[str] = []

    def config_reload(self, outcome: str) -> None:
        super().config_reload(outcome)
        self.outcomes.append(outcome)


def setup(tmp_path: Path) -> tuple[Path, Reloader, TokenEngine, RefreshScheduler, Reloads]:
    (tmp_path / "tenants.d").mkdir()
    (tmp_path / "tenants.d" / "bergen.toml").write_text(BERGEN)
    path = write(tmp_path, 'tenants_directory = "tenants.d"\n' + VALID)
    config = load_config(path, ENV)
    clock = Clock()
    engine = TokenEngine(RouteTable(config.clients, config.targets, config.tenants), CountingSource(clock))
    engine.clock = clock
    scheduler = RefreshScheduler(engine, clock=clock)
    metrics = Reloads()
    reloader = Reloader(
        path,
        config,
        engine,
        scheduler,
        metrics=metrics,
        read=lambda p: load_config(p, ENV),
        poll_interval_s=0.05,
    )
    return path, reloader, engine, scheduler, metrics


async def test_a_new_tenant_is_served_and_a_removed_one_is_dropped(tmp_path: Path) -> None:
    path, reloader, engine, _, metrics = setup(tmp_path)
    routes = engine.routes
    await engine.get_token("bergen", "sfm")
    await engine.get_token("oslo", "sfm")
    bergen_key = routes.resolve("bergen", "sfm").cache_key
    oslo = routes.resolve("oslo", "sfm")
    directory = tmp_path / "tenants.d"
    (directory / "molde.toml").write_text(BERGEN.replace("923456789", "934567890") + 'warm = ["sfm"]\n')
    (directory / "bergen.toml").unlink()

    applied = await reloader.reload("test")

    print(f"applied: {applied}")
    assert applied is not None
    assert applied.added_tenants == ("molde",)
    assert applied.removed_tenants == ("bergen",)
    assert applied.tokens_dropped == 1
    assert applied.warming == 1  # molde's warm target, scheduled at once
    assert applied.needs_restart == ()
    assert engine.routes is routes  # the same table, holding the new routes
    assert routes.by_key(bergen_key) is None
    with pytest.raises(NotFoundError) as caught:
        routes.resolve("bergen", "sfm")
    assert caught.value.reason.name == "TENANT_NOT_FOUND"
    # An unchanged route keeps its key, and so its token.
    assert routes.resolve("oslo", "sfm").cache_key == oslo.cache_key
    assert engine.cached(oslo) is not None
    assert (await engine.get_token("molde", "sfm")).value.startswith("token-")
    assert metrics.outcomes == ["applied"]
    assert reloader.config.tenants.keys() == {"oslo", "molde"}
    assert path.exists()


async def test_a_changed_tenant_gets_a_new_key_and_its_old_token_leaves_memory(tmp_path: Path) -> None:
    _, reloader, engine, _, _ = setup(tmp_path)
    before = engine.routes.resolve("bergen", "sfm")
    await engine.get_token("bergen", "sfm")
    (tmp_path / "tenants.d" / "bergen.toml").write_text(BERGEN.replace("923456789", "945678901"))

    applied = await reloader.reload("test")

    after = engine.routes.resolve("bergen", "sfm")
    assert applied is not None
    assert (applied.routes_added, applied.routes_removed, applied.tokens_dropped) == (1, 1, 1)
    assert after.cache_key != before.cache_key
    assert after.tenant.orgnr_parent == "945678901"
    assert engine.cached(before) is None


async def test_a_broken_file_keeps_the_running_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, reloader, engine, _, metrics = setup(tmp_path)
    running = reloader.config
    table = engine.routes.routes()
    (tmp_path / "tenants.d" / "bergen.toml").write_text(BERGEN.replace('"923456789"', '"9234"'))

    with caplog.at_level(logging.ERROR, logger="broker.reload"):
        applied = await reloader.reload("test")

    print(f"log: {caplog.messages}")
    assert applied is None
    assert reloader.config is running
    assert engine.routes.routes() == table
    assert metrics.outcomes == ["invalid"]
    assert "tenants.d/bergen.toml: orgnr_parent" in caplog.text
    assert "9234" not in caplog.text  # the field, never the value


async def test_settings_fixed_at_start_stay_and_say_they_need_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, reloader, _, _, _ = setup(tmp_path)
    path.write_text(path.read_text().replace("[store]", "[server]\nworkers = 2\n\n[store]"))

    with caplog.at_level(logging.WARNING, logger="broker.reload"):
        applied = await reloader.reload("test")

    assert applied is not None
    assert applied.needs_restart == ("server",)
    assert reloader.config.server.workers == 1
    assert "server take effect only after a restart" in caplog.text


async def test_the_watcher_reloads_a_change_on_disk_and_sighup(tmp_path: Path) -> None:
    path, reloader, _, _, metrics = setup(tmp_path)
    before = fingerprint(path, tmp_path / "tenants.d")
    watching = asyncio.get_running_loop().create_task(reloader.run())
    try:
        await asyncio.sleep(0.1)
        (tmp_path / "tenants.d" / "molde.toml").write_text(BERGEN)
        await _until(lambda: "molde" in reloader.config.tenants)
        reloader.ask()
        await _until(lambda: len(metrics.outcomes) == 2)
    finally:
        watching.cancel()
    print(f"reloads: {metrics.outcomes}")
    assert fingerprint(path, tmp_path / "tenants.d") != before
    assert metrics.outcomes == ["applied", "applied"]


async def _until(condition: object, within_s: float = 3) -> None:
    assert callable(condition)
    for _ in range(int(within_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("not within the time")


async def test_a_watch_of_a_removed_tenant_ends_with_tenant_not_found(tmp_path: Path) -> None:
    _, reloader, engine, _, _ = setup(tmp_path)
    stream = engine.watch(engine.routes.resolve("bergen", "sfm"))
    await anext(stream)
    waiting = asyncio.get_running_loop().create_task(anext(stream))
    await asyncio.sleep(0.01)
    (tmp_path / "tenants.d" / "bergen.toml").unlink()

    await reloader.reload("test")

    with pytest.raises(NotFoundError) as caught:
        await asyncio.wait_for(waiting, 1)
    assert caught.value.reason.name == "TENANT_NOT_FOUND"


async def test_a_watch_of_a_changed_tenant_ends_so_the_caller_watches_its_new_key(tmp_path: Path) -> None:
    _, reloader, engine, _, _ = setup(tmp_path)
    stream = engine.watch(engine.routes.resolve("bergen", "sfm"))
    await anext(stream)
    waiting = asyncio.get_running_loop().create_task(anext(stream))
    await asyncio.sleep(0.01)
    (tmp_path / "tenants.d" / "bergen.toml").write_text(BERGEN.replace("923456789", "945678901"))

    await reloader.reload("test")

    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)


class StoredTenants:
    """A named source of tenants beside the files (the shape the store's tenants will plug in as)."""

    name = "the store"

    def __init__(self, tables: dict[str, dict[str, object]]) -> None:
        self.tables = tables

    def tenants(self, config: BrokerConfig) -> dict[str, Tenant]:
        return {name: parse_tenant(name, table, config) for name, table in self.tables.items()}


async def test_tenants_of_another_source_are_merged_and_the_files_win_a_name_in_both(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, reloader, engine, scheduler, metrics = setup(tmp_path)
    stored = StoredTenants(
        {"tromso": {"client": "supplier", "orgnr_parent": "956789012", "targets": ["sfm"]}}
    )
    with_store = Reloader(
        path,
        reloader.config,
        engine,
        scheduler,
        metrics=metrics,
        read=lambda p: load_config(p, ENV),
        sources=[stored],
    )

    assert await with_store.reload("test") is not None
    assert engine.routes.resolve("tromso", "sfm").tenant.orgnr_parent == "956789012"

    # bergen is in the files: the store's bergen is shadowed (and a warning names both places).
    stored.tables["bergen"] = {"client": "supplier", "orgnr_parent": "967890123", "targets": ["sfm"]}
    assert await with_store.reload("test") is not None
    assert engine.routes.resolve("bergen", "sfm").tenant.orgnr_parent == "923456789"
    assert "tenant 'bergen' is defined in the configuration files and in the store" in caplog.text
    assert with_store.file_tenants == frozenset(load_config(path, ENV).tenants)
    assert metrics.outcomes == ["applied", "applied"]

    # An invalid stored tenant refuses the reload, naming it; the running tenants stay.
    stored.tables["tromso"] = {"client": "nobody", "orgnr_parent": "956789012", "targets": ["sfm"]}
    assert await with_store.reload("test") is None
    assert engine.routes.resolve("tromso", "sfm").tenant.client == "supplier"
    with pytest.raises(ConfigurationError) as caught:
        with_sources(load_config(path, ENV), [stored])
    assert caught.value.problems == (("tenants.tromso.client", "no client named 'nobody' in [clients]"),)
