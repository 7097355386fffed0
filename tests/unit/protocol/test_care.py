"""The care context's rules (national ids, organisation numbers, code lists) and each API's headers."""

from __future__ import annotations

import json
import random
from urllib.parse import unquote

import pytest

from broker.errors import InvalidRequestError
from broker.model import CareContext, CareRelationship, Practitioner
from broker.protocol.api_headers import KJERNEJOURNAL_REGULATION_SCOPE, api_headers
from broker.protocol.care import check_care_context, is_national_id, is_organisation_number


def national_id(day: int, month: int, year: int, individual: int) -> str | None:
    """An 11-digit national id made the way Skatteetaten describes it (None when no check digit exists):
    written apart from the code under test, as the reference it is checked against."""
    base = f"{day:02d}{month:02d}{year % 100:02d}{individual:03d}"
    k1 = 11 - sum(int(d) * w for d, w in zip(base, [3, 7, 6, 1, 8, 9, 4, 5, 2], strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    if k1 == 10:
        return None
    with_k1 = base + str(k1)
    k2 = 11 - sum(int(d) * w for d, w in zip(with_k1, [5, 4, 3, 2, 7, 6, 5, 4, 3, 2], strict=True)) % 11
    k2 = 0 if k2 == 11 else k2
    return None if k2 == 10 else with_k1 + str(k2)


def some_ids(count: int, *, d_number: bool) -> list[str]:
    rng = random.Random(7)
    found: list[str] = []
    while len(found) < count:
        day = rng.randint(1, 28) + (40 if d_number else 0)
        made = national_id(day, rng.randint(1, 12), rng.randint(1930, 2020), rng.randint(0, 999))
        if made is not None:
            found.append(made)
    return found


@pytest.mark.parametrize("d_number", [False, True])
def test_national_ids_with_their_check_digits_pass_and_every_single_digit_change_fails(
    d_number: bool,
) -> None:
    ids = some_ids(200, d_number=d_number)
    assert all(is_national_id(value) for value in ids)
    broken = 0
    for value in ids[:40]:
        for position in range(11):
            for digit in "0123456789":
                if digit == value[position]:
                    continue
                changed = value[:position] + digit + value[position + 1 :]
                # Mod-11 catches every single-digit error.
                assert not is_national_id(changed), (position, digit)
                broken += 1
    print(f"{'D-numbers' if d_number else 'fødselsnumre'}: 200 valid, {broken} single-digit errors refused")
    assert not is_national_id("1234567890")
    assert not is_national_id("1234567890a")


def test_organisation_numbers_carry_their_check_digit() -> None:
    # Brønnøysundregistrene's own numbers: NHN (994598759) and Brønnøysund (974760673).
    assert is_organisation_number("994598759")
    assert is_organisation_number("974760673")
    assert not is_organisation_number("994598758")
    assert not is_organisation_number("99459875")


PATIENT = some_ids(1, d_number=False)[0]
PPS_CONTEXT = CareContext(
    patient_id=PATIENT,
    practitioner=Practitioner(hpr_number="565505933", authorization="LE", legal_entity="994598759"),
    care_relationship=CareRelationship(purpose_of_use="TREAT", decision_ref="d-1", user_selected=True),
    access_basis="SAMTYKKE",
    event_id="5b0c7d0e-8f5e-4d6b-9a57-6a3c8f0e2b11",
    source_system="Acme EPJ 4.2",
)


def test_every_broken_field_is_named_at_once_and_no_value_is_echoed() -> None:
    bad = CareContext(
        patient_id=PATIENT[:-1] + str((int(PATIENT[-1]) + 1) % 10),
        practitioner=Practitioner(authorization="ZZ", legal_entity="994598758"),
        care_relationship=CareRelationship(purpose_of_use="SNOOP"),
        access_basis="BECAUSE",
        source_system="x",
    )
    with pytest.raises(InvalidRequestError) as caught:
        check_care_context(bad)
    assert [path for path, _ in caught.value.violations] == [
        "care_context.patient_id",
        "care_context.practitioner.authorization",
        "care_context.practitioner.legal_entity",
        "care_context.care_relationship.purpose_of_use",
        "care_context.access_basis",
        "care_context.source_system",
    ]
    assert bad.patient_id not in caught.value.message
    check_care_context(PPS_CONTEXT)


def test_pps_headers_and_what_pps_requires() -> None:
    assert api_headers("pps", (), PPS_CONTEXT) == (
        ("person-id", PATIENT),
        ("access-basis", "SAMTYKKE"),
        ("requester-hpr-role", "LE"),
        ("correlation-id", PPS_CONTEXT.event_id),
    )
    with pytest.raises(InvalidRequestError) as caught:
        api_headers("pps", (), CareContext(event_id="e"))
    assert [path for path, _ in caught.value.violations] == [
        "care_context.access_basis",
        "care_context.patient_id",
        "care_context.practitioner.authorization",
    ]
    assert caught.value.violations[0][1] == "is required by the pps API"
    with pytest.raises(InvalidRequestError):
        api_headers("pps", (), None)  # no context at all


def test_critical_information_encodes_the_user_role_as_url_encoded_json() -> None:
    headers = dict(api_headers("critical-information", (), PPS_CONTEXT))
    assert json.loads(unquote(headers["hit-user-role"])) == {
        "system": "urn:oid:2.16.578.1.12.4.1.1.9060",
        "code": "LE",
    }
    assert "%7B" in headers["hit-user-role"]  # encoded, as the API documents
    assert headers["hit-patient-pid"] == PATIENT
    assert headers["hit-source-system"] == "Acme EPJ 4.2"
    assert headers["hit-event-id"] == PPS_CONTEXT.event_id


def test_journal_documents_need_the_access_basis_only_under_the_kjernejournal_regulation() -> None:
    without = CareContext(patient_id=PATIENT)
    assert api_headers("journal-documents", ("nhn:phr/mhd/read-document",), without) == (
        ("hit-patient-pid", PATIENT),
    )
    with pytest.raises(InvalidRequestError) as caught:
        api_headers("journal-documents", (KJERNEJOURNAL_REGULATION_SCOPE,), without)
    assert caught.value.field == "care_context.access_basis"


def test_parek_kjernejournal_sfm_and_none() -> None:
    assert api_headers("parek", (), PPS_CONTEXT) == (
        ("nhn-event-id", PPS_CONTEXT.event_id),
        ("nhn-source-system", "Acme EPJ 4.2"),
    )
    assert api_headers("kjernejournal", (), PPS_CONTEXT) == (
        ("X-SOURCE-SYSTEM", "Acme EPJ 4.2"),
        ("X-EPJ-System", "Acme EPJ 4.2"),
    )
    assert api_headers("sfm", (), PPS_CONTEXT) == ()
    assert api_headers("none", (), None) == ()
