"""WatchToken fan-out: each key's tokens are followed once, built into one message, and pushed to every
stream of the key a batch at a time.

With thousands of streams on a key, one stream per watcher of the engine made a renewal cost once per
stream what is the same for all of them (a wait on the key's event, the message built, the key kept in the
refresh scheduler), and woke every stream in the same turn of the event loop: no unary call was answered
until the whole fan-out was done. Here:

- one follower task per key, started by its first stream and cancelled with its last, iterates
  `engine.watch` and builds the message once per token; every stream of the key sends that same object;
- the key is kept in the refresh scheduler once, for as long as it has streams;
- a new token wakes the key's streams `batch` at a time, yielding to the event loop between batches, and
  never more than `window` woken streams (over all keys) whose message is not written yet: gRPC core queues
  whatever it is asked to write, and a unary call's work queues behind it. So calls that arrive meanwhile
  are served while the push goes on, not after it;
- at most `max_streams` streams are open in the process; one more is refused at once with
  RESOURCE_EXHAUSTED (reason TOO_MANY_STREAMS, a RetryInfo) and a log line, instead of piling up.

A key's state exists only while it has streams: when its last stream ends, nothing of it is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Generic, TypeVar

from broker.api.heap import HeapTrim
from broker.errors import TooManyStreamsError
from broker.model import AccessToken
from broker.telemetry import SOURCE_MEMORY
from broker.tokens.engine import TokenEngine
from broker.tokens.routes import Route
from broker.tokens.scheduler import RefreshScheduler

M = TypeVar("M")

_log = logging.getLogger(__name__)
_RPC = "WatchToken"
DEFAULT_MAX_STREAMS = 10_000  # per process; an open stream holds 24-29 KiB of RSS (bench.fanout)
# Streams woken per turn of the event loop. The fan-out's CPU is about the same for any batch size; a smaller
# batch makes the turns shorter. Measured once, with one server process holding 3,333 streams (a replica's
# share of bench.fanout's 10,000), watchers in two other processes and a 1 ms timer in the server's loop:
# during a push the timer was late by up to 300-430 ms (p99) with every stream woken at once, 11-40 ms with
# batches of 32 and 4-14 ms with batches of 8, for about the same 160-290 ms of push.
DEFAULT_BATCH = 8
# Sends of woken streams not yet written, at most, over all keys of the process: the next stream is woken when
# one is written. gRPC core queues whatever it is asked to write, and a unary call's work waits behind the
# queue: with the whole push started at once, GetToken took 105-190 ms (p50) while 3,333 streams were pushed;
# with 8 in flight 3-4 ms (p99 9-20 ms), the push itself 270-540 ms instead of 190-250 ms (measured as above).
DEFAULT_WINDOW = 8
DEFAULT_STALLED_S = 0.1  # a woken stream's write not done by then no longer holds up the others
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
        self.waiters: dict[asyncio.Future[bool], None] = {}
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
        window: int = DEFAULT_WINDOW,
        stalled_s: float = DEFAULT_STALLED_S,
    ) -> None:
        if max_streams < 1 or batch < 1 or window < 1:
            raise ValueError("max_streams, batch and window must be 1 or more")
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
        self._window = window
        self._stalled_s = stalled_s
        # Woken waiters whose stream's message is not written yet (over every key), with when they were woken.
        self._in_flight: dict[asyncio.Future[bool], float] = {}
        self._room = asyncio.Event()

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
            yield sent, self._first_message(key, sent)
            woken_by: asyncio.Future[bool] | None = None  # the fan-out's wake: a send counted in flight
            while True:
                current = key.token
                if (
                    current is not None
                    and current.value != sent.value
                    and current.expires_at >= sent.expires_at
                ):
                    sent = current
                    # Counted per stream, as each stream's own watch counted it (the follower's watch of the
                    # engine counts one more per token and key).
                    self._engine.metrics.served(_RPC, SOURCE_MEMORY)
                    try:
                        yield current, key.message  # type: ignore[misc]  # set with the token
                    finally:
                        # gRPC asks for the next message once this one is written (or the stream ends).
                        if woken_by is not None:
                            self._landed(woken_by)
                            woken_by = None
                    continue
                if woken_by is not None:
                    self._landed(woken_by)  # woken, but with nothing to send
                    woken_by = None
                if key.failure is not None:
                    # One exception for every stream of the key; its traceback is this stream's alone.
                    raise key.failure.with_traceback(None)
                if key.ended:
                    return  # the caller watches again, and gets the key's new route
                waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
                key.waiters[waiter] = None
                try:
                    paced = await waiter
                except BaseException:
                    self._landed(waiter)  # perhaps woken and counted, but leaving before it could send
                    raise
                finally:
                    key.waiters.pop(waiter, None)
                woken_by = waiter if paced else None
        finally:
            self._leave(key)

    def _first_message(self, key: _Key[M], token: AccessToken) -> M:
        current = key.token
        if current is None:
            # The key's first stream here: its message is the key's until the follower has a newer token (no
            # stream waits for this one: each stream sends its first token itself).
            key.token, key.message = token, self._build(token)
            return key.message
        if current.value == token.value:
            return key.message  # type: ignore[return-value]  # set with the token
        return self._build(token)  # newer than the follower has seen yet: rare, this stream's own

    def _join(self, route: Route) -> _Key[M]:
        if self.open >= self._max_streams:
            self._refuse()
            raise TooManyStreamsError(
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
                waiter.set_result(False)  # not a send: the stream answers with the failure, or ends

    async def _wake(self, key: _Key[M]) -> None:
        # The waiters of this token; a stream that comes to wait meanwhile already has it.
        waiters, key.waiters = key.waiters, {}
        woken = 0
        loop = asyncio.get_running_loop()
        for waiter in waiters:
            if waiter.done():
                continue  # its stream left
            await self._room_for_one()
            if waiter.done():
                continue
            self._in_flight[waiter] = loop.time()
            waiter.set_result(True)
            woken += 1
            if woken % self._batch == 0:
                # The woken streams send in the next turn of the loop, with whatever else is ready by then
                # (unary calls, the store's answers); the next batch waits for that turn.
                await asyncio.sleep(0)

    async def _room_for_one(self) -> None:
        """Until fewer than `window` woken streams' messages wait to be written. A write still waiting after
        `stalled_s` waits for its reader (gRPC's flow control), not for the machine: it stops counting."""
        loop = asyncio.get_running_loop()
        while len(self._in_flight) >= self._window:
            oldest, since = next(iter(self._in_flight.items()))
            left = since + self._stalled_s - loop.time()
            if left <= 0:
                del self._in_flight[oldest]
                continue
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), left)

    def _landed(self, waiter: asyncio.Future[bool]) -> None:
        """The stream `waiter` woke has written its message, or will send none: room for one more."""
        if self._in_flight.pop(waiter, None) is not None and len(self._in_flight) < self._window:
            self._room.set()

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
