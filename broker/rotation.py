"""Client key rotation: before a client's key expires, one replica makes a new key, registers it in HelseID
through Selvbetjening, proves it with a token request, and every replica then signs with it.

For each client with a `rotation` policy, every replica looks every `check_interval` whether a rotation is
due: the current key expires (HelseID's `expiration`, read from Selvbetjening) within
`rotate_before_expiry`, or it is older than `every`. The replica that takes the client's lease (the others
wait for the next look) then, each step counted in `broker.key_rotation.steps` and logged:

1. generate: a new key pair of the current key's algorithm, in process memory;
2. token: an access token for Selvbetjening (`nhn:selvbetjening/client`), fetched with the current key;
3. register: the new public JWK, posted to Selvbetjening, which answers its expiration;
4. confirm: a token request signed by the new key, so HelseID is known to accept it before anyone uses it;
5. commit: the new key, sealed with the store key, becomes the client's current key in the shared store
   (one script), and a notice reaches every replica, which loads it and signs with it from then on.

The replaced key is kept `keep_old_key` (every token it fetched has expired by then) and then deleted from
the store; HelseID keeps it registered until its own expiration (the API documents no removal). Tokens keep
being served across the switch (`TokenEngine.carry`) and are renewed with the new key as they go stale. A
failed step keeps the old key, is retried with back-off (30 s, or the check interval when shorter,
doubling to an hour), and sets
`broker.key_rotation.failing{client}` to 1 until a rotation succeeds: alert on it.

New keys live in the shared store (sealed). A client whose key is in an HSM is rotated the same way today,
its new key in the store: generating inside the HSM is the place to extend (`_generate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from broker.api.admin import KeyEntry
from broker.errors import BrokerError
from broker.idp.selvbetjening import TARGET, RegisteredKey, SelvbetjeningClient
from broker.idp.sts import StsClient
from broker.model import AccessToken, Client, RotationPolicy, SigningKey
from broker.protocol import keys
from broker.reload import Reloader
from broker.store.client_keys import KeyRecord, KeyRecords
from broker.telemetry import Metrics

_log = logging.getLogger(__name__)

LEASE_TTL = timedelta(minutes=2)
# The registered keys (and their expiry) are read at most this often: an expiry is known months ahead.
LIST_INTERVAL = timedelta(minutes=10)
# A Selvbetjening token is reused while it has this much left.
TOKEN_MARGIN = timedelta(seconds=60)
FIRST_RETRY = timedelta(seconds=30)
LAST_RETRY = timedelta(hours=1)


@dataclass
class _State:
    """What one replica knows of one client's rotation."""

    kid: str  # the client's current key
    first_seen: datetime  # when this replica first saw that key in use (for `every`)
    registered: list[RegisteredKey]
    listed_at: datetime | None = None
    token: AccessToken | None = None  # for Selvbetjening, fetched with this key
    retry_at: datetime | None = None
    retry_after: timedelta = FIRST_RETRY


