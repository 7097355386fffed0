"""``/connect/revocation`` (RFC 7009): a client gives up a refresh token (or an access token).

The client authenticates with private_key_jwt as everywhere else. Revoking a refresh token kills its
whole family (every refresh token of that login, and the access tokens issued along it, as far as this
authority can: access tokens are JWTs, so an API that checks them offline still accepts them until they
expire; this authority refuses them as token-exchange subjects). Revoking an access token marks its
``jti`` revoked. Unknown tokens, and tokens of other clients, are answered 200 all the same (RFC 7009
§2.2), so the endpoint tells nobody whether a token exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .answers import NO_STORE, Answer, error_answer, require_form_post, split_form
from .assertions import AssertionVerifier
from .errors import INVALID_REQUEST, OAuthError
from .sessions import LoginStore
from .stats import Stats
from .tokens import TokenIssuer

log = logging.getLogger(__name__)

ACCESS_TOKEN_HINT = "access_token"  # noqa: S105 - a hint name, not a secret


class RevocationEndpoint:
    def __init__(
        self,
        *,
        url: str,
        assertions: AssertionVerifier,
        store: LoginStore,
        tokens: TokenIssuer,
        stats: Stats,
    ) -> None:
        self._url = url
        self._assertions = assertions
        self._store = store
        self._tokens = tokens
        self._stats = stats

    def handle(self, *, method: str, form: Sequence[tuple[str, str]] | None) -> Answer:
        client_id: str | None = None
        try:
            params, _ = split_form(require_form_post(method, form, "revocation"))
            authenticated = self._assertions.verify(params, endpoint=self._url)
            client_id = authenticated.client.client_id
            self._assertions.spend(authenticated)
            token = params.get("token")
            if not token:
                raise OAuthError(INVALID_REQUEST, "token is required")
        except OAuthError as error:
            self._stats.errors_by_code[error.error] += 1
            log.info("revocation refused (client %s): %s", client_id or "?", error)
            return error_answer(error)

        # token_type_hint only says where to look first (RFC 7009 §2.1); both kinds are tried.
        kinds = [self._revoke_refresh_token, self._revoke_access_token]
        if params.get("token_type_hint") == ACCESS_TOKEN_HINT:
            kinds.reverse()
        revoked = any(revoke(token, client_id) for revoke in kinds)
        self._stats.revocations += 1
        log.info("revocation by client %s: %s", client_id, "revoked" if revoked else "nothing to revoke")
        return Answer(200, None, NO_STORE)

    def _revoke_refresh_token(self, token: str, client_id: str) -> bool:
        entry = self._store.refresh_entry(token)
        if entry is None or entry[0].client_id != client_id:
            return False
        self._store.revoke_family(entry[0])
        return True

    def _revoke_access_token(self, token: str, client_id: str) -> bool:
        claims = self._tokens.verify_access_token(token)
        if claims is None or claims.get("client_id") != client_id:
            return False
        self._store.revoke_access_token(claims["jti"], float(claims["exp"]))
        return True
