"""The composition root: one dev authority's state, wired together, with no web framework in sight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .assertions import AssertionVerifier
from .authorize import AuthorizeEndpoint
from .demo_api import DemoApi, DemoApiStats
from .discovery import PAR_PATH, REVOCATION_PATH, TOKEN_PATH, discovery_document
from .dpop import DPoPVerifier, NonceKeeper
from .grants import Grant, client_credentials
from .login_grants import DEFAULT_REFRESH_TOKEN_LIFETIME_S, LoginGrants
from .par import PushedAuthorizationEndpoint
from .registry import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    REFRESH_TOKEN,
    TOKEN_EXCHANGE,
    ClientRegistry,
    RegisteredClient,
)
from .request_object import RequestObjectVerifier
from .revocation import RevocationEndpoint
from .selvbetjening import DEFAULT_KEY_LIFETIME_S, Selvbetjening
from .sessions import LoginStore
from .stats import Faults, Stats
from .timing import Clock
from .token_endpoint import TokenEndpoint
from .tokens import TokenIssuer
from .users import TestUser, TestUserRegistry


class Authority:
    """Everything one running dev authority holds: clients, users, keys, nonces, logins, counters."""

    def __init__(
        self,
        *,
        issuer: str,
        clients: Sequence[RegisteredClient],
        token_lifetime_s: int,
        nonce_period_s: float,
        clock: Clock,
        test_users: Sequence[TestUser] = (),
        refresh_token_lifetime_s: int = DEFAULT_REFRESH_TOKEN_LIFETIME_S,
        selvbetjening_key_lifetime_s: int = DEFAULT_KEY_LIFETIME_S,
    ) -> None:
        # HelseID's issuer has no trailing slash, and clients compare aud and htu to it literally.
        self.issuer = issuer.rstrip("/")
        self.token_url = self.issuer + TOKEN_PATH
        self.par_url = self.issuer + PAR_PATH
        self.revocation_url = self.issuer + REVOCATION_PATH
        self.registry = ClientRegistry(clients, clock=clock)
        self.users = TestUserRegistry(test_users)
        self.stats = Stats()
        self.faults = Faults()
        self.nonces = NonceKeeper(period_s=nonce_period_s, clock=clock)
        self.tokens = TokenIssuer(issuer=self.issuer, lifetime_s=token_lifetime_s, clock=clock)
        # A resource server beside the STS, for clients' tests (demo_api.py).
        self.demo_api = DemoApi(tokens=self.tokens, clock=clock)
        self.logins = LoginStore(clock)
        # Clients' own key registration (selvbetjening.py), changing the keys in self.registry.
        self.selvbetjening = Selvbetjening(
            registry=self.registry,
            tokens=self.tokens,
            clock=clock,
            key_lifetime_s=selvbetjening_key_lifetime_s,
        )
        assertions = AssertionVerifier(
            registry=self.registry, issuer=self.issuer, token_endpoint=self.token_url, clock=clock
        )
        login_grants = LoginGrants(
            store=self.logins, stats=self.stats, clock=clock, refresh_lifetime_s=refresh_token_lifetime_s
        )
        self.grants: Mapping[str, Grant] = {
            CLIENT_CREDENTIALS: client_credentials,
            AUTHORIZATION_CODE: login_grants.authorization_code,
            REFRESH_TOKEN: login_grants.refresh_token,
            TOKEN_EXCHANGE: login_grants.token_exchange,
        }
        self.token_endpoint = TokenEndpoint(
            assertions=assertions,
            dpop=DPoPVerifier(htu=self.token_url, nonces=self.nonces, clock=clock),
            nonces=self.nonces,
            tokens=self.tokens,
            grants=self.grants,
            stats=self.stats,
            faults=self.faults,
        )
        self.par_endpoint = PushedAuthorizationEndpoint(
            url=self.par_url,
            assertions=assertions,
            dpop=DPoPVerifier(htu=self.par_url, nonces=self.nonces, clock=clock, require_nonce=False),
            request_objects=RequestObjectVerifier(issuer=self.issuer, clock=clock),
            store=self.logins,
            users=self.users,
            stats=self.stats,
            clock=clock,
        )
        self.authorize_endpoint = AuthorizeEndpoint(
            issuer=self.issuer, registry=self.registry, store=self.logins, stats=self.stats, clock=clock
        )
        self.revocation_endpoint = RevocationEndpoint(
            url=self.revocation_url,
            assertions=assertions,
            store=self.logins,
            tokens=self.tokens,
            stats=self.stats,
        )

    def snapshot(self) -> dict[str, Any]:
        """Every counter: the STS's; the demo API's and the key API's under their names."""
        return {
            **self.stats.snapshot(),
            "demo_api": self.demo_api.snapshot(),
            "selvbetjening": self.selvbetjening.snapshot(),
        }

    def reset_stats(self) -> None:
        self.stats.reset()
        self.demo_api.stats = DemoApiStats()
        self.selvbetjening.reset_stats()

    def discovery(self) -> dict[str, Any]:
        return discovery_document(self.issuer, self.grants.keys())
