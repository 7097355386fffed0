"""The trust framework's attest, ``nhn:tillitsrammeverk:parameters``, checked as HelseID checks it.

The attest is one object among the structured details: in the client assertion (``assertion_details``, or
``authorization_details``) of an ``authorization_code`` or ``refresh_token`` grant, it goes into that one
access token; in the request object of a pushed login (``authorization_details``), into every access token
of that login. Both at once is ``access_denied`` with ``HID-DOUBLE-STRUCTURE`` (HelseID's trust-framework
profile). The token carries it as HelseID does: a claim ``authorization_details`` holding the attest.

Shape (research note, NHN's Tillitsrammeverk repository and samples): every leaf is
``{"id" | "code": ..., "system": ...}``::

    practitioner:      identifier?, authorization, legal_entity, point_of_care, department?
    care_relationship: healthcare_service, purpose_of_use, purpose_of_use_details,
                       decision_ref {id, user_selected}
    patients?:         [ {point_of_care, department?} ]

Error descriptions name the member's path and what it must be, never the value sent: the attest is
health information and ``practitioner.identifier.id`` is a national id.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .details import ASSERTION_DETAILS, AUTHORIZATION_DETAILS
from .errors import ACCESS_DENIED, INVALID_REQUEST, OAuthError
from .stats import AttestStats

ATTEST_TYPE = "nhn:tillitsrammeverk:parameters"
# The access token's claim, an array of the attest object(s), as HelseID issues it.
CLAIM_AUTHORIZATION_DETAILS = "authorization_details"
DOUBLE_STRUCTURE = "HID-DOUBLE-STRUCTURE"

PERSON_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"  # national id (fnr / dnr)
HPR_AUTHORIZATION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.9060"
ORGANISATION_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"  # Enhetsregisteret
DEPARTMENT_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.102"  # RESH
HEALTHCARE_SERVICE_SYSTEM = "urn:oid:2.16.578.1.12.4.1.1.8666"
PURPOSE_OF_USE_SYSTEM = "urn:oid:2.16.840.1.113883.1.11.20448"
PURPOSE_OF_USE_DETAILS_SYSTEM = "urn:AuditEventHL7Norway/CodeSystem/carerelation"
PURPOSE_OF_USE_CODES = ("TREAT", "ETREAT", "COC")

_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only, not \d
_ORGNR_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)
_PID_WEIGHTS_1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
_PID_WEIGHTS_2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True)
class Attest:
    """A checked attest object, as the client sent it."""

    value: Mapping[str, Any]

    def claim(self) -> list[dict[str, Any]]:
        """The access token's ``authorization_details``: an array holding the attest."""
        return [dict(self.value)]


def attest_in_assertion(claims: Mapping[str, Any], stats: AttestStats) -> Attest | None:
    """The attest of a client assertion's details claim, checked; None if it has none."""
    if ASSERTION_DETAILS in claims and AUTHORIZATION_DETAILS in claims:
        raise OAuthError(
            INVALID_REQUEST, f"send either {ASSERTION_DETAILS} or {AUTHORIZATION_DETAILS}, not both"
        )
    return find_attest(claims.get(ASSERTION_DETAILS, claims.get(AUTHORIZATION_DETAILS)), stats)


def find_attest(raw: object, stats: AttestStats) -> Attest | None:
    """The attest among structured details (one object or an array of them), checked; None if absent.

    A refused attest counts in ``stats.invalid``; an accepted one is counted by the caller, which knows
    where it came from.
    """
    if raw is None:
        return None
    items = raw if isinstance(raw, list) else [raw]
    found = [item for item in items if isinstance(item, Mapping) and item.get("type") == ATTEST_TYPE]
    if not found:
        return None
    try:
        if len(found) > 1:
            raise _fail(f"only one {ATTEST_TYPE} object may be sent")
        check_attest(found[0])
    except OAuthError:
        stats.invalid += 1
        raise
    return Attest(found[0])


def double_structure() -> OAuthError:
    """The answer to an attest both in the login's request object and in this grant's client assertion."""
    return OAuthError(
        ACCESS_DENIED,
        f"{DOUBLE_STRUCTURE}: the {ATTEST_TYPE} attest was sent both in the login's request object and in "
        "this grant's client assertion; send it in one of them",
    )


