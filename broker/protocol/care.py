"""The care context of a request to an NHN API, checked against its code systems and check digits.

Sources (../shared/research/nhn-apis.md): a national id is a fødselsnummer or a D-nummer (4 added to the
first digit), 11 digits whose last two are mod-11 check digits; an organisation number is 9 digits with a
mod-11 check digit; the access bases are PPS's; purposes of use are HL7's TREAT, ETREAT and COC; HPR
authorisations are code system 9060's short codes. Every mistake is reported at once, by its path in the
request (`care_context.patient_id`), and never with its value: a national id is health data.
"""

from __future__ import annotations

from typing import Final

from broker.errors import InvalidRequestError
from broker.model import CareContext

ACCESS_BASES: Final = frozenset({"UNNTAK", "SAMTYKKE", "FORHOYET_SAMTYKKE", "AKUTT", "FORHOYET_AKUTT"})
PURPOSES_OF_USE: Final = frozenset({"TREAT", "ETREAT", "COC"})
# Helsepersonellregisteret's authorisation categories (code system 2.16.578.1.12.4.1.1.9060).
HPR_AUTHORIZATIONS: Final = frozenset(
    {
        "AA", "AP", "AU", "BI", "ET", "FB", "FO", "FT", "HE", "HF", "HP", "JO", "KE", "KI", "LE", "MR",
        "NP", "OA", "OI", "OP", "OR", "OS", "PE", "PM", "PS", "RA", "SP", "TH", "TL", "TP", "TT", "VE", "XX",
    }
)  # fmt: skip
HPR_AUTHORIZATION_SYSTEM: Final = "urn:oid:2.16.578.1.12.4.1.1.9060"
PREFIX: Final = "care_context"

_NATIONAL_ID_WEIGHTS: Final = ((3, 7, 6, 1, 8, 9, 4, 5, 2), (5, 4, 3, 2, 7, 6, 5, 4, 3, 2))
_ORGNR_WEIGHTS: Final = (3, 2, 7, 6, 5, 4, 3, 2)


def check_care_context(care: CareContext) -> None:
    """Raises InvalidRequestError listing every field that breaks its rule; empty fields are not checked
    here (which ones an API needs is `api_headers.require`)."""
    problems: list[tuple[str, str]] = []

    def problem(field: str, message: str) -> None:
        problems.append((f"{PREFIX}.{field}", message))

    if care.patient_id and not is_national_id(care.patient_id):
        problem("patient_id", "is not a valid national id (fødselsnummer or D-nummer: 11 digits, mod-11)")
    practitioner = care.practitioner
    if practitioner.authorization and practitioner.authorization not in HPR_AUTHORIZATIONS:
        problem("practitioner.authorization", "is not an HPR authorisation code (code system 9060)")
    for name in ("legal_entity", "point_of_care"):
        value = getattr(practitioner, name)
        if value and not is_organisation_number(value):
            problem(f"practitioner.{name}", "is not a valid organisation number (9 digits, mod-11)")
    relationship = care.care_relationship
    if relationship.purpose_of_use and relationship.purpose_of_use not in PURPOSES_OF_USE:
        problem("care_relationship.purpose_of_use", "must be TREAT, ETREAT or COC")
    if care.access_basis and care.access_basis not in ACCESS_BASES:
        problem("access_basis", "must be one of " + ", ".join(sorted(ACCESS_BASES)))
    if care.source_system and not 3 <= len(care.source_system) <= 512:
        problem("source_system", "must be 3 to 512 characters")
    if problems:
        raise InvalidRequestError(problems[0][0], problems[0][1], violations=problems)


def is_national_id(value: str) -> bool:
    """A fødselsnummer or D-nummer: 11 digits, the two last the mod-11 check digits of the ones before."""
    if len(value) != 11 or not value.isdigit():
        return False
    digits = [int(character) for character in value]
    for weights, position in zip(_NATIONAL_ID_WEIGHTS, (9, 10), strict=True):
        check = _mod11(digits[:position], weights)
        if check is None or check != digits[position]:
            return False
    return True


def is_organisation_number(value: str) -> bool:
    if len(value) != 9 or not value.isdigit():
        return False
    digits = [int(character) for character in value]
    return _mod11(digits[:8], _ORGNR_WEIGHTS) == digits[8]


def _mod11(digits: list[int], weights: tuple[int, ...]) -> int | None:
    """The mod-11 check digit, or None where none exists (a remainder of 1 gives 10)."""
    remainder = sum(d * w for d, w in zip(digits, weights, strict=True)) % 11
    check = (11 - remainder) % 11
    return None if check == 10 else check
