"""Test users the dev authority logs in without asking anyone, and the identity claims they carry.

HelseID logs a user in through an identity provider (BankID, Buypass, TestIDP...). The dev authority
has no login page: ``/connect/authorize`` picks a registered test user at once, the one named by the
PAR ``login_hint`` (its ``id`` or its ``pid``), or the default user.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

# Claim names as HelseID writes them.
CLAIM_PID = "helseid://claims/identity/pid"
CLAIM_PID_PSEUDONYM = "helseid://claims/identity/pid_pseudonym"
CLAIM_SECURITY_LEVEL = "helseid://claims/identity/security_level"
CLAIM_ASSURANCE_LEVEL = "helseid://claims/identity/assurance_level"
CLAIM_NETWORK = "helseid://claims/identity/network"
CLAIM_HPR_NUMBER = "helseid://claims/hpr/hpr_number"

# Identity scopes and the claims each releases (HelseID releases a claim only for its scope).
SCOPE_OPENID = "openid"
SCOPE_PROFILE = "profile"
SCOPE_OFFLINE_ACCESS = "offline_access"
SCOPE_PID = "helseid://scopes/identity/pid"
SCOPE_PID_PSEUDONYM = "helseid://scopes/identity/pid_pseudonym"
SCOPE_SECURITY_LEVEL = "helseid://scopes/identity/security_level"
SCOPE_ASSURANCE_LEVEL = "helseid://scopes/identity/assurance_level"
SCOPE_NETWORK = "helseid://scopes/identity/network"
SCOPE_HPR_NUMBER = "helseid://scopes/hpr/hpr_number"
STANDARD_IDENTITY_SCOPES = (
    SCOPE_OPENID,
    SCOPE_PROFILE,
    SCOPE_OFFLINE_ACCESS,
    SCOPE_PID,
    SCOPE_PID_PSEUDONYM,
    SCOPE_SECURITY_LEVEL,
    SCOPE_ASSURANCE_LEVEL,
    SCOPE_NETWORK,
    SCOPE_HPR_NUMBER,
)
IDENTITY_SCOPE_PREFIXES = ("helseid://scopes/identity/", "helseid://scopes/hpr/")

TEST_IDP = "testidp-oidc"  # the name HelseID's test environment gives its auto-login IdP

_PID = re.compile(r"[0-9]{11}")
_DIGITS = re.compile(r"[0-9]+")
SECURITY_LEVELS = ("1", "2", "3", "4")
ASSURANCE_LEVELS = ("low", "substantial", "high")


def is_identity_scope(scope: str) -> bool:
    """Whether a scope describes the user rather than an API."""
    return scope in STANDARD_IDENTITY_SCOPES or scope.startswith(IDENTITY_SCOPE_PREFIXES)


@dataclass(frozen=True, kw_only=True)
class TestUser:
    """A person the dev authority can log in. ``id`` is the handle a ``login_hint`` names."""

    __test__ = False  # not a pytest test class, whatever its name says

    id: str
    pid: str
    given_name: str
    family_name: str
    middle_name: str | None = None
    hpr_number: str | None = None
    security_level: str = "4"
    assurance_level: str = "high"
    network: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError("a test user needs a non-empty id")
        where = f"test user {self.id!r}"
        if not isinstance(self.pid, str) or not _PID.fullmatch(self.pid):
            raise ValueError(f"{where}: pid must be 11 digits (a synthetic fnr/dnr)")
        for name in ("given_name", "family_name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{where}: {name} must be a non-empty string")
        for name in ("middle_name", "network"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{where}: {name} must be a non-empty string or null")
        if self.hpr_number is not None and (
            not isinstance(self.hpr_number, str) or not _DIGITS.fullmatch(self.hpr_number)
        ):
            raise ValueError(f"{where}: hpr_number must be a string of digits or null")
        if self.security_level not in SECURITY_LEVELS:
            raise ValueError(f"{where}: security_level must be one of {list(SECURITY_LEVELS)}")
        if self.assurance_level not in ASSURANCE_LEVELS:
            raise ValueError(f"{where}: assurance_level must be one of {list(ASSURANCE_LEVELS)}")

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.given_name, self.middle_name, self.family_name) if p)

    @classmethod
    def from_json(cls, data: Any) -> TestUser:
        """Build a user from its JSON form (the same field names); unknown fields are an error."""
        if not isinstance(data, Mapping):
            raise ValueError("a test user must be a JSON object")
        init_fields = [f for f in fields(cls) if f.init]
        known = {f.name for f in init_fields}
        required = {f.name for f in init_fields if f.default is MISSING}
        problems = []
        if unknown := sorted(set(data) - known):
            problems.append(f"unknown fields {unknown}")
        if missing := sorted(required - set(data)):
            problems.append(f"missing fields {missing}")
        if problems:
            raise ValueError(f"test user {data.get('id')!r}: {', '.join(problems)}")
        return cls(**data)

    def subject(self, issuer: str) -> str:
        """The ``sub``: a pseudonym of the pid, stable for one issuer (no secret needed, none kept)."""
        digest = hashlib.sha256(f"{issuer}|sub|{self.pid}".encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def pid_pseudonym(self, issuer: str) -> str:
        digest = hashlib.sha256(f"{issuer}|pid_pseudonym|{self.pid}".encode()).digest()
        return base64.b64encode(digest).decode()

    def claims(self, scopes: Sequence[str], issuer: str) -> dict[str, Any]:
        """The identity claims the granted scopes release (``sub`` always)."""
        granted = set(scopes)
        claims: dict[str, Any] = {"sub": self.subject(issuer)}
        if SCOPE_PROFILE in granted:
            claims["name"] = self.name
            claims["given_name"] = self.given_name
            claims["family_name"] = self.family_name
            if self.middle_name is not None:
                claims["middle_name"] = self.middle_name
        if SCOPE_PID in granted:
            claims[CLAIM_PID] = self.pid
        if SCOPE_PID_PSEUDONYM in granted:
            claims[CLAIM_PID_PSEUDONYM] = self.pid_pseudonym(issuer)
        if SCOPE_SECURITY_LEVEL in granted:
            claims[CLAIM_SECURITY_LEVEL] = self.security_level
        if SCOPE_ASSURANCE_LEVEL in granted:
            claims[CLAIM_ASSURANCE_LEVEL] = self.assurance_level
        if SCOPE_NETWORK in granted and self.network is not None:
            claims[CLAIM_NETWORK] = self.network
        if SCOPE_HPR_NUMBER in granted and self.hpr_number is not None:
            claims[CLAIM_HPR_NUMBER] = self.hpr_number
        return claims


DEFAULT_TEST_USER = TestUser(
    id="kari",
    pid="05898597468",
    hpr_number="565501872",
    given_name="Kari",
    family_name="Nordmann",
    security_level="4",
    assurance_level="high",
)


class TestUserRegistry:
    """The default test user plus any registered ones; ids and pids are unique."""

    __test__ = False

    def __init__(self, users: Sequence[TestUser] = ()) -> None:
        self._users: dict[str, TestUser] = {}
        for user in (DEFAULT_TEST_USER, *users):
            self.register(user)

    @property
    def default(self) -> TestUser:
        return DEFAULT_TEST_USER

    def register(self, user: TestUser) -> None:
        if not isinstance(user, TestUser):
            raise TypeError("register() takes a TestUser")
        for known in self._users.values():
            if user.id == known.id or user.pid == known.pid:
                raise ValueError(f"test user {user.id!r}: id or pid already used by {known.id!r}")
        self._users[user.id] = user

    def find(self, login_hint: str) -> TestUser | None:
        """The user whose ``id`` or ``pid`` is the hint."""
        if login_hint in self._users:
            return self._users[login_hint]
        return next((u for u in self._users.values() if u.pid == login_hint), None)

    def __iter__(self) -> Iterator[TestUser]:
        return iter(list(self._users.values()))


def users_from_json(data: Any) -> list[TestUser]:
    """A list of users, or ``{"test_users": [...]}``."""
    if isinstance(data, Mapping) and "test_users" in data:
        data = data["test_users"]
    if not isinstance(data, list):
        raise ValueError('the test-user file must hold a list of users or {"test_users": [...]}')
    return [TestUser.from_json(item) for item in data]


def load_test_users(path: str | Path) -> list[TestUser]:
    return users_from_json(json.loads(Path(path).read_text(encoding="utf-8")))
