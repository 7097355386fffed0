"""WatchToken fan-out: each key's tokens are followed once, built into one message, and pushed to every
stream of the key a batch at a time.

With thousands of streams on a key, one stream per watcher of the engine made a renewal cost once per
stream what is the same for all of them (a wait on the key's event, the message built, the key kept in the
refresh scheduler), and woke every stream in the same turn of the event loop: no unary call was answered
until the whole fan-out was done. Here:

- one follower task per key, started by its first stream and cancelled with its last, iterates
  `engine.watch` and builds the message once per token; every stream of the key sends that same object;
- the key is kept in the refresh scheduler once, for as long as it has streams;
- a new token wakes the key's streams `batch` at a time, yielding to the event loop between batches, so
  calls that arrive meanwhile are served between two batches rather than after the whole fan-out;
- at most `max_streams` streams are open in the process; one more is refused at once with
  RESOURCE_EXHAUSTED (reason RATE_LIMITED, a RetryInfo) and a log line, instead of piling up.

A key's state exists only while it has streams: when its last stream ends, nothing of it is left.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Generic, TypeVar

from broker.api.heap import HeapTrim
from broker.errors import RateLimitedError
from broker.model import AccessToken
from broker.telemetry import SOURCE_MEMORY
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import Route
from broker.tokens.scheduler import RefreshScheduler

M = TypeVar("M")

_log = logging.getLogger(__name__)
_RPC = "WatchToken"
DEFAULT_MAX_STREAMS = 10_000  # per process: a stream holds about 7-27 KB (bench/README.md, fan-out)
# Streams woken per turn of the event loop. The fan-out's CPU is about the same for any batch size; a smaller
# batch makes the turns shorter, and a unary call waits for a few of them. With 3,333 streams in one process,
# the loop's longest turns during a push (p99 of a 1 ms timer's lateness) were 300-430 ms woken all at once,
# 11-40 ms in batches of 32 and 4-14 ms in batches of 8, for the same 160-290 ms of push (bench/README.md).
DEFAULT_BATCH = 8
RETRY_AFTER = timedelta(seconds=1)
_REFUSALS_LOGGED_EVERY_S = 10.0


class _Key(Generic[M]):
    """One key's streams, its follower, and the latest token with its one message."""

    __slots__ = ("ended", "failure", "follower", "message", "route", "streams", "token", "waiters")

    def __init__(self, route: Route) -> None:
        self.route = route
        self.streams = 0
        self.token: AccessToken | None = None
        self.message: M | None = None
        # The streams waiting for the next token, in the order they began to wait (a dict is an ordered set:
        # a stream that leaves takes its waiter out at once).
        self.waiters: dict[asyncio.Future[None], None] = {}
        self.follower: asyncio.Task[None] | None = None
        self.failure: Exception | None = None  # why the key's watch failed; each stream answers with it
        self.ended = False  # the engine's watch ended (a reload changed the key): every stream ends


