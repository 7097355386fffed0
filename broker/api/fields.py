"""The size and shape of every request field, checked first: before a handler runs, before anything parses it.

The rules are keyed by field name, so the same field has the same limit in every RPC, and a validator is
compiled per request type from its proto descriptor: a string, integer or duration field without a rule here
stops the broker at start (a new field cannot go unchecked), a nested message is checked field by field with
the same rules, and `(google.api.field_behavior) = REQUIRED` in the proto is what makes a field required.
Errors name the field by its path (`settings.client`) and never echo its value.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from broker.errors import InvalidRequestError
from broker.protocol.rfc3986 import MAX_URL_LENGTH

# gRPC refuses larger request messages before they are even decoded (see server.py).
MAX_REQUEST_BYTES = 64 * 1024
MAX_MIN_REMAINING = timedelta(hours=24)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VISIBLE = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces: URLs, tokens, codes
_NQCHAR = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 9449 §8 nonce characters
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_METHOD = re.compile(r"[A-Za-z]+")
_TEXT = re.compile(r"[^\x00-\x1f\x7f]+")  # any printable text, for a login hint
_ORGNR = re.compile(r"[0-9]{9}")
_DIGITS = re.compile(r"[0-9]+")
_CODE = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class Rule:
    max_length: int
    pattern: re.Pattern[str]
    shape: str  # what the error says a valid value looks like
    max_items: int = 1  # for repeated fields


NAME_SHAPE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
RULES: dict[str, Rule] = {
    "tenant": Rule(64, _NAME, NAME_SHAPE),
    "target": Rule(64, _NAME, NAME_SHAPE),
    "targets": Rule(64, _NAME, NAME_SHAPE, max_items=32),
    "warm": Rule(64, _NAME, NAME_SHAPE, max_items=32),
    "client": Rule(64, _NAME, NAME_SHAPE),
    "page_token": Rule(64, _NAME, "the next_page_token of the previous page"),
    "http_method": Rule(16, _METHOD, "an HTTP method such as GET or POST"),
    "url": Rule(MAX_URL_LENGTH, _VISIBLE, "an absolute https URL of printable ASCII"),
    "dpop_nonce": Rule(512, _NQCHAR, "the resource server's DPoP-Nonce value"),
    "subject_token": Rule(16 * 1024, _VISIBLE, "a token of printable ASCII"),
    "session_id": Rule(128, _BASE64URL, "the session id CompleteLogin returned"),
    "state": Rule(256, _VISIBLE, "the state StartLogin returned"),
    "code": Rule(2048, _VISIBLE, "the code of the login callback"),
    "issuer": Rule(2048, _VISIBLE, "the iss of the login callback"),
    "redirect_uri": Rule(MAX_URL_LENGTH, _VISIBLE, "one of the client's redirect_uris"),
    "login_hint": Rule(256, _TEXT, "printable text"),
    "orgnr_parent": Rule(9, _ORGNR, "an organisation number of 9 digits"),
    "orgnr_child": Rule(9, _ORGNR, "an organisation number of 9 digits"),
    "sfm_journal_id": Rule(64, _VISIBLE, "SFM's journal id of the tenant"),
    # The care context (then checked against its code systems and check digits: protocol/care.py).
    "patient_id": Rule(11, _DIGITS, "a national id of 11 digits"),
    "hpr_number": Rule(9, _DIGITS, "an HPR number of digits"),
    "authorization": Rule(8, _CODE, "an HPR authorisation code such as LE"),
    "legal_entity": Rule(9, _ORGNR, "an organisation number of 9 digits"),
    "point_of_care": Rule(9, _ORGNR, "an organisation number of 9 digits"),
    "department": Rule(12, _DIGITS, "a RESH id of digits"),
    "healthcare_service": Rule(8, _CODE, "a healthcare service code such as 01"),
    "purpose_of_use": Rule(16, _CODE, "a purpose of use such as TREAT"),
    "purpose_of_use_details": Rule(64, _CODE, "a purpose-of-use detail code such as BEHANDLER"),
    "decision_ref": Rule(256, _VISIBLE, "the access decision's id, printable ASCII"),
    "access_basis": Rule(32, _CODE, "an access basis such as SAMTYKKE"),
    "event_id": Rule(128, _VISIBLE, "an event id of printable ASCII, such as a UUID"),
    "source_system": Rule(512, _TEXT, "the calling system's name, printable text"),
}
DURATIONS: dict[str, timedelta] = {"min_remaining_lifetime": MAX_MIN_REMAINING}
# Integer fields: the inclusive range each may take.
INTEGERS: dict[str, tuple[int, int]] = {"page_size": (0, 1000)}
_INTEGER_TYPES = frozenset({FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64})

Check = Callable[[Any], None]


def validator(descriptor: Descriptor, prefix: str = "") -> Check:
    """Compiles the checks of one request type; raises LookupError for a field without a rule."""
    checks = [_field_check(field, prefix) for field in descriptor.fields]

    def check(request: Any) -> None:
        for field_check in checks:
            field_check(request)

    return check


def _field_check(field: FieldDescriptor, prefix: str) -> Check:
    required = field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    name = field.name
    path = f"{prefix}{name}"
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Duration":
        return _duration_check(name, path, DURATIONS[name])
    if field.message_type is not None and not field.is_repeated:
        return _message_check(name, path, validator(field.message_type, f"{path}."), required)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return _nothing  # a bool is its own shape
    if field.type in _INTEGER_TYPES and not field.is_repeated:
        low, high = INTEGERS[name]
        return _integer_check(name, path, low, high)
    if field.type != FieldDescriptor.TYPE_STRING:
        raise LookupError(f"no input rule for {field.full_name}")
    rule = RULES[name]
    if field.is_repeated:
        return _repeated_check(name, path, rule, required)
    return _string_check(name, path, rule, required)


def _nothing(request: Any) -> None:
    return None


def _string_check(name: str, path: str, rule: Rule, required: bool) -> Check:
    def check(request: Any) -> None:
        value: str = getattr(request, name)
        if not value:
            if required:
                raise InvalidRequestError(path, "is required")
            return
        _check_value(path, value, rule)

    return check


def _repeated_check(name: str, path: str, rule: Rule, required: bool) -> Check:
    def check(request: Any) -> None:
        values = getattr(request, name)
        if required and not values:
            raise InvalidRequestError(path, "name at least one")
        if len(values) > rule.max_items:
            raise InvalidRequestError(path, f"at most {rule.max_items} values")
        for index, value in enumerate(values):
            _check_value(f"{path}[{index}]", value, rule)

    return check


def _message_check(name: str, path: str, check_inner: Check, required: bool) -> Check:
    def check(request: Any) -> None:
        if not request.HasField(name):
            if required:
                raise InvalidRequestError(path, "is required")
            return
        check_inner(getattr(request, name))

    return check


def _integer_check(name: str, path: str, low: int, high: int) -> Check:
    def check(request: Any) -> None:
        value: int = getattr(request, name)
        if not low <= value <= high:
            raise InvalidRequestError(path, f"must be from {low} to {high}")

    return check


def _check_value(name: str, value: str, rule: Rule) -> None:
    # The length first: a pattern over megabytes would already be work a caller chose for us.
    if len(value) > rule.max_length:
        raise InvalidRequestError(name, f"longer than {rule.max_length} characters")
    if rule.pattern.fullmatch(value) is None:
        raise InvalidRequestError(name, f"must be {rule.shape}")


def _duration_check(name: str, path: str, limit: timedelta) -> Check:
    limit_s = int(limit.total_seconds())

    def check(request: Any) -> None:
        duration = getattr(request, name)
        seconds, nanos = duration.seconds, duration.nanos
        if seconds < 0 or nanos < 0:
            raise InvalidRequestError(path, "must not be negative")
        if nanos > 999_999_999 or seconds > limit_s or (seconds == limit_s and nanos):
            raise InvalidRequestError(path, f"must be at most {limit_s} seconds")

    return check


def duration(value: Any) -> timedelta:
    """A checked google.protobuf.Duration as a timedelta."""
    return timedelta(seconds=value.seconds, microseconds=value.nanos // 1000)
