"""`keygen` and `keys show`: a client's key pair, and its public JWK again for HelseID Selvbetjening."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from broker.cli_admin import add_keys_list
from broker.cli_errors import CommandError
from broker.config import load_config
from broker.protocol import keys


def add_key_commands(commands: Any) -> None:  # argparse's subparsers action has no public type
    keygen = commands.add_parser("keygen", help="generate a key pair for a HelseID client")
    keygen.add_argument("--out", type=Path, required=True, help="file for the private JWK (created 0600)")
    keygen.add_argument("--alg", default="ES256", choices=sorted(keys.SUPPORTED_ALGS))
    keygen.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    keygen.set_defaults(handler=keygen_command)

    key_commands = commands.add_parser("keys", help="the configured clients' keys")
    actions = key_commands.add_subparsers(required=True, metavar="action")
    show = actions.add_parser(
        "show", help="print the public JWK of each configured client, for Selvbetjening"
    )
    show.add_argument("--config", type=Path, default=os.environ.get("BROKER_CONFIG"), help="TOML file")
    show.add_argument("--client", help="only this client (prints its public JWK alone)")
    show.set_defaults(handler=keys_show_command)
    add_keys_list(actions)


def keygen_command(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists():
        raise CommandError(f"{out} exists; refusing to overwrite a key (choose another --out)")
    key = keys.generate_signing_key(args.alg, kid=args.kid)
    try:
        # Folders made for keys are the owner's only, like the key file itself.
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:  # a file where a folder should be, no permission
        raise CommandError(f"cannot write {out}: cannot make its folder ({exc.strerror})") from None
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by someone else since the check above
        raise CommandError(f"{out} exists; refusing to overwrite a key (choose another --out)") from None
    except OSError as exc:
        raise CommandError(f"cannot write {out} ({exc.strerror})") from None
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(keys.private_jwk(key), handle)
    print(
        f"private key written to {out}; register this public JWK in HelseID Selvbetjening "
        "(print it again with: keys show):",
        file=sys.stderr,
    )
    print(json.dumps(keys.public_jwk(key), indent=2))
    return 0


def keys_show_command(args: argparse.Namespace) -> int:
    if args.config is None:
        raise CommandError("keys show needs --config FILE (or $BROKER_CONFIG)")
    clients = load_config(args.config).clients
    if args.client is not None:
        if args.client not in clients:
            known = ", ".join(sorted(clients)) or "none"
            raise CommandError(f"no client named {args.client!r} in [clients] (configured: {known})")
        print(json.dumps(keys.public_jwk(clients[args.client].signing_key), indent=2))
        return 0
    shown = {
        name: {"client_id": client.client_id, "jwk": keys.public_jwk(client.signing_key)}
        for name, client in sorted(clients.items())
    }
    print(json.dumps(shown, indent=2))
    return 0
