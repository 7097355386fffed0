"""The error reasons are one enumeration: each unique, mapped to a gRPC code, raised somewhere, documented."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from google.rpc import error_details_pb2, status_pb2

from broker.api import status
from broker.errors import BrokerError, Reason

ROOT = Path(__file__).resolve().parents[2]


def test_every_reason_is_unique_and_upper_snake() -> None:
    values = [reason.value for reason in Reason]
    assert len(values) == len(set(values)) == len(Reason.__members__)
    assert all(re.fullmatch(r"[A-Z][A-Z_]*[A-Z]", value) for value in values)


def test_every_reason_has_one_grpc_code_and_becomes_that_status() -> None:
    assert set(status.REASON_CODES) == set(Reason)
    for reason, code in status.REASON_CODES.items():
        rich = status.to_status(BrokerError("x" * 5000, reason=reason, value="y" * 5000))
        assert rich.code == code
        decoded = status_pb2.Status.FromString(dict(rich.trailing_metadata)["grpc-status-details-bin"])
        info = error_details_pb2.ErrorInfo()
        assert decoded.details[0].Unpack(info)
        assert info.reason == reason.value
        assert len(decoded.SerializeToString()) < 1024  # echoed values are cut
    print(f"\nreasons: {len(Reason)}, each mapped to one of {len(set(status.REASON_CODES.values()))} codes")


def test_every_reason_is_listed_in_the_readme_error_table_with_its_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `") and "` | `" in line]
    listed: dict[str, str] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for name in re.findall(r"`([A-Z_]+)`", cells[0]):
            listed[name] = cells[1].strip("`")
    for reason, code in status.REASON_CODES.items():
        assert reason.value in listed, f"{reason.value} is not in the README's error table"
        assert listed[reason.value] == code.name, f"{reason.value}: README says {listed[reason.value]}"


def test_every_reason_is_raised_or_answered_somewhere_in_the_broker() -> None:
    source = "\n".join(
        path.read_text(encoding="utf-8")
        for path in (ROOT / "broker").rglob("*.py")
        if "v1" not in path.parts and "devauthority" not in path.parts and path.name != "status.py"
    )
    unused = [reason.value for reason in Reason if f"Reason.{reason.name}" not in source]
    assert not unused, f"reasons nothing raises: {unused}"


def test_an_unknown_fault_answers_internal_with_an_incident_id_and_no_exception_text() -> None:
    rich = status.internal_status(ValueError("detail of the fault"))
    assert rich.code == grpc.StatusCode.INTERNAL
    assert "detail of the fault" not in rich.details
    assert re.search(r"incident [0-9a-f]{32}", rich.details)
