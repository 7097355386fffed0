"""The user-facing grants of the token endpoint: authorization_code, refresh_token, token exchange.

Each runs after the token endpoint has authenticated the client (private_key_jwt) and verified its
DPoP proof with a server nonce, exactly as for client_credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .attest import Attest, attest_in_assertion, double_structure
from .details import RequestedDetails, carries_org_details, read_details
from .errors import (
    INVALID_DPOP_PROOF,
    INVALID_GRANT,
    INVALID_REQUEST,
    INVALID_SCOPE,
    INVALID_TARGET,
    OAuthError,
)
from .grants import GrantRequest
from .registry import RegisteredClient, audience_of_scope
from .scopes import audience_of, scopes_for_resource, split_unsigned
from .sessions import LoginStore, RefreshFamily
from .stats import Stats
from .timing import Clock
from .tokens import (
    CLAIM_ORGNR_PARENT,
    IssuedToken,
    TokenContents,
    TokenIssuer,
)
from .users import SCOPE_OFFLINE_ACCESS, SCOPE_OPENID, TEST_IDP, TestUser, is_identity_scope

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 - RFC 8693 URI
DEFAULT_REFRESH_TOKEN_LIFETIME_S = 8 * 3600
# RFC 7636 §4.1: 43 to 128 unreserved characters.
_CODE_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# Claims of a subject token that an exchanged token does not inherit: the new token sets its own.
_NOT_INHERITED = frozenset({"iss", "aud", "iat", "nbf", "exp", "jti", "scope", "cnf", "act"})


class LoginGrants:
    """The grants that follow a user login, sharing one :class:`LoginStore`."""

    def __init__(self, *, store: LoginStore, stats: Stats, clock: Clock, refresh_lifetime_s: int) -> None:
        if refresh_lifetime_s < 1:
            raise ValueError("the refresh-token lifetime must be at least one second")
        self._store = store
        self._stats = stats
        self._clock = clock
        self._refresh_lifetime_s = refresh_lifetime_s

    # --- authorization_code --------------------------------------------------------------------------

    def authorization_code(self, request: GrantRequest, tokens: TokenIssuer) -> dict[str, Any]:
        params = request.params
        if carries_org_details(request.assertion_claims):
            raise OAuthError(
                INVALID_REQUEST,
                "HID-1009: org details are not accepted in the client assertion of a code redemption; "
                "send them in the PAR request object or on the refresh_token grant",
            )
        code, redirect_uri, verifier = (params.get(n) for n in ("code", "redirect_uri", "code_verifier"))
        if not code:
            raise OAuthError(INVALID_REQUEST, "code is required")
        if not redirect_uri:
            raise OAuthError(INVALID_REQUEST, "redirect_uri is required")
        if not verifier:
            raise OAuthError(INVALID_REQUEST, "code_verifier is required (PKCE)")
        resource = _single_resource(request.resources)
        # Checked before the code is looked up: a malformed attest leaves the code alone.
        asserted = attest_in_assertion(request.assertion_claims, self._stats.attests)

        record = self._store.code(code)
        if record is None or record.request.client_id != request.client.client_id:
            raise OAuthError(INVALID_GRANT, "the code is unknown or expired")
        if record.used:
            self._store.revoke_code(record)
            raise OAuthError(
                INVALID_GRANT, "the code was already used; the tokens issued from it are revoked"
            )
        # The attest both in the request object and here: refused, and the code stays redeemable.
        attest = self._one_attest(record.request.attest, asserted)
        # Like IdentityServer (which HelseID runs on), any redemption attempt uses the code up.
        record.used = True
        pushed = record.request
        if redirect_uri != pushed.redirect_uri:
            raise OAuthError(INVALID_GRANT, "redirect_uri does not match the authorization request")
        if not _pkce_matches(verifier, pushed.code_challenge):
            raise OAuthError(INVALID_GRANT, "code_verifier does not match the code_challenge")
        if pushed.dpop_jkt is not None and request.jkt != pushed.dpop_jkt:
            raise OAuthError(INVALID_DPOP_PROOF, "the code is bound to another DPoP key (dpop_jkt)")
        if resource is not None and resource not in pushed.resources:
            raise OAuthError(
                INVALID_TARGET, f"resource {resource!r} was not part of the authorization request"
            )

        family: RefreshFamily | None = None
        if SCOPE_OFFLINE_ACCESS in pushed.scopes:
            family = RefreshFamily(
                family_id=secrets.token_hex(8),
                client_id=request.client.client_id,
                user=pushed.user,
                sid=record.sid,
                auth_time=record.auth_time,
                scopes=pushed.scopes,
                resources=pushed.resources,
                details=pushed.details,
                jkt=pushed.dpop_jkt,
                nonce=pushed.nonce,
                expires_at=self._clock() + self._refresh_lifetime_s,
                attest=pushed.attest,
            )
            record.family = family
        body, issued = self._user_tokens(
            request,
            tokens,
            login=_Login(pushed.user, record.sid, record.auth_time, pushed.scopes),
            scopes=scopes_for_resource(pushed.scopes, resource),
            audience=resource if resource is not None else audience_of(pushed.resources),
            details=pushed.details,
            nonce=pushed.nonce,
            attest=attest,
        )
        record.access_tokens.append((issued.jti, issued.expires_at))
        if family is not None:
            family.access_tokens.append((issued.jti, issued.expires_at))
            body["refresh_token"] = self._store.new_family(family)
            body["rt_expires_in"] = self._remaining(family)
        return body

    # --- refresh_token -------------------------------------------------------------------------------

    def refresh_token(self, request: GrantRequest, tokens: TokenIssuer) -> dict[str, Any]:
        params = request.params
        token = params.get("refresh_token")
        if not token:
            raise OAuthError(INVALID_REQUEST, "refresh_token is required")
        resource = _single_resource(request.resources)
        asserted = attest_in_assertion(request.assertion_claims, self._stats.attests)
        entry = self._store.refresh_entry(token)
        if entry is None or entry[0].client_id != request.client.client_id:
            raise OAuthError(INVALID_GRANT, "the refresh token is unknown or expired")
        family, used = entry
        if family.revoked:
            raise OAuthError(INVALID_GRANT, "the refresh token was revoked")
        if used:
            # Reuse of a rotated refresh token means two parties hold it: kill the whole family
            # (OAuth 2.0 Security BCP, RFC 9700 §4.14.2).
            self._store.revoke_family(family)
            raise OAuthError(
                INVALID_GRANT, "the refresh token was already used; every token of this login is revoked"
            )
        if family.jkt is not None and request.jkt != family.jkt:
            raise OAuthError(INVALID_DPOP_PROOF, "the refresh token is bound to another DPoP key")

        scopes, resources = family.scopes, family.resources
        if "scope" in params:
            asked = tuple(dict.fromkeys(params["scope"].split()))
            if not asked or any(s not in family.scopes for s in asked):
                raise OAuthError(INVALID_SCOPE, "scope must be a subset of the scopes granted at login")
            scopes, resources = asked, _apis(asked, family.resources)
        if resource is not None and resource not in family.resources:
            raise OAuthError(
                INVALID_TARGET, f"resource {resource!r} was not part of the authorization request"
            )
        # HelseID's recommended way to pick the org unit: details in this grant's client assertion.
        details = (
            read_details(request.assertion_claims, request.client)
            if carries_org_details(request.assertion_claims)
            else family.details
        )
        # The login's attest (request object) or this grant's (client assertion), never both; the
        # refresh token is not used up by a refusal.
        attest = self._one_attest(family.attest, asserted)

        new_token = self._store.rotate(token)
        body, issued = self._user_tokens(
            request,
            tokens,
            login=_Login(family.user, family.sid, family.auth_time, family.scopes),
            scopes=scopes_for_resource(scopes, resource),
            audience=resource if resource is not None else audience_of(resources),
            details=details,
            nonce=family.nonce,
            attest=attest,
        )
        family.access_tokens.append((issued.jti, issued.expires_at))
        body["refresh_token"] = new_token
        body["rt_expires_in"] = self._remaining(family)
        self._stats.refreshes += 1
        return body

    # --- token exchange (RFC 8693) -------------------------------------------------------------------

    def token_exchange(self, request: GrantRequest, tokens: TokenIssuer) -> dict[str, Any]:
        params, actor = request.params, request.client
        subject_token = params.get("subject_token")
        if not subject_token:
            raise OAuthError(INVALID_REQUEST, "subject_token is required")
        if params.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            raise OAuthError(INVALID_REQUEST, f"subject_token_type must be {ACCESS_TOKEN_TYPE}")
        if params.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
            raise OAuthError(INVALID_REQUEST, f"only {ACCESS_TOKEN_TYPE} can be requested")
        if "actor_token" in params:
            raise OAuthError(INVALID_REQUEST, "actor_token is not supported: the authenticated client acts")
        resource = _single_resource(request.resources)
        scopes, audience = _exchange_target(actor, params.get("scope"), resource)

        subject = tokens.verify_access_token(subject_token)
        if subject is None or self._store.access_token_revoked(subject["jti"]):
            raise OAuthError(INVALID_GRANT, "subject_token is not a valid access token of this issuer")

        actor_details = read_details(request.assertion_claims, actor)
        act: dict[str, Any] = {"client_id": actor.client_id, "iss": tokens.issuer}
        if actor_details.orgnr_parent is not None:
            act[CLAIM_ORGNR_PARENT] = actor_details.orgnr_parent
        if isinstance(subject.get("act"), Mapping):
            act["act"] = subject["act"]  # earlier actors nest (RFC 8693 §4.1)
        claims = {k: v for k, v in subject.items() if k not in _NOT_INHERITED}
        claims.update({"scope": list(scopes), "act": act})
        if audience is not None:
            claims["aud"] = audience if isinstance(audience, str) else list(audience)
        issued = tokens.mint(claims, jkt=request.jkt)
        self._stats.exchanges += 1
        return {
            "access_token": issued.access_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
            "scope": " ".join(scopes),
        }

    # --- shared --------------------------------------------------------------------------------------

    def _user_tokens(
        self,
        request: GrantRequest,
        tokens: TokenIssuer,
        *,
        login: _Login,
        scopes: Sequence[str],
        audience: str | Sequence[str] | None,
        details: RequestedDetails,
        nonce: str | None,
        attest: Attest | None,
    ) -> tuple[dict[str, Any], IssuedToken]:
        granted, rejected = split_unsigned(request.client, scopes, details)
        session = {"sid": login.sid, "auth_time": login.auth_time, "idp": TEST_IDP, "amr": ["pwd"]}
        issued = tokens.issue(
            TokenContents(
                client=request.client,
                scopes=granted,
                audience=audience,
                details=details,
                jkt=request.jkt,
                # The user's claims follow the scopes of the login, not a narrower scope asked for on
                # refresh: APIs need pid, hpr_number etc. in every token of the session.
                identity={**login.user.claims(login.scopes, tokens.issuer), **session},
                attest=attest,
            )
        )
        body: dict[str, Any] = {
            "access_token": issued.access_token,
            "token_type": issued.token_type,
            "expires_in": issued.expires_in,
            "scope": " ".join(granted),
        }
        if rejected:
            body["rejected_scope"] = " ".join(rejected)
        if SCOPE_OPENID in login.scopes:
            id_claims = {**login.user.claims(login.scopes, tokens.issuer), **session}
            if nonce is not None:
                id_claims["nonce"] = nonce
            body["id_token"] = tokens.id_token(
                client_id=request.client.client_id, claims=id_claims, access_token=issued.access_token
            )
        return body, issued

    def _one_attest(self, of_login: Attest | None, asserted: Attest | None) -> Attest | None:
        """The attest of a user token: the login's or this grant's client assertion's, not both."""
        if of_login is not None and asserted is not None:
            self._stats.attests.double += 1
            raise double_structure()
        if asserted is not None:
            self._stats.attests.in_assertions += 1
            return asserted
        return of_login

    def _remaining(self, family: RefreshFamily) -> int:
        return max(0, int(family.expires_at - self._clock()))


