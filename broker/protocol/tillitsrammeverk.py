"""The trust framework's attest (tillitsrammeverk): `nhn:tillitsrammeverk:parameters`, rendered from a care
context.

The shape (research/nhn-apis.md §1, from NorskHelsenett/Tillitsrammeverk and NHN's samples): every leaf is
`{"id" | "code": ..., "system": ...}`; the practitioner (HPR authorisation, legal entity, point of care,
department), the care relationship (healthcare service, purpose of use and its details, the access
decision's reference and whether the user made it). The patient's national id is not part of it (it travels
in the API's headers). Which fields the broker requires: the ones HelseID's profile and the research note
mark as required; the department is left out when not given (RARMETA requires it, NHN's own journal-document
sample omits it).

HelseID takes the attest in the client assertion of a code or refresh grant (then in that one token) or in
the request object of a login (then in every token of the session), never both: `HID-DOUBLE-STRUCTURE`.
The attest is health information: a token that carries it is cached under a key with the hash of its
canonical form (`attest_hash`), so it is never served for another patient, purpose or decision.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from broker.errors import InvalidRequestError
from broker.model import CareContext
from broker.protocol.care import HPR_AUTHORIZATION_SYSTEM, PREFIX

ATTEST_TYPE: Final = "nhn:tillitsrammeverk:parameters"
ORGANISATION_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.101"
DEPARTMENT_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.4.102"
HEALTHCARE_SERVICE_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.8666"
PURPOSE_OF_USE_SYSTEM: Final = "urn:oid:2.16.840.1.113883.1.11.20448"
PURPOSE_DETAILS_SYSTEM: Final = "urn:AuditEventHL7Norway/CodeSystem/carerelation"

# What an attest needs, by its path in the request's care context.
REQUIRED: Final = (
    "practitioner.authorization",
    "practitioner.legal_entity",
    "practitioner.point_of_care",
    "care_relationship.healthcare_service",
    "care_relationship.purpose_of_use",
    "care_relationship.purpose_of_use_details",
    "care_relationship.decision_ref",
)


def render_attest(care: CareContext) -> dict[str, Any]:
    """The attest of a care context already checked by `care.check_care_context`; InvalidRequestError names
    every field an attest needs and the context lacks."""
    practitioner, relationship = care.practitioner, care.care_relationship
    given = {
        "practitioner.authorization": practitioner.authorization,
        "practitioner.legal_entity": practitioner.legal_entity,
        "practitioner.point_of_care": practitioner.point_of_care,
        "care_relationship.healthcare_service": relationship.healthcare_service,
        "care_relationship.purpose_of_use": relationship.purpose_of_use,
        "care_relationship.purpose_of_use_details": relationship.purpose_of_use_details,
        "care_relationship.decision_ref": relationship.decision_ref,
    }
    missing = [
        (f"{PREFIX}.{path}", "is required for the trust-framework attest")
        for path in REQUIRED
        if not given[path]
    ]
    if missing:
        raise InvalidRequestError(missing[0][0], missing[0][1], violations=missing)
    rendered_practitioner: dict[str, Any] = {
        "authorization": {"code": practitioner.authorization, "system": HPR_AUTHORIZATION_SYSTEM},
        "legal_entity": {"id": practitioner.legal_entity, "system": ORGANISATION_SYSTEM},
        "point_of_care": {"id": practitioner.point_of_care, "system": ORGANISATION_SYSTEM},
    }
    if practitioner.department:
        rendered_practitioner["department"] = {"id": practitioner.department, "system": DEPARTMENT_SYSTEM}
    return {
        "type": ATTEST_TYPE,
        "practitioner": rendered_practitioner,
        "care_relationship": {
            "healthcare_service": {
                "code": relationship.healthcare_service,
                "system": HEALTHCARE_SERVICE_SYSTEM,
            },
            "purpose_of_use": {"code": relationship.purpose_of_use, "system": PURPOSE_OF_USE_SYSTEM},
            "purpose_of_use_details": {
                "code": relationship.purpose_of_use_details,
                "system": PURPOSE_DETAILS_SYSTEM,
            },
            "decision_ref": {"id": relationship.decision_ref, "user_selected": relationship.user_selected},
        },
    }


def attest_hash(attest: dict[str, Any]) -> str:
    """SHA-256 of the attest's canonical JSON (sorted keys, no spaces): equal attests, equal hashes."""
    canonical = json.dumps(attest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
