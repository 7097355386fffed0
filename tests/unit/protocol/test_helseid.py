from __future__ import annotations

import pytest

from broker.errors import InvalidRequestError
from broker.model import Tenancy
from broker.protocol import helseid

PARENT = "999977775"
CHILD = "999888777"
JOURNAL = "3FA85F64-5717-4562-B3FC-2C963F66AFA6"


def _identifier(details: tuple[dict[str, object], ...]) -> object:
    (only,) = details
    assert only["type"] == "helseid_authorization"
    return only["practitioner_role"]["organization"]["identifier"]  # type: ignore[index]


def test_details_name_parent_and_child_when_multi_tenant_has_both() -> None:
    details = helseid.build_assertion_details(
        Tenancy.MULTI, orgnr_parent=PARENT, orgnr_child=CHILD, sfm_journal_id=None
    )
    assert _identifier(details) == {
        "system": "urn:oid:1.0.6523",
        "type": "ENH",
        "value": f"NO:ORGNR:{PARENT}:{CHILD}",
    }


def test_details_have_no_trailing_colon_when_multi_tenant_has_no_child() -> None:
    details = helseid.build_assertion_details(
        Tenancy.MULTI, orgnr_parent=PARENT, orgnr_child=None, sfm_journal_id=None
    )
    assert _identifier(details) == {
        "system": "urn:oid:1.0.6523",
        "type": "ENH",
        "value": f"NO:ORGNR:{PARENT}",
    }


def test_details_name_only_the_child_with_enh_oid_when_single_tenant() -> None:
    details = helseid.build_assertion_details(
        Tenancy.SINGLE, orgnr_parent=PARENT, orgnr_child=CHILD, sfm_journal_id=None
    )
    assert _identifier(details) == {
        "system": "urn:oid:2.16.578.1.12.4.1.4.101",
        "type": "ENH",
        "value": CHILD,
    }


@pytest.mark.parametrize("tenancy", [Tenancy.SINGLE, Tenancy.MULTI])
def test_details_are_empty_when_there_is_nothing_to_say(tenancy: Tenancy) -> None:
    assert (
        helseid.build_assertion_details(tenancy, orgnr_parent=None, orgnr_child=None, sfm_journal_id=None)
        == ()
    )


def test_details_are_empty_when_single_tenant_gives_only_a_parent() -> None:
    details = helseid.build_assertion_details(
        Tenancy.SINGLE, orgnr_parent=PARENT, orgnr_child=None, sfm_journal_id=None
    )
    assert details == ()


def test_details_carry_lower_case_journal_id_when_one_is_given() -> None:
    details = helseid.build_assertion_details(
        Tenancy.MULTI, orgnr_parent=PARENT, orgnr_child=None, sfm_journal_id=JOURNAL
    )
    assert details[1] == {"type": "nhn:sfm:journal-id", "value": {"journal_id": JOURNAL.lower()}}


def test_details_are_refused_when_multi_tenant_has_a_child_but_no_parent() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        helseid.build_assertion_details(
            Tenancy.MULTI, orgnr_parent=None, orgnr_child=CHILD, sfm_journal_id=None
        )
    assert caught.value.field == "orgnr_parent"


@pytest.mark.parametrize("value", ["12345678", "1234567890", "12345678a", "ABCDEFGHI", "", "١٢٣٤٥٦٧٨٩"])
def test_orgnr_is_refused_with_field_named_when_not_nine_ascii_digits(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        helseid.validate_orgnr(value, "tenants.oslo.orgnr_child")
    assert caught.value.field == "tenants.oslo.orgnr_child"
    assert "9 digits" in caught.value.description


def test_orgnr_is_refused_with_field_named_when_building_details_with_letters() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        helseid.build_assertion_details(
            Tenancy.MULTI, orgnr_parent=PARENT, orgnr_child="9998887AB", sfm_journal_id=None
        )
    assert caught.value.field == "orgnr_child"


def test_orgnr_is_returned_when_valid() -> None:
    assert helseid.validate_orgnr(PARENT, "orgnr_parent") == PARENT


@pytest.mark.parametrize("value", ["not-a-uuid", "3fa85f6457174562b3fc2c963f66afa6", "{" + JOURNAL + "}"])
def test_journal_id_is_refused_with_field_named_when_not_a_hyphenated_uuid(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        helseid.validate_journal_id(value, "sfm_journal_id")
    assert caught.value.field == "sfm_journal_id"


def test_details_hash_is_empty_when_there_are_no_details() -> None:
    assert helseid.canonical_details_hash(()) == ""


def test_details_hash_ignores_key_order_when_details_are_equal() -> None:
    first = ({"type": "t", "value": {"a": 1, "b": 2}},)
    second = ({"value": {"b": 2, "a": 1}, "type": "t"},)
    assert helseid.canonical_details_hash(first) == helseid.canonical_details_hash(second)


def test_details_hash_differs_when_the_child_differs() -> None:
    def details(child: str) -> tuple[dict[str, object], ...]:
        return helseid.build_assertion_details(
            Tenancy.MULTI, orgnr_parent=PARENT, orgnr_child=child, sfm_journal_id=None
        )

    assert helseid.canonical_details_hash(details(CHILD)) != helseid.canonical_details_hash(
        details("999888666")
    )
