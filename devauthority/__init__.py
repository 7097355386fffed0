"""A HelseID-like STS for local development and tests (the "dev authority").

It follows HelseID's rules where a client could get them wrong: private_key_jwt client assertions,
DPoP with server nonces, assertion_details with org numbers and SFM journal ids, HelseID-shaped access
tokens, and an offline user login (PAR, authorize with a test user, code + PKCE, rotating refresh
tokens, token exchange, revocation). It shares no code with the broker on purpose, so a bug in the
broker is not mirrored here. It never imports the broker; the broker imports it only in broker.demo (the
embedded defaults), and only when they start. See README.md in this folder.
"""

from .registry import RegisteredClient, load_clients
from .server import RunningAuthority, start_dev_authority
from .users import DEFAULT_TEST_USER, TestUser, load_test_users

__all__ = [
    "DEFAULT_TEST_USER",
    "RegisteredClient",
    "RunningAuthority",
    "TestUser",
    "load_clients",
    "load_test_users",
    "start_dev_authority",
]
