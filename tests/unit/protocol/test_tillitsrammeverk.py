"""The trust framework's attest rendered from a care context: the shape of research/nhn-apis.md §1."""

from __future__ import annotations

import pytest

from broker.errors import InvalidRequestError
from broker.model import CareContext, CareRelationship, Practitioner
from broker.protocol.tillitsrammeverk import attest_hash, render_attest

CARE = CareContext(
    patient_id="",
    practitioner=Practitioner(authorization="LE", legal_entity="994598759", point_of_care="974760673"),
    care_relationship=CareRelationship(
        healthcare_service="01",
        purpose_of_use="TREAT",
        purpose_of_use_details="BEHANDLER",
        decision_ref="d-42",
        user_selected=True,
    ),
)


def test_the_attest_has_the_research_notes_shape_with_every_system() -> None:
    assert render_attest(CARE) == {
        "type": "nhn:tillitsrammeverk:parameters",
        "practitioner": {
            "authorization": {"code": "LE", "system": "urn:oid:2.16.578.1.12.4.1.1.9060"},
            "legal_entity": {"id": "994598759", "system": "urn:oid:2.16.578.1.12.4.1.4.101"},
            "point_of_care": {"id": "974760673", "system": "urn:oid:2.16.578.1.12.4.1.4.101"},
        },
        "care_relationship": {
            "healthcare_service": {"code": "01", "system": "urn:oid:2.16.578.1.12.4.1.1.8666"},
            "purpose_of_use": {"code": "TREAT", "system": "urn:oid:2.16.840.1.113883.1.11.20448"},
            "purpose_of_use_details": {
                "code": "BEHANDLER",
                "system": "urn:AuditEventHL7Norway/CodeSystem/carerelation",
            },
            "decision_ref": {"id": "d-42", "user_selected": True},
        },
    }


def test_a_department_is_added_when_given() -> None:
    with_department = CareContext(
        practitioner=Practitioner(
            authorization="SP", legal_entity="994598759", point_of_care="974760673", department="4001031"
        ),
        care_relationship=CARE.care_relationship,
    )
    department = render_attest(with_department)["practitioner"]["department"]
    assert department == {"id": "4001031", "system": "urn:oid:2.16.578.1.12.4.1.4.102"}


def test_every_missing_field_is_named() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        render_attest(CareContext(practitioner=Practitioner(authorization="LE")))
    assert [path for path, _ in caught.value.violations] == [
        "care_context.practitioner.legal_entity",
        "care_context.practitioner.point_of_care",
        "care_context.care_relationship.healthcare_service",
        "care_context.care_relationship.purpose_of_use",
        "care_context.care_relationship.purpose_of_use_details",
        "care_context.care_relationship.decision_ref",
    ]


def test_the_hash_tells_attests_apart_and_ignores_key_order() -> None:
    attest = render_attest(CARE)
    reordered = dict(reversed(list(attest.items())))
    assert attest_hash(attest) == attest_hash(reordered)
    other = CareContext(
        practitioner=CARE.practitioner,
        care_relationship=CareRelationship(
            healthcare_service="01",
            purpose_of_use="TREAT",
            purpose_of_use_details="BEHANDLER",
            decision_ref="d-43",
            user_selected=True,
        ),
    )
    assert attest_hash(render_attest(other)) != attest_hash(attest)
