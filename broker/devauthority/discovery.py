"""The OpenID Provider metadata document, shaped like HelseID's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .algorithms import APPROVED_ALGORITHMS
from .tokens import (
    CLAIM_CLIENT_AMR,
    CLAIM_JOURNAL_ID,
    CLAIM_ORGNR_CHILD,
    CLAIM_ORGNR_PARENT,
    CLAIM_ORGNR_SUPPLIER,
    CLAIM_SFM_ID,
    CLAIM_TENANCY,
    SIGNING_ALG,
)

# Paths relative to the issuer, as in HelseID's discovery document.
DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/.well-known/openid-configuration/jwks"
TOKEN_PATH = "/connect/token"  # noqa: S105 - a path, not a secret
PAR_PATH = "/connect/par"
AUTHORIZE_PATH = "/connect/authorize"
REVOCATION_PATH = "/connect/revocation"


def discovery_document(issuer: str, grant_types: Iterable[str]) -> dict[str, Any]:
    """Metadata for ``issuer`` (no trailing slash, as HelseID gives it).

    PAR, authorize and revocation are listed so clients can be written against them now; the dev
    authority answers them with 501 until they are built.
    """
    return {
        "issuer": issuer,
        "jwks_uri": issuer + JWKS_PATH,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "pushed_authorization_request_endpoint": issuer + PAR_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "require_pushed_authorization_requests": False,
        "authorization_response_iss_parameter_supported": True,
        "grant_types_supported": sorted(grant_types),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        # HelseID accepts nothing but private_key_jwt, whatever its own document still lists.
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(APPROVED_ALGORITHMS),
        "dpop_signing_alg_values_supported": list(APPROVED_ALGORITHMS),
        "claims_supported": [
            "client_id",
            CLAIM_CLIENT_AMR,
            CLAIM_TENANCY,
            CLAIM_ORGNR_PARENT,
            CLAIM_ORGNR_CHILD,
            CLAIM_ORGNR_SUPPLIER,
            CLAIM_JOURNAL_ID,
            CLAIM_SFM_ID,
        ],
    }
