"""A local token cache fed by WatchToken: a cached token costs no RPC at all."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc

from ._gen.broker.v1 import token_broker_service_pb2 as pb
from .connection import Broker
from .errors import BrokerError

_TOKEN_TYPES = {pb.TOKEN_TYPE_BEARER: "Bearer", pb.TOKEN_TYPE_DPOP: "DPoP"}
# Codes after which the stream is tried again at once (the broker ended it: a reload, a shutdown).
_ENDED = (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED)


@dataclass(frozen=True, slots=True)
class Token:
    """An access token from the broker. ``expires_at`` is the STS's expiry in seconds since the epoch."""

    access_token: str
    token_type: str
    expires_at: float
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    dpop_jkt: str = ""

    def __repr__(self) -> str:  # the token itself stays out of logs
        return f"Token(token_type={self.token_type!r}, expires_at={self.expires_at}, audiences={self.audiences})"

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value (a DPoP token also needs a proof: use AuthorizeRequest)."""
        return f"{self.token_type} {self.access_token}"

    @classmethod
    def from_proto(cls, token: pb.AccessToken) -> Token:
        return cls(
            access_token=token.token,
            token_type=_TOKEN_TYPES.get(token.token_type, "Bearer"),
            expires_at=token.expire_time.seconds + token.expire_time.nanos / 1e9,
            scopes=tuple(token.scopes),
            audiences=tuple(token.audiences),
            dpop_jkt=token.dpop_jkt,
        )


class _Backoff:
    def __init__(self, first: float, limit: float) -> None:
        self.first, self.limit, self.next = first, limit, first

    def reset(self) -> None:
        self.next = self.first

    def delay(self, error: BrokerError | None) -> float:
        delay = max(self.next, (error.retry_delay or 0.0) if error else 0.0)
        self.next = min(self.next * 2, self.limit)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


class _Cache:
    """What both token sources share: the token, the rules for handing it out, and their counters."""

    def __init__(
        self, tenant: str, target: str, broker: Broker | None, skew: float, backoff: tuple[float, float]
    ) -> None:
        self.tenant, self.target = tenant, target
        self.broker = broker if broker is not None else Broker()
        self.skew = skew
        self._backoff = _Backoff(*backoff)
        self._token: Token | None = None
        self._stream_down = False
        self._closed = False
        #: Counters, for tests and curiosity: RPCs made and stream messages received.
        self.get_token_calls = 0
        self.watch_calls = 0
        self.watch_messages = 0
        #: The last error of the stream (None while it works).
        self.last_error: BrokerError | None = None

    def _valid(self) -> Token | None:
        token = self._token
        if token is not None and token.expires_at - self.skew > time.time():
            return token
        return None

    def _offer(self, token: Token) -> None:
        current = self._token
        if current is None or token.expires_at >= current.expires_at:
            self._token = token

    def _request(self) -> pb.WatchTokenRequest:
        return pb.WatchTokenRequest(tenant=self.tenant, target=self.target)

    def _get_request(self) -> pb.GetTokenRequest:
        return pb.GetTokenRequest(tenant=self.tenant, target=self.target)


class TokenSource(_Cache):
    """An asyncio token source for one (tenant, target): ``token = await source.token()``.

    The first call starts a WatchToken stream (in a task of the running loop); every renewal the broker
    pushes replaces the cached token, so a later call returns at once without an RPC. A token is never handed
    out later than its expiry minus ``skew`` seconds. While the stream is down the source reconnects with
    back-off (honouring the broker's RetryInfo) and answers from GetToken when the cache holds nothing
    valid; GetToken's failures reach the caller as BrokerError. Close it with ``await source.aclose()`` (or
    ``async with``).
    """

    def __init__(
        self,
        tenant: str,
        target: str,
        *,
        broker: Broker | None = None,
        skew: float = 5.0,
        first_token_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        timeout: float = 30.0,
    ) -> None:
        super().__init__(tenant, target, broker, skew, backoff)
        self._first_token_timeout = first_token_timeout
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self._changed: asyncio.Condition | None = None
        self._fetch_lock: asyncio.Lock | None = None

    async def token(self) -> Token:
        """The current token: from the cache when valid (no RPC), else from the stream or GetToken."""
        token = self._token
        if token is not None and token.expires_at - self.skew > time.time():
            return token
        return await self._slow_token()

    async def _slow_token(self) -> Token:
        if self._closed:
            raise RuntimeError("the token source is closed")
        self._start()
        assert self._changed is not None and self._fetch_lock is not None
        if not self._stream_down:
            changed = self._changed

            async def _wait() -> None:
                async with changed:
                    await changed.wait_for(lambda: self._valid() is not None or self._stream_down)

            try:
                await asyncio.wait_for(_wait(), self._first_token_timeout)
            except asyncio.TimeoutError:
                pass
        async with self._fetch_lock:
            token = self._valid()
            if token is not None:
                return token
            self.get_token_calls += 1
            try:
                response = await self.broker.aio_stub().GetToken(
                    self._get_request(), metadata=self.broker.metadata, timeout=self._timeout
                )
            except grpc.RpcError as exc:
                raise BrokerError.from_rpc_error(exc) from None
            token = Token.from_proto(response.access_token)
            self._offer(token)
            return token

    def _start(self) -> None:
        if self._task is None or self._task.get_loop() is not asyncio.get_running_loop():
            self._changed = asyncio.Condition()
            self._fetch_lock = asyncio.Lock()
            self._stream_down = False
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _notify(self, stream_down: bool) -> None:
        assert self._changed is not None
        async with self._changed:
            self._stream_down = stream_down
            self._changed.notify_all()

    async def _watch(self) -> None:
        while not self._closed:
            error: BrokerError | None = None
            try:
                self.watch_calls += 1
                call: Any = self.broker.aio_stub().WatchToken(self._request(), metadata=self.broker.metadata)
                async for message in call:
                    self.watch_messages += 1
                    self._offer(Token.from_proto(message.access_token))
                    self.last_error = None
                    self._backoff.reset()
                    await self._notify(False)
            except grpc.RpcError as exc:
                error = BrokerError.from_rpc_error(exc)
                if error.code not in _ENDED:
                    self.last_error = error
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any one fault
                error = BrokerError(grpc.StatusCode.UNKNOWN, repr(exc))
                self.last_error = error
            if self._closed:
                return
            await self._notify(True)
            await asyncio.sleep(self._backoff.delay(error))

    async def aclose(self) -> None:
        """Stops the stream (the Broker's channels stay open; close them with ``broker.aclose()``)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: S110 - closing
                pass

    async def __aenter__(self) -> TokenSource:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class SyncTokenSource(_Cache):
    """The same token source for threads: ``source.token()``; the stream runs in a daemon thread."""

    def __init__(
        self,
        tenant: str,
        target: str,
        *,
        broker: Broker | None = None,
        skew: float = 5.0,
        first_token_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        timeout: float = 30.0,
    ) -> None:
        super().__init__(tenant, target, broker, skew, backoff)
        self._first_token_timeout = first_token_timeout
        self._timeout = timeout
        self._changed = threading.Condition()
        self._fetch_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._call: Any = None

    def token(self) -> Token:
        """The current token: from the cache when valid (no RPC), else from the stream or GetToken."""
        token = self._token
        if token is not None and token.expires_at - self.skew > time.time():
            return token
        return self._slow_token()

    def _slow_token(self) -> Token:
        if self._closed:
            raise RuntimeError("the token source is closed")
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="helseid-token-watch", daemon=True)
                self._thread.start()
            self._changed.wait_for(
                lambda: self._valid() is not None or self._stream_down, timeout=self._first_token_timeout
            )
        with self._fetch_lock:
            token = self._valid()
            if token is not None:
                return token
            self.get_token_calls += 1
            try:
                response = self.broker.stub().GetToken(
                    self._get_request(), metadata=self.broker.metadata, timeout=self._timeout
                )
            except grpc.RpcError as exc:
                raise BrokerError.from_rpc_error(exc) from None
            token = Token.from_proto(response.access_token)
            self._offer(token)
            return token

    def _notify(self, stream_down: bool) -> None:
        with self._changed:
            self._stream_down = stream_down
            self._changed.notify_all()

    def _watch(self) -> None:
        while not self._closed:
            error: BrokerError | None = None
            try:
                self.watch_calls += 1
                self._call = self.broker.stub().WatchToken(self._request(), metadata=self.broker.metadata)
                for message in self._call:
                    self.watch_messages += 1
                    self._offer(Token.from_proto(message.access_token))
                    self.last_error = None
                    self._backoff.reset()
                    self._notify(False)
            except grpc.RpcError as exc:
                error = BrokerError.from_rpc_error(exc)
                if error.code not in _ENDED:
                    self.last_error = error
            except Exception as exc:  # noqa: BLE001 - the stream must outlive any one fault
                error = BrokerError(grpc.StatusCode.UNKNOWN, repr(exc))
                self.last_error = error
            if self._closed:
                return
            self._notify(True)
            deadline = time.monotonic() + self._backoff.delay(error)
            with self._changed:
                self._changed.wait_for(lambda: self._closed, timeout=max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Stops the stream and its thread (the Broker's channel stays open)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> SyncTokenSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