def check_attest(attest: Mapping[str, Any]) -> None:
    """Check an attest's shape, systems and codes, or raise ``invalid_request`` naming the member."""
    practitioner = _object(attest, "practitioner", "practitioner")
    _leaf(practitioner, "practitioner.identifier", "id", PERSON_SYSTEM, _national_id, required=False)
    _leaf(practitioner, "practitioner.authorization", "code", HPR_AUTHORIZATION_SYSTEM, _code)
    _leaf(practitioner, "practitioner.legal_entity", "id", ORGANISATION_SYSTEM, _orgnr)
    _leaf(practitioner, "practitioner.point_of_care", "id", ORGANISATION_SYSTEM, _orgnr)
    _leaf(practitioner, "practitioner.department", "id", DEPARTMENT_SYSTEM, _code, required=False)

    care = _object(attest, "care_relationship", "care_relationship")
    _leaf(care, "care_relationship.healthcare_service", "code", HEALTHCARE_SERVICE_SYSTEM, _code)
    _leaf(care, "care_relationship.purpose_of_use", "code", PURPOSE_OF_USE_SYSTEM, _purpose_of_use)
    _leaf(care, "care_relationship.purpose_of_use_details", "code", PURPOSE_OF_USE_DETAILS_SYSTEM, _code)
    decision = _object(care, "decision_ref", "care_relationship.decision_ref")
    if not _code(decision.get("id")):
        raise _fail("care_relationship.decision_ref.id is required (a non-empty string)")
    if not isinstance(decision.get("user_selected"), bool):
        raise _fail("care_relationship.decision_ref.user_selected is required (true or false)")

    if "patients" in attest:
        patients = attest["patients"]
        if not isinstance(patients, list):
            raise _fail("patients must be an array")
        for index, patient in enumerate(patients):
            path = f"patients[{index}]"
            if not isinstance(patient, Mapping):
                raise _fail(f"{path} must be an object")
            _leaf(patient, f"{path}.point_of_care", "id", ORGANISATION_SYSTEM, _orgnr)
            _leaf(patient, f"{path}.department", "id", DEPARTMENT_SYSTEM, _code, required=False)


# What each value must be, as the error says it; the checks return whether the value passes.
_Check = Callable[[object], bool]


def _code(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _purpose_of_use(value: object) -> bool:
    return value in PURPOSE_OF_USE_CODES


def _orgnr(value: object) -> bool:
    """Nine digits whose last is the mod-11 check digit (weights 3 2 7 6 5 4 3 2)."""
    if not isinstance(value, str) or len(value) != 9 or not _DIGITS.fullmatch(value):
        return False
    digits = [int(c) for c in value]
    return _mod11(digits[:8], _ORGNR_WEIGHTS) == digits[8]


def _national_id(value: object) -> bool:
    """Eleven digits with both mod-11 check digits valid (a fødselsnummer or D-number)."""
    if not isinstance(value, str) or len(value) != 11 or not _DIGITS.fullmatch(value):
        return False
    digits = [int(c) for c in value]
    return (
        _mod11(digits[:9], _PID_WEIGHTS_1) == digits[9] and _mod11(digits[:10], _PID_WEIGHTS_2) == digits[10]
    )


def _mod11(digits: list[int], weights: tuple[int, ...]) -> int:
    """The mod-11 check digit, or -1 where none exists (a remainder of 1)."""
    check = 11 - sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    return 0 if check == 11 else (-1 if check == 10 else check)


_MUST_BE: dict[_Check, str] = {
    _code: "a non-empty string",
    _purpose_of_use: " or ".join([", ".join(PURPOSE_OF_USE_CODES[:-1]), PURPOSE_OF_USE_CODES[-1]]),
    _orgnr: "an organisation number (9 digits with a valid mod-11 check digit)",
    _national_id: "a national id (11 digits with valid mod-11 check digits)",
}


def _object(parent: Mapping[str, Any], name: str, path: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if value is None:
        raise _fail(f"{path} is required")
    if not isinstance(value, Mapping):
        raise _fail(f"{path} must be an object")
    return value


def _leaf(
    parent: Mapping[str, Any], path: str, key: str, system: str, check: _Check, *, required: bool = True
) -> None:
    name = path.rsplit(".", 1)[-1]
    if parent.get(name) is None and not required:
        return
    leaf = _object(parent, name, path)
    if leaf.get(key) is None:
        raise _fail(f"{path}.{key} is required")
    if not check(leaf[key]):
        raise _fail(f"{path}.{key} must be {_MUST_BE[check]}")
    if leaf.get("system") != system:
        raise _fail(f"{path}.system must be {system}")


def _fail(description: str) -> OAuthError:
    return OAuthError(INVALID_REQUEST, f"{ATTEST_TYPE}: {description}")
