"""The flags that say how a command reaches a running broker: address, TLS, mTLS and caller credential.

The credential comes from --credential or HELSEID_BROKER_CREDENTIAL (better: it stays out of `ps` and shell
history); it only ever travels as gRPC metadata and is never printed.

gRPC's C core would also log a failed TLS handshake on stderr, in its own format, beside the command's one
line that already carries the reason; it reads GRPC_VERBOSITY once, when grpc is first imported, so the
client commands import grpc only after `connection_from_args` has set it (an operator's own value wins).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from broker.cli_errors import CommandError
from broker.config import DEFAULT_LISTEN

if TYPE_CHECKING:
    from broker.api.connection import Connection

CREDENTIAL_ENV = "HELSEID_BROKER_CREDENTIAL"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--address", default=DEFAULT_LISTEN, help=f"host:port of the broker (default {DEFAULT_LISTEN})"
    )
    group.add_argument(
        "--credential",
        default=None,
        help=f"caller credential, sent as 'authorization: Bearer ...' (default: ${CREDENTIAL_ENV})",
    )
    group.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    group.add_argument("--tls-ca", type=Path, help="PEM file of the CA that signed the broker's certificate")
    group.add_argument("--tls-cert", type=Path, help="PEM client certificate for mTLS (with --tls-key)")
    group.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    group.add_argument(
        "--tls-server-name", help="name the broker's certificate carries, if not the address's"
    )


def connection_from_args(args: argparse.Namespace) -> Connection:
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from broker.api.connection import Connection  # noqa: PLC0415 - grpc loads after GRPC_VERBOSITY is set

    if (args.tls_cert is None) != (args.tls_key is None):
        raise CommandError("--tls-cert and --tls-key go together (the client certificate and its key)")
    credential = args.credential if args.credential is not None else os.environ.get(CREDENTIAL_ENV)
    if credential is not None:
        credential = credential.strip()
        if not credential or any(character in credential for character in "\r\n"):
            raise CommandError(
                f"the caller credential (--credential or ${CREDENTIAL_ENV}) is empty or not one line"
            )
    tls = args.tls or args.tls_ca is not None or args.tls_cert is not None or args.tls_server_name is not None
    return Connection(
        address=args.address,
        credential=credential or None,
        tls=tls,
        ca=_pem(args.tls_ca, "--tls-ca"),
        certificate=_pem(args.tls_cert, "--tls-cert"),
        private_key=_pem(args.tls_key, "--tls-key"),
        server_name=args.tls_server_name,
    )


def _pem(path: Path | None, flag: str) -> bytes | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"{flag}: cannot read {path} ({exc.strerror})") from None
    # gRPC would only fail at the handshake, with a vaguer message; a file that is no PEM is a user's slip.
    if b"-----BEGIN " not in data:
        raise CommandError(f"{flag}: {path} is not a PEM file")
    return data
