"""The broker's own CPU cost per cache hit, in-process and without gRPC (`python -m bench --hit-path`).

The throughput rows measure the whole machine, gRPC and the load generator included, and swing with whatever
else the shared machine runs. This section times only the servicer's handlers (and the DPoP proof inside
AuthorizeRequest) in a loop in one process, against the same configuration and the token the rows used: a
steady figure for "where does the hit path's time go" that a change to the broker moves visibly.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import multiprocessing
import pstats
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from broker import audit
from broker.api.policy import CallerPolicy
from broker.api.rpc import Guard, Unary
from broker.api.server import SERVICE
from broker.api.servicer import TokenBrokerServicer
from broker.app import build_broker
from broker.config import load_config
from broker.protocol import rfc9449
from broker.v1 import token_broker_service_pb2 as pb

_CALLS = 3000


@dataclass(frozen=True)
class HitPath:
    """Microseconds per call, best of a few loops (the least disturbed by other processes)."""

    timings_us: dict[str, float]
    profile: str  # the top of a cProfile of AuthorizeRequest hits, or ""

    def lines(self) -> list[str]:
        width = max(len(name) for name in self.timings_us)
        return [f"  {name.ljust(width)}  {value:8.1f} us" for name, value in self.timings_us.items()]


class _BenchContext:
    """What the guard asks of a gRPC context on the success path: no deadline, no credential."""

    def time_remaining(self) -> float | None:
        return None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


async def _per_call_async(call: Callable[[], Awaitable[Any]], calls: int = _CALLS, loops: int = 3) -> float:
    best = float("inf")
    for _ in range(loops):
        started = time.perf_counter()
        for _ in range(calls):
            await call()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


def _per_call(call: Callable[[], Any], calls: int = _CALLS, loops: int = 3) -> float:
    best = float("inf")
    for _ in range(loops):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls * 1e6)
    return best


async def _measure(
    connection: Connection,
    config_path: Path,
    environ: dict[str, str],
    *,
    tenant: str,
    target: str,
    url: str,
    profile: bool,
) -> None:
    """Sends a HitPath (or the error's text) before shutting the engine down."""
    config = load_config(config_path, environ=environ)
    broker = build_broker(config)
    # With the audit trail the configuration names (files), as the server runs the handlers.
    trail = audit.open_trail(config.audit, instance="hitpath")
    try:
        # The handlers as the server runs them: through the guard (identity, limits, grants, audit).
        handlers = TokenBrokerServicer(broker.engine, broker.scheduler).handlers()
        guard = Guard(CallerPolicy({}), broker.engine.metrics, audit=trail)

        def guarded(name: str) -> Callable[[Any, Any], Awaitable[Any]]:
            return guard.unary(SERVICE.methods_by_name[name], cast("Unary[Any, Any]", handlers[name]))

        get_info, get_token_rpc, authorize_rpc = (
            guarded(name) for name in ("GetBrokerInfo", "GetToken", "AuthorizeRequest")
        )
        context = _BenchContext()
        info = pb.GetBrokerInfoRequest()
        get_token = pb.GetTokenRequest(tenant=tenant, target=target)
        authorize = pb.AuthorizeRequestRequest(tenant=tenant, target=target, http_method="GET", url=url)
        token = await broker.engine.get_token(tenant, target)  # from Redis or the STS: the rows cached it
        key = broker.engine.routes.resolve(tenant, target).client.dpop_key
        signing_input = b"x" * 400  # about the size of a proof's header and claims

        def proof() -> str:
            return rfc9449.build_dpop_proof(
                key,
                htm="GET",
                htu=url,
                now=datetime.now(UTC),
                jti=secrets.token_urlsafe(16),
                access_token=token.value,
            )

        timings = {
            "GetBrokerInfo handler": await _per_call_async(lambda: get_info(info, context)),
            "GetToken handler (hit)": await _per_call_async(lambda: get_token_rpc(get_token, context)),
            "AuthorizeRequest handler (hit)": await _per_call_async(
                lambda: authorize_rpc(authorize, context)
            ),
            "  of which engine.get_token": await _per_call_async(
                lambda: broker.engine.get_token(tenant, target)
            ),
            "  of which build_dpop_proof": _per_call(proof),
            f"    of which the {key.alg} signature": _per_call(lambda: key.signer.sign(signing_input)),
        }
        text = ""
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(_CALLS):
                await authorize_rpc(authorize, context)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
            text = out.getvalue()
        connection.send(HitPath(timings, text))
    except Exception as exc:  # reported by the parent
        connection.send(f"{type(exc).__name__}: {exc}")
    finally:
        connection.close()
        # The figures are sent: a shutdown that hangs (a store listener that swallows its cancellation)
        # costs nothing but the parent's join timeout.
        await broker.engine.close()
        await broker.sts.close()
        trail.close()


def _child(
    connection: Connection, config_path: Path, environ: dict[str, str], options: dict[str, Any]
) -> None:
    asyncio.run(_measure(connection, config_path, environ, **options))


def measure(
    config_path: Path,
    environ: dict[str, str],
    *,
    tenant: str,
    target: str,
    url: str,
    profile: bool = False,
    timeout: float = 120.0,
) -> HitPath:
    """Runs in a process of its own, so that a broker that does not shut down cleanly cannot hang the bench
    (it is ended once it has answered, or after `timeout`)."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    options = {"tenant": tenant, "target": target, "url": url, "profile": profile}
    process = context.Process(
        target=_child, args=(child_end, config_path, environ, options), name="bench-hitpath"
    )
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(timeout):
            raise RuntimeError(f"the in-process timing did not finish within {timeout:.0f} s")
        result = parent_end.recv()
    finally:
        process.join(timeout=5)  # the broker's engine.close() may hang; the figures are in already
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
        parent_end.close()
    if not isinstance(result, HitPath):
        raise RuntimeError(f"the in-process timing failed: {result}")
    return result
