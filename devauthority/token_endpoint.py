"""``/connect/token``: the order of checks around a grant, the way HelseID answers, and the counters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from .answers import NO_STORE, Answer, require_form_post, split_form
from .assertions import AssertionVerifier
from .dpop import DPoPVerifier, NonceKeeper
from .errors import (
    INVALID_DPOP_PROOF,
    INVALID_REQUEST,
    TEMPORARILY_UNAVAILABLE,
    UNAUTHORIZED_CLIENT,
    UNSUPPORTED_GRANT_TYPE,
    USE_DPOP_NONCE,
    OAuthError,
)
from .grants import Grant, GrantRequest
from .stats import Faults, Stats
from .tokens import TokenIssuer

log = logging.getLogger(__name__)

__all__ = ["Answer", "TokenEndpoint"]


class TokenEndpoint:
    def __init__(
        self,
        *,
        assertions: AssertionVerifier,
        dpop: DPoPVerifier,
        nonces: NonceKeeper,
        tokens: TokenIssuer,
        grants: Mapping[str, Grant],
        stats: Stats,
        faults: Faults,
    ) -> None:
        self._assertions = assertions
        self._dpop = dpop
        self._nonces = nonces
        self._tokens = tokens
        self._grants = grants
        self._stats = stats
        self._faults = faults

    async def handle(
        self,
        *,
        method: str,
        form: Sequence[tuple[str, str]] | None,
        dpop_headers: Sequence[str],
    ) -> Answer:
        """Answer one request. ``form`` is None when the body was not form-encoded."""
        self._stats.token_requests += 1
        self._stats.token_requests_by_grant[self._grant_label(form)] += 1

        mode = self._faults.token_endpoint
        if mode != "ok" and self._faults.delay_s > 0:
            await asyncio.sleep(self._faults.delay_s)
        if mode == "unavailable":
            return self._refuse(OAuthError(TEMPORARILY_UNAVAILABLE, "injected outage", status=503), None)

        client_id: str | None = None
        try:
            params, resources = split_form(require_form_post(method, form, "token"))
            grant_type = params.get("grant_type")
            if not grant_type:
                raise OAuthError(INVALID_REQUEST, "grant_type is required")
            grant = self._grants.get(grant_type)
            if grant is None:
                raise OAuthError(UNSUPPORTED_GRANT_TYPE, f"grant type {grant_type!r} is not supported")

            authenticated = self._assertions.verify(params)
            client = authenticated.client
            client_id = client.client_id
            if grant_type not in client.grant_types:
                raise OAuthError(UNAUTHORIZED_CLIENT, f"grant type {grant_type!r} is not allowed here")

            if len(dpop_headers) > 1:
                raise OAuthError(INVALID_DPOP_PROOF, "send exactly one DPoP header")
            proof = self._dpop.verify(dpop_headers[0], method=method) if dpop_headers else None
            if proof is None and client.require_dpop:
                raise OAuthError(INVALID_DPOP_PROOF, f"client {client_id!r} must send a DPoP proof")

            # Only now, with the nonce accepted, are the assertion and the proof used up.
            self._assertions.spend(authenticated)
            self._stats.tokens_by_kid[authenticated.kid] += 1
            if proof is not None:
                self._dpop.spend(proof)
            body = grant(
                GrantRequest(
                    params=params,
                    resources=resources,
                    client=client,
                    assertion_claims=authenticated.claims,
                    jkt=proof.jkt if proof is not None else None,
                ),
                self._tokens,
            )
        except OAuthError as error:
            return self._refuse(error, client_id)

        self._stats.tokens_issued += 1
        log.info(
            "issued %s token to client %s (grant %s, scope %s)",
            body["token_type"],
            client_id,
            grant_type,
            body["scope"],
        )
        # A fresh nonce on success lets a client skip the challenge round trip next time.
        return Answer(200, body, {**NO_STORE, "DPoP-Nonce": self._nonces.current()})

    def _refuse(self, error: OAuthError, client_id: str | None) -> Answer:
        self._stats.errors_by_code[error.error] += 1
        if error.error == USE_DPOP_NONCE:
            self._stats.nonce_challenges += 1
        # Descriptions are built never to contain a credential, so they are safe to log.
        log.info("token request refused (client %s): %s", client_id or "?", error)
        return Answer(error.status, error.body(), {**NO_STORE, **error.headers})

    def _grant_label(self, form: Sequence[tuple[str, str]] | None) -> str:
        # Label by known grant only: a stats key per arbitrary string would let input grow the stats.
        grant_types = [value for name, value in form or () if name == "grant_type"]
        if not grant_types:
            return "(missing)"
        return grant_types[0] if grant_types[0] in self._grants else "(unsupported)"
