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
from .users import (
    CLAIM_ASSURANCE_LEVEL,
    CLAIM_HPR_NUMBER,
    CLAIM_NETWORK,
    CLAIM_PID,
    CLAIM_PID_PSEUDONYM,
    CLAIM_SECURITY_LEVEL,
    STANDARD_IDENTITY_SCOPES,
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

    Unlike HelseID's prod snapshot (``false``), PAR is required: new HelseID clients that log users in
    must use it, and a dev authority that allowed the old way would let a client skip it unnoticed.
    """
    return {
        "issuer": issuer,
        "jwks_uri": issuer + JWKS_PATH,
        "authorization_endpoint": issuer + AUTHORIZE_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "pushed_authorization_request_endpoint": issuer + PAR_PATH,
        "revocation_endpoint": issuer + REVOCATION_PATH,
        "require_pushed_authorization_requests": True,
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": True,
        "request_uri_parameter_supported": True,
        "request_object_signing_alg_values_supported": list(APPROVED_ALGORITHMS),
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": sorted(grant_types),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "scopes_supported": list(STANDARD_IDENTITY_SCOPES),
        "id_token_signing_alg_values_supported": [SIGNING_ALG],
        # HelseID accepts nothing but private_key_jwt, whatever its own document still lists.
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(APPROVED_ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": ["private_key_jwt"],
        "revocation_endpoint_auth_signing_alg_values_supported": list(APPROVED_ALGORITHMS),
        "dpop_signing_alg_values_supported": list(APPROVED_ALGORITHMS),
        "claims_supported": [
            "sub",
            "sid",
            "name",
            "given_name",
            "middle_name",
            "family_name",
            "idp",
            "amr",
            CLAIM_PID,
            CLAIM_PID_PSEUDONYM,
            CLAIM_SECURITY_LEVEL,
            CLAIM_ASSURANCE_LEVEL,
            CLAIM_NETWORK,
            CLAIM_HPR_NUMBER,
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
