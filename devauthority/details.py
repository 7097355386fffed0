"""``assertion_details``: the org numbers and SFM journal id a client asks a token to carry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import INVALID_REQUEST, OAuthError
from .registry import RegisteredClient, is_orgnr

ASSERTION_DETAILS = "assertion_details"
# The older name, still accepted by HelseID; sending both is an error (UPH sfm-id for multi-tenant).
AUTHORIZATION_DETAILS = "authorization_details"

HELSEID_AUTHORIZATION = "helseid_authorization"
JOURNAL_ID_TYPE = "nhn:sfm:journal-id"

MULTI_TENANT_SYSTEM = "urn:oid:1.0.6523"
SINGLE_TENANT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
# An old, wrong ENH OID that an NHN sample still uses; named so the error can point at the fix.
WRONG_ENH_SYSTEM = "urn:oid:2.16.578.1.12.4.1.2.101"
MULTI_TENANT_PREFIX = "NO:ORGNR:"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class RequestedDetails:
    """What the token will say about organisations and the SFM journal."""

    orgnr_parent: str | None = None
    orgnr_child: str | None = None
    journal_id: str | None = None


def carries_org_details(claims: Mapping[str, Any]) -> bool:
    """Whether a details claim names an org or an SFM journal (what HID-1009 refuses on code redemption).

    Other types (e.g. ``nhn:tillitsrammeverk:parameters``) are not org details and do not count.
    """
    raw = claims.get(ASSERTION_DETAILS, claims.get(AUTHORIZATION_DETAILS))
    if raw is None:
        return False
    items = raw if isinstance(raw, list) else [raw]
    return any(
        not isinstance(item, Mapping) or item.get("type") in (HELSEID_AUTHORIZATION, JOURNAL_ID_TYPE)
        for item in items
    )


def read_details(claims: Mapping[str, Any], client: RegisteredClient) -> RequestedDetails:
    """Read and check the details claim of a verified client assertion, or raise ``invalid_request``."""
    if ASSERTION_DETAILS in claims and AUTHORIZATION_DETAILS in claims:
        raise _fail(f"send either {ASSERTION_DETAILS} or {AUTHORIZATION_DETAILS}, not both")
    raw = claims.get(ASSERTION_DETAILS, claims.get(AUTHORIZATION_DETAILS))
    # A single-tenant client's own org is the token's parent org whether or not it sends details.
    default_parent = client.organization_number if client.tenancy == "single" else None
    if raw is None:
        return RequestedDetails(orgnr_parent=default_parent)

    items = raw if isinstance(raw, list) else [raw]
    authorization: Mapping[str, Any] | None = None
    journal: Mapping[str, Any] | None = None
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise _fail("each details object must be a JSON object with a string type")
        # Other types (e.g. nhn:tillitsrammeverk:parameters) are for other grants or APIs; ignored here.
        if item["type"] == HELSEID_AUTHORIZATION:
            if authorization is not None:
                raise _fail(f"only one {HELSEID_AUTHORIZATION} object may be sent")
            authorization = item
        elif item["type"] == JOURNAL_ID_TYPE:
            if journal is not None:
                raise _fail(f"only one {JOURNAL_ID_TYPE} object may be sent")
            journal = item

    parent, child = default_parent, None
    if authorization is not None:
        identifier = _identifier(authorization)
        if client.tenancy == "multi":
            parent, child = _multi_tenant_orgs(identifier, client)
        else:
            child = _single_tenant_child(identifier, client)
    journal_id = _journal_id(journal) if journal is not None else None
    return RequestedDetails(orgnr_parent=parent, orgnr_child=child, journal_id=journal_id)


def _identifier(authorization: Mapping[str, Any]) -> Mapping[str, Any]:
    node: Any = authorization
    for name in ("practitioner_role", "organization", "identifier"):
        node = node.get(name) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping) or not isinstance(node.get("system"), str):
        raise _fail(f"{HELSEID_AUTHORIZATION} must carry practitioner_role.organization.identifier.system")
    if not isinstance(node.get("value"), str):
        raise _fail(f"{HELSEID_AUTHORIZATION} identifier value must be a string")
    return node


def _multi_tenant_orgs(identifier: Mapping[str, Any], client: RegisteredClient) -> tuple[str, str | None]:
    system, value = identifier["system"], identifier["value"]
    if system != MULTI_TENANT_SYSTEM:
        raise _fail(f"a multi-tenant client must use identifier system {MULTI_TENANT_SYSTEM}")
    if not value.startswith(MULTI_TENANT_PREFIX):
        raise _fail(f"multi-tenant identifier value must be {MULTI_TENANT_PREFIX}<parent>[:<child>]")
    parts = value.removeprefix(MULTI_TENANT_PREFIX).split(":")
    # "NO:ORGNR:<parent>" (the Java library) and "NO:ORGNR:<parent>:" (the .NET library) both mean
    # "no child"; anything with more parts is malformed.
    if len(parts) > 2:
        raise _fail(f"multi-tenant identifier value must be {MULTI_TENANT_PREFIX}<parent>[:<child>]")
    parent = parts[0]
    child = parts[1] if len(parts) == 2 and parts[1] else None
    _check_orgnr(parent, "parent")
    if child is not None:
        _check_orgnr(child, "child")
    # HelseID checks an Altinn delegation from the parent to the supplier; the registry stands in for it.
    if client.delegations is not None and parent not in client.delegations:
        raise _fail(
            f"HID-1001: organization {parent} has not delegated access to client {client.client_id!r}"
        )
    return parent, child


def _single_tenant_child(identifier: Mapping[str, Any], client: RegisteredClient) -> str:
    system, value = identifier["system"], identifier["value"]
    if system == WRONG_ENH_SYSTEM:
        raise _fail(f"{WRONG_ENH_SYSTEM} is an outdated ENH OID; use {SINGLE_TENANT_SYSTEM}")
    if system != SINGLE_TENANT_SYSTEM:
        raise _fail(f"a single-tenant client must use identifier system {SINGLE_TENANT_SYSTEM}")
    _check_orgnr(value, "child")
    if value not in client.child_organizations:
        raise _fail(
            f"HID-1002: child organization {value} is not whitelisted for client {client.client_id!r}"
        )
    return str(value)


def _journal_id(journal: Mapping[str, Any]) -> str:
    value = journal.get("value")
    journal_id = value.get("journal_id") if isinstance(value, Mapping) else None
    if not isinstance(journal_id, str) or not _UUID.fullmatch(journal_id):
        raise _fail(f"{JOURNAL_ID_TYPE} must carry value.journal_id as a UUID")
    return journal_id


def _check_orgnr(value: str, role: str) -> None:
    if not is_orgnr(value):
        raise _fail(f"HID-1004: the {role} organization number must be 9 digits")


def _fail(description: str) -> OAuthError:
    return OAuthError(INVALID_REQUEST, description)
