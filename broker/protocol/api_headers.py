"""The request headers each NHN API wants beside the token, rendered from a care context.

Each target names its API profile in the configuration (`api_profile`). A profile says which care-context
fields the API requires (a context without them is refused before any token is fetched, naming the
field) and how each header is spelt and encoded, from NHN's developer portal
(../shared/research/nhn-apis.md, section 2):

    pps                   person-id, access-basis, requester-hpr-role, correlation-id
    critical-information  hit-patient-pid, hit-access-basis, hit-user-role (URL-encoded JSON of system and
                          code), hit-source-system, hit-event-id
    journal-documents     hit-access-basis (required with the kjernejournalforskriften scope),
                          hit-patient-pid, hit-event-id
    parek                 nhn-event-id, nhn-source-system
    kjernejournal         X-SOURCE-SYSTEM, X-EPJ-System
    sfm, none             none

A header whose field is empty and not required is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from broker.errors import InvalidRequestError
from broker.model import CareContext
from broker.protocol.care import HPR_AUTHORIZATION_SYSTEM, PREFIX

Header = tuple[str, str]
# The scope of Pasientens journaldokumenter that needs the access basis (the kjernejournal regulation).
KJERNEJOURNAL_REGULATION_SCOPE: Final = "nhn:phr/mhd/read-documentreferences/kjernejournalforskriften"

_FIELDS: Final[dict[str, Callable[[CareContext], str]]] = {
    "patient_id": lambda care: care.patient_id,
    "access_basis": lambda care: care.access_basis,
    "practitioner.authorization": lambda care: care.practitioner.authorization,
    "event_id": lambda care: care.event_id,
    "source_system": lambda care: care.source_system,
}


def _user_role(code: str) -> str:
    role = json.dumps({"system": HPR_AUTHORIZATION_SYSTEM, "code": code}, separators=(",", ":"))
    return quote(role, safe="")


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    # (header name, care-context field, encoder); in the order the headers are sent.
    headers: tuple[tuple[str, str, Callable[[str], str]], ...]
    required: frozenset[str]


def _as_is(value: str) -> str:
    return value


PROFILES: Final[dict[str, Profile]] = {
    "none": Profile("none", (), frozenset()),
    "sfm": Profile("sfm", (), frozenset()),
    "pps": Profile(
        "pps",
        (
            ("person-id", "patient_id", _as_is),
            ("access-basis", "access_basis", _as_is),
            ("requester-hpr-role", "practitioner.authorization", _as_is),
            ("correlation-id", "event_id", _as_is),
        ),
        frozenset({"patient_id", "access_basis", "practitioner.authorization"}),
    ),
    "critical-information": Profile(
        "critical-information",
        (
            ("hit-patient-pid", "patient_id", _as_is),
            ("hit-access-basis", "access_basis", _as_is),
            ("hit-user-role", "practitioner.authorization", _user_role),
            ("hit-source-system", "source_system", _as_is),
            ("hit-event-id", "event_id", _as_is),
        ),
        frozenset({"patient_id", "practitioner.authorization", "source_system"}),
    ),
    "journal-documents": Profile(
        "journal-documents",
        (
            ("hit-patient-pid", "patient_id", _as_is),
            ("hit-access-basis", "access_basis", _as_is),
            ("hit-event-id", "event_id", _as_is),
        ),
        frozenset(),
    ),
    "parek": Profile(
        "parek",
        (("nhn-event-id", "event_id", _as_is), ("nhn-source-system", "source_system", _as_is)),
        frozenset({"event_id", "source_system"}),
    ),
    "kjernejournal": Profile(
        "kjernejournal",
        (("X-SOURCE-SYSTEM", "source_system", _as_is), ("X-EPJ-System", "source_system", _as_is)),
        frozenset({"source_system"}),
    ),
}
API_PROFILES: Final = tuple(PROFILES)


def required_fields(profile: Profile, scopes: Sequence[str]) -> frozenset[str]:
    """What the API needs: the profile's own, and the access basis for journal documents read under the
    kjernejournal regulation."""
    if profile.name == "journal-documents" and KJERNEJOURNAL_REGULATION_SCOPE in scopes:
        return profile.required | {"access_basis"}
    return profile.required


def api_headers(profile_name: str, scopes: Sequence[str], care: CareContext | None) -> tuple[Header, ...]:
    """The headers for one request (the context already checked by `care.check_care_context`);
    InvalidRequestError names every field the API requires and the context lacks."""
    profile = PROFILES[profile_name]
    context = care or CareContext()
    missing = [
        (f"{PREFIX}.{field}", f"is required by the {profile.name} API")
        for field in sorted(required_fields(profile, scopes))
        if not _FIELDS[field](context)
    ]
    if missing:
        raise InvalidRequestError(missing[0][0], missing[0][1], violations=missing)
    if care is None:
        return ()
    return tuple(
        (header, encode(value))
        for header, field, encode in profile.headers
        if (value := _FIELDS[field](care))
    )
