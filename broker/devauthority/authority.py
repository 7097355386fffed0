"""The composition root: one dev authority's state, wired together, with no web framework in sight."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .assertions import AssertionVerifier
from .discovery import TOKEN_PATH, discovery_document
from .dpop import DPoPVerifier, NonceKeeper
from .grants import GRANTS
from .registry import ClientRegistry, RegisteredClient
from .stats import Faults, Stats
from .timing import Clock
from .token_endpoint import TokenEndpoint
from .tokens import TokenIssuer


class Authority:
    """Everything one running dev authority holds: clients, keys, nonces, replay caches, counters."""

    def __init__(
        self,
        *,
        issuer: str,
        clients: Sequence[RegisteredClient],
        token_lifetime_s: int,
        nonce_period_s: float,
        clock: Clock,
    ) -> None:
        # HelseID's issuer has no trailing slash, and clients compare aud and htu to it literally.
        self.issuer = issuer.rstrip("/")
        self.token_url = self.issuer + TOKEN_PATH
        self.registry = ClientRegistry(clients)
        self.stats = Stats()
        self.faults = Faults()
        self.nonces = NonceKeeper(period_s=nonce_period_s, clock=clock)
        self.tokens = TokenIssuer(issuer=self.issuer, lifetime_s=token_lifetime_s, clock=clock)
        self.token_endpoint = TokenEndpoint(
            assertions=AssertionVerifier(
                registry=self.registry, issuer=self.issuer, token_endpoint=self.token_url, clock=clock
            ),
            dpop=DPoPVerifier(htu=self.token_url, nonces=self.nonces, clock=clock),
            nonces=self.nonces,
            tokens=self.tokens,
            grants=GRANTS,
            stats=self.stats,
            faults=self.faults,
        )

    def discovery(self) -> dict[str, Any]:
        return discovery_document(self.issuer, GRANTS.keys())
