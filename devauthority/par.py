"""``/connect/par``: pushed authorization requests (RFC 9126), the only way into a user login here.

The client authenticates as at the token endpoint (private_key_jwt, single-use ``jti``), pushes the
parameters of an authorization request, and gets a single-use ``request_uri`` that lives 60 s. HelseID
requires PAR of new clients that log users in; the dev authority requires it of every client.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from .answers import NO_STORE, Answer, error_answer, require_form_post, split_form
from .assertions import AssertionVerifier
from .attest import Attest, find_attest
from .details import ASSERTION_DETAILS, AUTHORIZATION_DETAILS, RequestedDetails, read_details
from .dpop import DPoPVerifier
from .errors import (
    INVALID_DPOP_PROOF,
    INVALID_REQUEST,
    INVALID_SCOPE,
    INVALID_TARGET,
    UNAUTHORIZED_CLIENT,
    UNSUPPORTED_RESPONSE_TYPE,
    OAuthError,
)
from .registry import AUTHORIZATION_CODE, RegisteredClient, audience_of_scope
from .request_object import RequestObjectVerifier
from .scopes import login_scopes
from .sessions import LoginStore, PushedRequest
from .stats import Stats
from .timing import Clock
from .users import TestUser, TestUserRegistry

log = logging.getLogger(__name__)

REQUEST_URI_LIFETIME_S = 60
S256 = "S256"
# RFC 7636 §4.2: BASE64URL(SHA-256(verifier)) is always 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
# An RFC 7638 SHA-256 thumbprint, base64url without padding.
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


class PushedAuthorizationEndpoint:
    def __init__(
        self,
        *,
        url: str,
        assertions: AssertionVerifier,
        dpop: DPoPVerifier,
        request_objects: RequestObjectVerifier,
        store: LoginStore,
        users: TestUserRegistry,
        stats: Stats,
        clock: Clock,
    ) -> None:
        self._url = url
        self._assertions = assertions
        self._dpop = dpop
        self._request_objects = request_objects
        self._store = store
        self._users = users
        self._stats = stats
        self._clock = clock

    def handle(
        self, *, method: str, form: Sequence[tuple[str, str]] | None, dpop_headers: Sequence[str]
    ) -> Answer:
        self._stats.par_requests += 1
        client_id: str | None = None
        try:
            params, resources = split_form(require_form_post(method, form, "PAR"))
            if "request_uri" in params:
                raise OAuthError(INVALID_REQUEST, "request_uri must not be sent to the PAR endpoint")
            authenticated = self._assertions.verify(params, endpoint=self._url)
            client = authenticated.client
            client_id = client.client_id
            if AUTHORIZATION_CODE not in client.grant_types:
                raise OAuthError(UNAUTHORIZED_CLIENT, f"client {client_id!r} may not log users in")
            if ASSERTION_DETAILS in authenticated.claims or AUTHORIZATION_DETAILS in authenticated.claims:
                raise OAuthError(
                    INVALID_REQUEST,
                    "org details at login go in the request object's authorization_details, "
                    "not in the PAR client assertion (or send them on the refresh_token grant)",
                )
            if len(dpop_headers) > 1:
                raise OAuthError(INVALID_DPOP_PROOF, "send at most one DPoP header")
            proof = self._dpop.verify(dpop_headers[0], method=method) if dpop_headers else None
            self._assertions.spend(authenticated)
            if proof is not None:
                self._dpop.spend(proof)

            details_claim = None
            attest: Attest | None = None
            if "authorization_details" in params:
                raise OAuthError(INVALID_REQUEST, "send authorization_details inside a signed request object")
            if "request" in params:
                request_object = self._request_objects.verify(params.pop("request"), client)
                params.update(request_object.params)  # the object's parameters win (RFC 9101 §6.3)
                if request_object.resources is not None:
                    resources = request_object.resources
                details_claim = request_object.authorization_details
                # A trust-framework attest here sticks to every access token of the login.
                attest = find_attest(details_claim, self._stats.attests)
            pushed = self._pushed_request(
                params,
                resources,
                client,
                details_claim,
                proof.jkt if proof is not None else None,
                attest=attest,
            )
        except OAuthError as error:
            self._stats.errors_by_code[error.error] += 1
            log.info("pushed authorization request refused (client %s): %s", client_id or "?", error)
            return error_answer(error)

        if pushed.attest is not None:
            self._stats.attests.in_request_objects += 1
        request_uri = self._store.push(pushed)
        log.info("pushed authorization request of client %s for user %s", client_id, pushed.user.id)
        return Answer(201, {"request_uri": request_uri, "expires_in": REQUEST_URI_LIFETIME_S}, NO_STORE)

    def _pushed_request(
        self,
        params: dict[str, str],
        resources: Sequence[str],
        client: RegisteredClient,
        details_claim: object,
        proof_jkt: str | None,
        *,
        attest: Attest | None,
    ) -> PushedRequest:
        if "client_id" in params and params["client_id"] != client.client_id:
            raise OAuthError(INVALID_REQUEST, "client_id does not match the authenticated client")
        response_type = params.get("response_type")
        if not response_type:
            raise OAuthError(INVALID_REQUEST, "response_type is required")
        if response_type != "code":
            raise OAuthError(UNSUPPORTED_RESPONSE_TYPE, "only response_type=code is supported")
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            raise OAuthError(INVALID_REQUEST, "redirect_uri is required")
        if redirect_uri not in client.redirect_uris:
            raise OAuthError(
                INVALID_REQUEST, f"redirect_uri is not registered for client {client.client_id!r}"
            )
        scopes = login_scopes(client, params.get("scope"))
        code_challenge = params.get("code_challenge")
        if not code_challenge:
            raise OAuthError(INVALID_REQUEST, "code_challenge is required (PKCE)")
        if params.get("code_challenge_method") != S256:
            raise OAuthError(INVALID_REQUEST, f"code_challenge_method must be {S256}")
        if not _S256_CHALLENGE.fullmatch(code_challenge):
            raise OAuthError(INVALID_REQUEST, "code_challenge must be a base64url SHA-256 (43 characters)")
        return PushedRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            resources=_resources(client, resources, scopes),
            code_challenge=code_challenge,
            state=params.get("state"),
            nonce=params.get("nonce"),
            user=self._user(params.get("login_hint")),
            details=self._details(details_claim, client),
            dpop_jkt=_dpop_jkt(params.get("dpop_jkt"), proof_jkt),
            expires_at=self._clock() + REQUEST_URI_LIFETIME_S,
            attest=attest,
        )

    def _user(self, login_hint: str | None) -> TestUser:
        if not login_hint:
            return self._users.default
        user = self._users.find(login_hint)
        if user is None:
            raise OAuthError(INVALID_REQUEST, "login_hint names no registered test user")
        return user

    @staticmethod
    def _details(details_claim: object, client: RegisteredClient) -> RequestedDetails:
        claims = {} if details_claim is None else {AUTHORIZATION_DETAILS: details_claim}
        return read_details(claims, client)


def _resources(client: RegisteredClient, resources: Sequence[str], scopes: Sequence[str]) -> tuple[str, ...]:
    """The login's resources (RFC 8707): the ones asked for, else the APIs of the API scopes."""
    asked = tuple(dict.fromkeys(resources))
    for resource in asked:
        if resource not in client.resources:
            raise OAuthError(INVALID_TARGET, f"client {client.client_id!r} may not use resource {resource!r}")
    apis = tuple(dict.fromkeys(a for a in map(audience_of_scope, scopes) if a is not None))
    if not asked:
        return apis
    if missing := [a for a in apis if a not in asked]:
        raise OAuthError(INVALID_SCOPE, f"scopes of {missing} are asked for, but not those resources")
    return asked


def _dpop_jkt(dpop_jkt: str | None, proof_jkt: str | None) -> str | None:
    """The key the code is bound to (RFC 9449 §10): ``dpop_jkt``, the PAR proof's key, or none."""
    if dpop_jkt is None:
        return proof_jkt
    if not _JKT.fullmatch(dpop_jkt):
        raise OAuthError(INVALID_REQUEST, "dpop_jkt must be a base64url SHA-256 JWK thumbprint")
    if proof_jkt is not None and proof_jkt != dpop_jkt:
        raise OAuthError(INVALID_DPOP_PROOF, "dpop_jkt and the DPoP proof's key differ")
    return dpop_jkt