class KeyRotator:
    def __init__(
        self,
        reloader: Reloader,
        records: KeyRecords,
        sts: StsClient,
        selvbetjening: SelvbetjeningClient,
        *,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._reloader = reloader
        self._records = records
        self._sts = sts
        self._selvbetjening = selvbetjening
        self._metrics = metrics
        self._clock = clock
        self._states: dict[str, _State] = {}
        self._changed: asyncio.Queue[str] = asyncio.Queue()

    def _rotating(self) -> Mapping[str, Client]:
        return {name: client for name, client in self._reloader.config.clients.items() if client.rotation}

    async def start(self) -> None:
        """Signs with each client's current rotated key (from the store) before the broker serves."""
        self._records.on_change(self._changed.put_nowait)
        for name in self._rotating():
            with contextlib.suppress(BrokerError):  # the store is away: the files' keys serve meanwhile
                await self._load(name)

    async def run(self) -> None:
        """Applies other replicas' rotations as they are announced, and rotates when due; until cancelled."""
        listening = asyncio.get_running_loop().create_task(self._apply_notices())
        try:
            while True:
                clients = self._rotating()
                for name in clients:
                    try:
                        await self.check(name)
                    except Exception:  # one client's trouble never stops the others' rotations
                        _log.exception("key rotation check of client %r failed", name)
                interval = min(
                    (c.rotation.check_interval for c in clients.values() if c.rotation), default=None
                )
                await asyncio.sleep((interval or timedelta(minutes=10)).total_seconds())
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _apply_notices(self) -> None:
        while True:
            name = await self._changed.get()
            try:
                await self._load(name)
            except BrokerError as exc:
                _log.warning("the rotated key of client %r could not be read (%s)", name, exc.reason)

    async def _load(self, name: str) -> None:
        """Signs with the store's current key of `name` (if it has one and it is not already in use), and
        deletes the client's replaced keys whose time is up."""
        stored = await self._records.read(name)
        now = self._clock().timestamp()
        for record in stored.records.values():
            if record.retire_after is not None and record.retire_after < now and record.kid != stored.current:
                await self._records.delete(name, record.kid)
                self._metrics.key_expiry(name, record.kid, None)
        if stored.current is None:
            return
        client = self._reloader.config.clients.get(name)
        if client is None or client.signing_key.kid == stored.current:
            return
        key = keys.load_signing_key(stored.records[stored.current].private_jwk)
        await self._reloader.use_signing_key(name, replace(key, where="store"))
        # Whichever replica rotated, the client's rotation succeeded: this one stops saying it fails.
        self._metrics.rotation_failing(name, False)
        self._states.pop(name, None)
        _log.info("client %r signs with its rotated key %s from now on", name, key.kid)

    async def check(self, name: str) -> bool:
        """Rotates `name`'s key when due and this replica gets the lease; whether it rotated."""
        client = self._reloader.config.clients[name]
        policy = client.rotation
        assert policy is not None
        state = self._state(name, client)
        now = self._clock()
        if state.retry_at is not None and now < state.retry_at:
            return False
        if state.listed_at is None or now - state.listed_at >= LIST_INTERVAL:
            state.registered = await self._registered(name, client, policy, state)
            state.listed_at = now
        if not self._due(client, policy, state, now):
            return False
        lease = await self._records.try_lease(name, LEASE_TTL)
        if lease is None:
            return False  # another replica rotates; its notice brings the key here
        try:
            await self._load(name)  # a rotation that finished while this replica looked
            client = self._reloader.config.clients[name]
            state = self._state(name, client)
            if not self._due(client, policy, state, self._clock()):
                return False
            await self._rotate(name, client, policy, state)
            return True
        finally:
            with contextlib.suppress(BrokerError):
                await self._records.release(lease)

    async def keys_of(self, name: str) -> list[KeyEntry]:
        """The client's active keys: the one it signs with and the replaced ones still kept in the store,
        with HelseID's expiry (from Selvbetjening's last list, else from the registration)."""
        client = self._reloader.config.clients[name]
        state = self._states.get(name)
        registered = {key.kid: key for key in (state.registered if state else [])}
        records: dict[str, KeyRecord] = {}
        with contextlib.suppress(BrokerError):  # the store is away: the current key is still known
            records = (await self._records.read(name)).records

        def entry(key: SigningKey, current: bool) -> KeyEntry:
            listed, record = registered.get(key.kid), records.get(key.kid)
            expires = None if listed is None else listed.expires_at
            if expires is None and record is not None and record.expires_at is not None:
                expires = datetime.fromtimestamp(record.expires_at, UTC)
            retire = None
            if record is not None and record.retire_after is not None:
                retire = datetime.fromtimestamp(record.retire_after, UTC)
            return KeyEntry(client, key, current, expires, "" if listed is None else listed.origin, retire)

        entries = [entry(client.signing_key, True)]
        for record in records.values():
            if record.kid != client.signing_key.kid:
                entries.append(
                    entry(replace(keys.load_signing_key(record.private_jwk), where="store"), False)
                )
        return entries

    def _state(self, name: str, client: Client) -> _State:
        state = self._states.get(name)
        if state is None or state.kid != client.signing_key.kid:
            state = _State(client.signing_key.kid, self._clock(), [])
            self._states[name] = state
        return state

    async def _token(self, client: Client, state: _State) -> AccessToken:
        """A Selvbetjening token of the client's current key, reused while it lasts."""
        token = state.token
        if token is None or token.expires_at - self._clock() < TOKEN_MARGIN:
            token = state.token = await self._sts.fetch_client_credentials(client, TARGET, ())
        return token

    async def _registered(
        self, name: str, client: Client, policy: RotationPolicy, state: _State
    ) -> list[RegisteredKey]:
        """The keys HelseID holds for the client (their expiry feeds the gauge)."""
        token = await self._token(client, state)
        registered = await self._selvbetjening.list_keys(policy.selvbetjening_url, client, token)
        for key in registered:
            expires = None if key.expires_at is None else key.expires_at.timestamp()
            if expires is not None:
                self._metrics.key_expiry(name, key.kid, expires)
        return registered

    def _due(self, client: Client, policy: RotationPolicy, state: _State, now: datetime) -> bool:
        current = next((key for key in state.registered if key.kid == client.signing_key.kid), None)
        before = policy.rotate_before_expiry
        expires = None if current is None else current.expires_at
        if before is not None and expires is not None and expires - now <= before:
            return True
        return policy.every is not None and now - state.first_seen >= policy.every

    async def _rotate(self, name: str, client: Client, policy: RotationPolicy, state: _State) -> None:
        step = "generate"
        try:
            new = self._generate(client.signing_key)
            self._step(name, step, "ok")
            step = "token"
            token = await self._token(client, state)
            self._step(name, step, "ok")
            step = "register"
            public = keys.public_jwk(new)
            expires = await self._selvbetjening.register(policy.selvbetjening_url, client, token, public)
            self._step(name, step, "ok")
            step = "confirm"
            await self._sts.fetch_client_credentials(replace(client, signing_key=new), TARGET, ())
            self._step(name, step, "ok")
            step = "commit"
            now = self._clock().timestamp()
            record = KeyRecord(new.kid, keys.private_jwk(new), created_at=now, expires_at=expires.timestamp())
            await self._records.commit(name, record, self._retired(name, client, policy, now))
            self._step(name, step, "ok")
        except BrokerError as exc:
            self._failed(name, step, state, exc.reason)
            return
        self._metrics.key_expiry(name, new.kid, expires.timestamp())
        self._metrics.rotation_failing(name, False)
        state.retry_at, state.retry_after = None, FIRST_RETRY
        await self._load(name)
        _log.info("client %r rotated its key: %s replaces %s", name, new.kid, client.signing_key.kid)

    def _retired(self, name: str, client: Client, policy: RotationPolicy, now: float) -> KeyRecord | None:
        """The replaced key's record with the time it may be deleted; None for a key of the files (it stays
        where the operator put it) or of an HSM."""
        if client.signing_key.where != "store":
            return None
        retire_after = now + policy.keep_old_key.total_seconds()
        return KeyRecord(
            client.signing_key.kid,
            keys.private_jwk(client.signing_key),
            created_at=now,
            retire_after=retire_after,
        )

    @staticmethod
    def _generate(current: SigningKey) -> SigningKey:
        """The new key: the current key's algorithm, in memory (sealed into the store at commit)."""
        return replace(keys.generate_signing_key(current.alg), where="store")

    def _step(self, name: str, step: str, outcome: str) -> None:
        self._metrics.rotation_step(name, step, outcome)
        _log.info("key rotation of client %r: %s %s", name, step, outcome)

    def _failed(self, name: str, step: str, state: _State, reason: str) -> None:
        self._metrics.rotation_step(name, step, "failed")
        self._metrics.rotation_failing(name, True)
        policy = self._reloader.config.clients[name].rotation
        if policy is not None and state.retry_after == FIRST_RETRY:
            # A replica that looks more often than every 30 s retries as often as it looks at first.
            state.retry_after = min(FIRST_RETRY, policy.check_interval)
        state.retry_at = self._clock() + state.retry_after
        _log.warning(
            "key rotation of client %r failed at %s (%s); the current key stays, next try in %.0f s",
            name,
            step,
            reason,
            state.retry_after.total_seconds(),
        )
        state.retry_after = min(state.retry_after * 2, LAST_RETRY)
