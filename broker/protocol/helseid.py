"""The HelseID profile: the structured claims that say which organisation a token is for.

Organisation numbers and the SFM journal id travel in the client assertion, as objects of one claim
(helseid.md §3); the access token then carries them as plain claims, whose names are defined here for the
modules that read tokens. Sources: NHN utviklerportal "organisasjonsnumre" and "sfm-id for multi-tenant-
klienter"; HelseID.Library (LIB) and HelseID.Library.Java (JAVA).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from broker.errors import InvalidRequestError
from broker.model import Tenancy

# The client-assertion claim that holds the detail objects. HelseID still accepts the older name, but a
# request carrying both is refused, so the broker only ever writes ASSERTION_DETAILS_CLAIM.
ASSERTION_DETAILS_CLAIM: Final = "assertion_details"
AUTHORIZATION_DETAILS_CLAIM: Final = "authorization_details"

# Detail object types. Note the hyphen in the journal-id type and the underscore in its `journal_id` key.
HELSEID_AUTHORIZATION_TYPE: Final = "helseid_authorization"
SFM_JOURNAL_ID_TYPE: Final = "nhn:sfm:journal-id"

# Identifier systems. ENH (Enhetsregisteret) is `...4.1.4.101`; one NHN sample uses `...4.1.2.101`, an old,
# wrong OID. ISO 6523 is the system of a multi-tenant client's `NO:ORGNR:<parent>:<child>` values.
OID_ENH: Final = "urn:oid:2.16.578.1.12.4.1.4.101"
OID_ISO_6523: Final = "urn:oid:1.0.6523"
IDENTIFIER_TYPE_ENH: Final = "ENH"

# Claims HelseID puts in access tokens.
CLAIM_ORGNR_PARENT: Final = "helseid://claims/client/claims/orgnr_parent"
CLAIM_ORGNR_CHILD: Final = "helseid://claims/client/claims/orgnr_child"
CLAIM_ORGNR_SUPPLIER: Final = "helseid://claims/client/claims/orgnr_supplier"
CLAIM_CLIENT_TENANCY: Final = "helseid://claims/client/client_tenancy"
CLAIM_SFM_JOURNAL_ID: Final = "nhn:sfm:journal-id"
CLAIM_SFM_ID: Final = "e-helse:sfm.api/client/claims/sfm-id"
CLIENT_TENANCY_MULTI: Final = "multi-tenant"

_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def validate_orgnr(value: str, field: str) -> str:
    """`value` if it is a Norwegian organisation number (9 digits); else InvalidRequestError(field)."""
    # isascii() too: str.isdigit() is also true for the digits of other scripts and for superscripts.
    if not isinstance(value, str) or len(value) != 9 or not (value.isascii() and value.isdigit()):
        raise InvalidRequestError(field, "must be an organisation number of exactly 9 digits")
    return value


def validate_journal_id(value: str, field: str) -> str:
    """`value` as a canonical lower-case UUID (8-4-4-4-12 hex digits); else InvalidRequestError(field)."""
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise InvalidRequestError(field, "must be a UUID such as 3fa85f64-5717-4562-b3fc-2c963f66afa6")
    return value.lower()


def build_assertion_details(
    tenancy: Tenancy,
    *,
    orgnr_parent: str | None,
    orgnr_child: str | None,
    sfm_journal_id: str | None,
) -> tuple[dict[str, Any], ...]:
    """The detail objects for a client assertion's `assertion_details`; empty when there is nothing to say.

    Multi-tenant: the parent (and child) as an ISO 6523 identifier. Single-tenant: only a child, as an ENH
    identifier; HelseID fills in the parent from the client registration, so a parent given here is checked
    but left out. Raises InvalidRequestError naming the malformed or missing field.
    """
    details: list[dict[str, Any]] = []
    organization = _organization_identifier(tenancy, orgnr_parent, orgnr_child)
    if organization is not None:
        details.append(_helseid_authorization(organization))
    if sfm_journal_id is not None:
        journal_id = validate_journal_id(sfm_journal_id, "sfm_journal_id")
        details.append({"type": SFM_JOURNAL_ID_TYPE, "value": {"journal_id": journal_id}})
    return tuple(details)


def canonical_details_hash(details: Sequence[Mapping[str, Any]]) -> str:
    """base64url(SHA-256) of the details as compact, key-sorted JSON; "" for none. Equal details, equal hash,
    whatever their key order, so it can be part of a cache key."""
    if not details:
        return ""
    text = json.dumps([dict(item) for item in details], sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _organization_identifier(
    tenancy: Tenancy, orgnr_parent: str | None, orgnr_child: str | None
) -> dict[str, str] | None:
    parent = None if orgnr_parent is None else validate_orgnr(orgnr_parent, "orgnr_parent")
    child = None if orgnr_child is None else validate_orgnr(orgnr_child, "orgnr_child")
    if tenancy is Tenancy.SINGLE:
        return None if child is None else _identifier(OID_ENH, child)
    if parent is None:
        if child is not None:
            raise InvalidRequestError("orgnr_parent", "a multi-tenant client must name the parent of a child")
        return None
    # With no child, LIB sends "NO:ORGNR:<parent>:" (trailing colon) and JAVA "NO:ORGNR:<parent>". We send
    # JAVA's form: it is the well-formed one, and no source says HelseID reads the two differently.
    value = f"NO:ORGNR:{parent}" if child is None else f"NO:ORGNR:{parent}:{child}"
    return _identifier(OID_ISO_6523, value)


def _identifier(system: str, value: str) -> dict[str, str]:
    return {"system": system, "type": IDENTIFIER_TYPE_ENH, "value": value}


def _helseid_authorization(identifier: dict[str, str]) -> dict[str, Any]:
    return {
        "type": HELSEID_AUTHORIZATION_TYPE,
        "practitioner_role": {"organization": {"identifier": identifier}},
    }
