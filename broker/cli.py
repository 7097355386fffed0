"""The command line: parse, call, print. Exit status 2 means bad input or configuration."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from broker import __version__
from broker.api.client import CallFailedError, authorize_request_json, get_token_json
from broker.app import run_workers, serve
from broker.audit import verify
from broker.config import DEFAULT_LISTEN, TelemetrySettings, load_config
from broker.errors import ConfigurationError
from broker.observability import configure_logging
from broker.protocol import keys


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(TelemetrySettings())  # text at INFO until a configuration says otherwise
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 2
    except CallFailedError as exc:
        reason = f" [{exc.reason}]" if exc.reason else ""
        print(f"{exc.code}{reason}: {exc.message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helseid-broker", description="HelseID token broker")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(required=True, metavar="command")

    run = commands.add_parser("run", help="run the broker (no --config: embedded demo defaults)")
    run.add_argument("--config", type=Path, default=os.environ.get("BROKER_CONFIG"), help="TOML file")
    run.add_argument("--listen", help=f"host:port to serve on (default {DEFAULT_LISTEN})")
    run.set_defaults(handler=_run)

    token = commands.add_parser("token", help="ask a running broker for a token")
    token.add_argument("--address", default=DEFAULT_LISTEN)
    token.add_argument("--tenant", required=True)
    token.add_argument("--target", required=True)
    token.add_argument("--url", help="also get the Authorization and DPoP headers for a request to this URL")
    token.add_argument("--method", default="GET", help="HTTP method for --url")
    token.set_defaults(handler=_token)

    keygen = commands.add_parser("keygen", help="generate a key pair for a HelseID client")
    keygen.add_argument("--out", type=Path, required=True, help="file for the private JWK (created 0600)")
    keygen.add_argument("--alg", default="ES256", choices=sorted(keys.SUPPORTED_ALGS))
    keygen.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    keygen.set_defaults(handler=_keygen)

    trail = commands.add_parser("audit", help="work with audit files")
    actions = trail.add_subparsers(required=True, metavar="action")
    check_trail = actions.add_parser("verify", help="check audit files' hash chains; exit 1 at a break")
    check_trail.add_argument("files", type=Path, nargs="+", metavar="FILE", help="rotated parts oldest first")
    check_trail.set_defaults(handler=_audit_verify)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)
    check.set_defaults(handler=_check_config)
    return parser


def _run(args: argparse.Namespace) -> int:
    if args.config is None:
        from broker.demo import run_demo  # noqa: PLC0415 - the dev authority loads only when used

        asyncio.run(run_demo(listen=args.listen or DEFAULT_LISTEN))
        return 0
    config = load_config(args.config)
    configure_logging(config.telemetry)
    listen = args.listen or config.server.listen
    if config.server.workers > 1:
        run_workers(args.config, config, listen)
    else:
        asyncio.run(serve(config, listen=listen, on_ready=lambda port: _print_ready(listen, port)))
    return 0


def _print_ready(listen: str, port: int) -> None:
    host = listen.rsplit(":", 1)[0]
    # Logged, not printed: with log_format = "json" every line on stderr is a JSON object.
    logging.getLogger("broker").info("broker listening on %s:%d", host, port)


def _token(args: argparse.Namespace) -> int:
    if args.url:
        text = asyncio.run(
            authorize_request_json(
                args.address, args.tenant, args.target, http_method=args.method, url=args.url
            )
        )
    else:
        text = asyncio.run(get_token_json(args.address, args.tenant, args.target))
    print(text)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    if args.out.exists():
        print(f"{args.out} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    key = keys.generate_signing_key(args.alg, kid=args.kid)
    descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(keys.private_jwk(key), handle)
    print(
        f"private key written to {args.out}; register this public JWK in HelseID Selvbetjening:",
        file=sys.stderr,
    )
    print(json.dumps(keys.public_jwk(key), indent=2))
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    try:
        result = verify(*args.files)
    except OSError as exc:
        print(f"cannot read {exc.filename} ({exc.strerror})", file=sys.stderr)
        return 2
    if not result.intact:
        print(f"{result.path}:{result.line}: {result.why} ({result.records} records intact before it)")
        return 1
    print(f"intact: {result.records} records in {result.chains} chain(s)")
    for instance in result.open_chains:
        print(f"note: {instance} does not end with trail.closed (still running, stopped abruptly, or cut)")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    print(
        f"{args.config}: ok ({len(config.clients)} clients, {len(config.targets)} targets, "
        f"{len(config.tenants)} tenants)"
    )
    return 0
