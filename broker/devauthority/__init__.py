"""A HelseID-like STS for local development and tests (the "dev authority").

It follows HelseID's rules where a client could get them wrong: private_key_jwt client assertions,
DPoP with server nonces, assertion_details with org numbers and SFM journal ids, HelseID-shaped access
tokens. It shares no code with the broker on purpose, so a bug in the broker is not mirrored here.
The broker must never import it. See README.md in this folder.
"""

from .registry import RegisteredClient, load_clients
from .server import RunningAuthority, start_dev_authority

__all__ = ["RegisteredClient", "RunningAuthority", "load_clients", "start_dev_authority"]