class WatchHub(Generic[M]):
    """The streams of every watched key in this process; `watch` is one stream."""

    def __init__(
        self,
        engine: TokenEngine,
        build: Callable[[AccessToken], M],
        *,
        scheduler: RefreshScheduler | None = None,
        max_streams: int = DEFAULT_MAX_STREAMS,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        if max_streams < 1 or batch < 1:
            raise ValueError("max_streams and batch must be 1 or more")
        self._engine = engine
        self._build = build
        self._scheduler = scheduler
        self._max_streams = max_streams
        self._batch = batch
        self._keys: dict[str, _Key[M]] = {}
        self.open = 0  # streams open in this process
        self.refused = 0  # streams refused at the limit, since the start
        self._unlogged_refusals = 0
        self._refusal_log: asyncio.TimerHandle | None = None
        self.heap = HeapTrim()  # gives back what closed streams freed

    @property
    def keys(self) -> int:
        """Keys with at least one stream (each has one follower task and one scheduler keep)."""
        return len(self._keys)

    def waiting(self) -> int:
        """Streams waiting for their key's next token."""
        return sum(len(key.waiters) for key in self._keys.values())

    async def watch(self, route: Route) -> AsyncIterator[tuple[AccessToken, M]]:
        """The route's current token, then each new one, with the message to send; until the caller stops."""
        key = self._join(route)
        try:
            # This stream's own first token, as a call would get it: a fetch when there is none (shared with
            # the key's follower), or the error a refused fetch has, for this stream alone.
            sent = await self._engine.token_for(route, rpc=_RPC)
            current = key.token
            if current is None:
                # The key's first stream here: its message is the key's until the follower has a newer token
                # (no stream waits for this one: each stream sends its first token itself).
                key.token, key.message = sent, self._build(sent)
                current = sent
            if current.value == sent.value:
                yield sent, key.message  # type: ignore[misc]  # set with the token
            else:
                yield sent, self._build(sent)  # newer than the follower has seen yet: rare, this stream's own
            while True:
                current = key.token
                if (
                    current is not None
                    and current.value != sent.value
                    and current.expires_at >= sent.expires_at
                ):
                    sent = current
                    self._engine.metrics.served(_RPC, SOURCE_MEMORY)
                    yield current, key.message  # type: ignore[misc]  # set with the token
                    continue
                if key.failure is not None:
                    # One exception for every stream of the key; its traceback is this stream's alone.
                    raise key.failure.with_traceback(None)
                if key.ended:
                    return  # the caller watches again, and gets the key's new route
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                key.waiters[waiter] = None
                try:
                    await waiter
                finally:
                    key.waiters.pop(waiter, None)
        finally:
            self._leave(key)

    def _join(self, route: Route) -> _Key[M]:
        if self.open >= self._max_streams:
            self._refuse()
            raise RateLimitedError(
                f"this broker process holds its most WatchToken streams ({self._max_streams}); retry in "
                f"{RETRY_AFTER.total_seconds():g} s, or on another replica",
                retry_after=RETRY_AFTER,
                maxStreams=str(self._max_streams),
            )
        key = self._keys.get(route.cache_key)
        if key is None:
            key = self._keys[route.cache_key] = _Key(route)
            if self._scheduler is not None:
                self._scheduler.keep(route)  # once per key, however many streams it has
            key.follower = asyncio.get_running_loop().create_task(self._follow(key))
        key.streams += 1
        self.open += 1
        return key

    def _leave(self, key: _Key[M]) -> None:
        key.streams -= 1
        self.open -= 1
        self.heap.closed()
        if key.streams:
            return
        cache_key = key.route.cache_key
        if self._keys.get(cache_key) is key:
            del self._keys[cache_key]
        if key.follower is not None:
            key.follower.cancel()
            key.follower = None
        if self._scheduler is not None:
            self._scheduler.release(key.route)

    async def _follow(self, key: _Key[M]) -> None:
        """The key's one watcher of the engine: builds each new token's message once and wakes the streams."""
        try:
            async for token in self._engine.watch(key.route):
                if key.token is not None and key.token.value == token.value:
                    continue
                key.token, key.message = token, self._build(token)
                await self._wake(key)
            key.ended = True
        except Exception as exc:  # the streams answer with it (NOT_FOUND after a reload, an STS refusal, ...)
            key.failure = exc
        # Ended or failed: the next stream of this key starts a new follower; these streams answer now.
        if self._keys.get(key.route.cache_key) is key:
            del self._keys[key.route.cache_key]
        waiters, key.waiters = key.waiters, {}
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wake(self, key: _Key[M]) -> None:
        # The waiters of this token; a stream that comes to wait meanwhile already has it.
        waiters, key.waiters = key.waiters, {}
        woken = 0
        for waiter in waiters:
            if waiter.done():
                continue  # its stream left
            waiter.set_result(None)
            woken += 1
            if woken % self._batch == 0:
                # The woken streams send in the next turn of the loop, with whatever else is ready by then
                # (unary calls, the store's answers); the next batch waits for that turn.
                await asyncio.sleep(0)

    def _refuse(self) -> None:
        self.refused += 1
        self._unlogged_refusals += 1
        if self._refusal_log is None:
            self._log_refusals()

    def _log_refusals(self) -> None:
        """One line for the first refusal, then one per interval with how many followed: a burst of refusals
        is told, not written once per stream."""
        if self._unlogged_refusals == 0:
            self._refusal_log = None
            return
        _log.warning(
            "refused %d WatchToken stream(s) with RESOURCE_EXHAUSTED: %d streams open, the most this process "
            "holds",
            self._unlogged_refusals,
            self.open,
        )
        self._unlogged_refusals = 0
        loop = asyncio.get_running_loop()
        self._refusal_log = loop.call_later(_REFUSALS_LOGGED_EVERY_S, self._log_refusals)
