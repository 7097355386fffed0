"""The one error type of the dev authority: an OAuth error answered as HelseID answers it."""

from __future__ import annotations

from collections.abc import Mapping

# Error codes, named once so a typo cannot invent a new one.
INVALID_REQUEST = "invalid_request"
INVALID_CLIENT = "invalid_client"
INVALID_GRANT = "invalid_grant"
INVALID_SCOPE = "invalid_scope"
INVALID_TARGET = "invalid_target"
INVALID_DPOP_PROOF = "invalid_dpop_proof"
USE_DPOP_NONCE = "use_dpop_nonce"
UNAUTHORIZED_CLIENT = "unauthorized_client"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
UNSUPPORTED_RESPONSE_TYPE = "unsupported_response_type"
INVALID_REQUEST_OBJECT = "invalid_request_object"  # RFC 9101 §6.3
INVALID_REQUEST_URI = "invalid_request_uri"  # RFC 9101 §6.3: an unknown, used or expired request_uri
TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
ACCESS_DENIED = "access_denied"  # e.g. HID-DOUBLE-STRUCTURE: the attest sent twice


class OAuthError(Exception):
    """An error the token endpoint answers with ``{"error", "error_description"}``.

    HelseID answers every token-endpoint error with HTTP 400, ``invalid_client`` included (not the 401 that
    RFC 6749 allows), so 400 is the default. Descriptions name claims, client ids and org numbers only:
    they are sent to the caller and logged, so they must never quote an assertion, proof, token or key.
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        *,
        status: int = 400,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, str]:
        """The JSON body of the error response."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body
