"""Benchmark: ``python -m helseid_broker_client.bench`` (needs the ``[httpx]`` extra).

Reads the demo environment's variables (HELSEID_BROKER_ADDR, DEMO_API_URL, DEMO_TENANT, DEMO_TARGET) and
prints (a) a cached token through the local token source: calls/s and ns per call, (b) requests/s to the
demo API through BrokerAuth next to the same requests made by hand (one AuthorizeRequest per request on the
generated stub, the nonce kept by hand), and the wrapper's overhead per request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

from ._gen.broker.v1 import token_broker_service_pb2 as pb
from ._authorize import Authorization
from .connection import Broker
from .httpx_auth import BrokerAuth
from .token_source import SyncTokenSource, TokenSource

ROUNDS = 10


def _line(name: str, count: int, seconds: float) -> float:
    rate = count / seconds
    print(f"  {name:<46} {rate:>12,.0f} /s {seconds / count * 1e9:>14,.0f} ns each ({count:,} in {seconds:.3f} s)")
    return rate


async def _timed(
    count: int, call: Callable[[], Awaitable[object]], clock: Callable[[], float] = time.perf_counter
) -> float:
    start = clock()
    for _ in range(count):
        await call()
    return clock() - start


async def _cached_token(tenant: str, target: str, broker: Broker, count: int) -> None:
    print("(a) a cached token through the local token source (no RPC)")
    async with TokenSource(tenant, target, broker=broker) as source:
        await source.token()
        _line("await TokenSource.token()", count, await _timed(count, source.token))
    await broker.aclose()


def _cached_token_sync(tenant: str, target: str, broker: Broker, count: int) -> None:
    with SyncTokenSource(tenant, target, broker=broker) as source:
        source.token()
        start = time.perf_counter()
        for _ in range(count):
            source.token()
        _line("SyncTokenSource.token()", count, time.perf_counter() - start)


async def _http(tenant: str, target: str, broker: Broker, url: str, count: int) -> None:
    print(f"(b) GET {url} through the HTTP wrapper and by hand: {count} sequential requests each,")
    print(f"    in {ROUNDS} interleaved rounds; the median round's figures")
    auth = BrokerAuth(tenant, target, broker=broker)
    stub = broker.aio_stub()
    async with httpx.AsyncClient(auth=auth) as wrapped, httpx.AsyncClient() as plain:
        nonce = ""

        async def by_wrapper() -> None:
            (await wrapped.get(url)).raise_for_status()

        async def by_hand() -> None:
            nonlocal nonce
            answer = await stub.AuthorizeRequest(
                pb.AuthorizeRequestRequest(tenant=tenant, target=target, http_method="GET", url=url, dpop_nonce=nonce),
                metadata=broker.metadata,
            )
            headers = {"Authorization": answer.authorization}
            if answer.dpop:
                headers["DPoP"] = answer.dpop
            response = await plain.get(url, headers=headers)
            nonce = response.headers.get("DPoP-Nonce", nonce)
            if response.status_code != 401:  # only the warm-up's first request lacks the nonce
                response.raise_for_status()

        for _ in range(5):  # warm up: connections, the nonce of each
            await by_wrapper()
            await by_hand()
        # Interleaved rounds, so that a machine busy with something else slows both alike; the median round.
        per_round = max(1, count // ROUNDS)
        hand_times, wrapper_times = [], []
        for _ in range(ROUNDS):
            hand_times.append(await _timed(per_round, by_hand))
            wrapper_times.append(await _timed(per_round, by_wrapper))
        hand = _line("by hand: AuthorizeRequest on the stub + httpx", per_round, statistics.median(hand_times))
        wrapper = _line("httpx.AsyncClient(auth=BrokerAuth(...))", per_round, statistics.median(wrapper_times))
        print(f"  wrapper overhead: {(1 / wrapper - 1 / hand) * 1e6:,.0f} us per request (median of {ROUNDS} rounds)")


async def _wrapper_cpu(tenant: str, target: str, broker: Broker, url: str, count: int) -> None:
    """The wrapper's own work, without the network: a mock transport, and the same fixed answer in place of
    AuthorizeRequest for both ways."""
    print("(c) the wrapper's own work per request, no network (mock transport, a fixed AuthorizeRequest answer;")
    print("    CPU time of this thread, so that other load on the machine counts less)")
    fixed = Authorization("DPoP token", "proof", ())

    async def authorize(*_: object) -> Authorization:
        return fixed

    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers={"DPoP-Nonce": "n"}))
    auth = BrokerAuth(tenant, target, broker=broker)
    auth.authorizer.aauthorize = authorize  # type: ignore[method-assign]
    async with httpx.AsyncClient(auth=auth, transport=transport) as wrapped, httpx.AsyncClient(
        transport=transport
    ) as plain:

        async def by_hand() -> None:
            answer = await authorize()
            await plain.get(url, headers={"Authorization": answer.authorization, "DPoP": answer.dpop})

        async def by_wrapper() -> None:
            await wrapped.get(url)

        await by_hand()
        await by_wrapper()
        per_round = max(1, count // ROUNDS)
        hand_times, wrapper_times = [], []
        for _ in range(ROUNDS):
            hand_times.append(await _timed(per_round, by_hand, time.thread_time))
            wrapper_times.append(await _timed(per_round, by_wrapper, time.thread_time))
        hand = _line("by hand", per_round, min(hand_times))
        wrapper = _line("BrokerAuth", per_round, min(wrapper_times))
        print(f"  wrapper overhead: {(1 / wrapper - 1 / hand) * 1e6:,.1f} us CPU per request (best of {ROUNDS} rounds)")


def _http_sync(tenant: str, target: str, broker: Broker, url: str, count: int) -> None:
    auth = BrokerAuth(tenant, target, broker=broker)
    with httpx.Client(auth=auth) as sync_client:
        for _ in range(5):
            sync_client.get(url).raise_for_status()
        start = time.perf_counter()
        for _ in range(count):
            sync_client.get(url).raise_for_status()
        _line("httpx.Client(auth=BrokerAuth(...)) (sync)", count, time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helseid_broker_client.bench", description=__doc__)
    parser.add_argument("--tenant", default=os.environ.get("DEMO_TENANT", "demo"))
    parser.add_argument("--target", default=os.environ.get("DEMO_TARGET", "demo-api"))
    parser.add_argument("--url", default=os.environ.get("DEMO_API_URL"), help="default: $DEMO_API_URL")
    parser.add_argument("--token-calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    if not args.url:
        print("set DEMO_API_URL (the demo API under the broker's dev authority) or pass --url", file=sys.stderr)
        return 2
    broker = Broker()
    print(f"broker {broker.address}, tenant {args.tenant}, target {args.target}, Python {sys.version.split()[0]}")

    asyncio.run(_cached_token(args.tenant, args.target, broker, args.token_calls))
    _cached_token_sync(args.tenant, args.target, broker, args.token_calls)

    async def http() -> None:
        await _http(args.tenant, args.target, broker, args.url, args.requests)
        await _wrapper_cpu(args.tenant, args.target, broker, args.url, max(args.requests, 2000))
        await broker.aclose()

    asyncio.run(http())
    _http_sync(args.tenant, args.target, broker, args.url, args.requests)
    broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