@dataclass(frozen=True)
class _Login:
    """Who logged in, in which session, when, and with which scopes."""

    user: TestUser
    sid: str
    auth_time: int
    scopes: tuple[str, ...]


def _single_resource(resources: Sequence[str]) -> str | None:
    if len(resources) > 1:
        raise OAuthError(INVALID_TARGET, "ask for one resource per token request")
    return resources[0] if resources else None


def _apis(scopes: Sequence[str], resources: Sequence[str]) -> tuple[str, ...]:
    """With a narrower scope and no resource, a refreshed token is for the resources it still reaches."""
    apis = {audience_of_scope(s) for s in scopes}
    narrowed = tuple(r for r in resources if r in apis)
    return narrowed or tuple(resources)


def _pkce_matches(verifier: str, challenge: str) -> bool:
    if not _CODE_VERIFIER.fullmatch(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


def _exchange_target(
    actor: RegisteredClient, scope: str | None, resource: str | None
) -> tuple[tuple[str, ...], str | tuple[str, ...] | None]:
    """Scopes and ``aud`` of an exchanged token: from ``scope`` and/or ``resource``, for the actor."""
    asked = tuple(dict.fromkeys((scope or "").split()))
    if not asked and resource is None:
        raise OAuthError(INVALID_REQUEST, "token exchange needs the target's scope and/or resource")
    if resource is not None and resource not in actor.resources:
        raise OAuthError(INVALID_TARGET, f"client {actor.client_id!r} may not use resource {resource!r}")
    if identity := [s for s in asked if is_identity_scope(s)]:
        raise OAuthError(INVALID_SCOPE, f"identity scopes {identity} cannot be asked for in a token exchange")
    if refused := [s for s in asked if s not in actor.allowed_scopes]:
        raise OAuthError(INVALID_SCOPE, f"client {actor.client_id!r} may not use scopes {refused}")
    if resource is not None:
        if foreign := [s for s in asked if audience_of_scope(s) not in (None, resource)]:
            raise OAuthError(INVALID_SCOPE, f"scopes {foreign} do not belong to resource {resource!r}")
        if not asked:
            asked = tuple(s for s in actor.allowed_scopes if audience_of_scope(s) == resource)
            if not asked:
                raise OAuthError(INVALID_SCOPE, f"client {actor.client_id!r} has no scope of {resource!r}")
        return asked, resource
    return asked, audience_of(tuple(dict.fromkeys(a for a in map(audience_of_scope, asked) if a)))
