"""The command line: parse, call, print.

Every expected failure (bad configuration, a missing file, a port in use, an unreachable broker, an error
answer) is one line on stderr and exit status 2; a traceback means a fault in the broker itself.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from broker import __version__
from broker.audit import verify
from broker.cli_admin import add_admin_commands
from broker.cli_calls import add_call_commands
from broker.cli_errors import CommandError
from broker.cli_keys import add_key_commands
from broker.cli_listen import bind_failures, probe_shared_port
from broker.config import DEFAULT_LISTEN, TelemetrySettings, load_config
from broker.errors import ConfigurationError
from broker.observability import configure_logging


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(TelemetrySettings())  # text at INFO until a configuration says otherwise
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        return _fail(f"configuration error: {exc.message}")
    except CommandError as exc:
        return _fail(exc.message)
    except OSError as exc:  # a file or folder the command needs (an audit directory, a key file)
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{where}")


def _fail(message: str) -> int:
    print(_one_line(message), file=sys.stderr)
    return 2


def _one_line(message: str) -> str:
    """One line, so that a log collector or a shell script sees the whole reason in one record; a message
    of several lines ("2 mistakes:" and one line per configuration mistake) keeps every line."""
    text = ""
    for line in filter(None, (line.strip() for line in message.splitlines())):
        text += ("" if not text else " " if text.endswith(":") else "; ") + line
    return text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="helseid-broker", description="HelseID token broker")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(required=True, metavar="command")

    run = commands.add_parser("run", help="run the broker (no --config: embedded demo defaults)")
    run.add_argument("--config", type=Path, default=os.environ.get("BROKER_CONFIG"), help="TOML file")
    run.add_argument("--listen", help=f"host:port to serve on (default {DEFAULT_LISTEN})")
    run.add_argument(
        "--demo-token-lifetime",
        type=_seconds,
        metavar="SECONDS",
        help="embedded defaults only: the dev authority's token lifetime (default 300; short shows renewals)",
    )
    run.set_defaults(handler=_run)

    add_call_commands(commands)
    add_key_commands(commands)
    add_admin_commands(commands)

    trail = commands.add_parser("audit", help="work with audit files")
    actions = trail.add_subparsers(required=True, metavar="action")
    check_trail = actions.add_parser("verify", help="check audit files' hash chains; exit 1 at a break")
    check_trail.add_argument("files", type=Path, nargs="+", metavar="FILE", help="rotated parts oldest first")
    check_trail.set_defaults(handler=_audit_verify)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)
    check.set_defaults(handler=_check_config)
    return parser


def _seconds(text: str) -> timedelta:
    """A whole number of seconds, at least 10 (the broker's skew and refresh need some lifetime)."""
    if not text.isdigit() or int(text) < 10:
        raise argparse.ArgumentTypeError("must be a whole number of seconds, at least 10")
    return timedelta(seconds=int(text))


def _run(args: argparse.Namespace) -> int:
    if args.config is not None and args.demo_token_lifetime is not None:
        raise CommandError("--demo-token-lifetime is for the embedded defaults only (without --config)")
    if args.config is None:
        from broker.demo import run_demo  # noqa: PLC0415 - the dev authority loads only when used

        with bind_failures(args.listen or DEFAULT_LISTEN):
            if args.demo_token_lifetime is None:
                asyncio.run(run_demo(listen=args.listen or DEFAULT_LISTEN))
            else:
                lifetime = args.demo_token_lifetime
                asyncio.run(run_demo(listen=args.listen or DEFAULT_LISTEN, token_lifetime=lifetime))
        return 0
    # The server stack (OpenTelemetry, the engine) takes a second to import; the client commands skip it.
    from broker.app import run_workers, serve  # noqa: PLC0415

    config = load_config(args.config)
    configure_logging(config.telemetry)
    listen = args.listen or config.server.listen
    if config.server.workers > 1:
        probe_shared_port(listen)
        run_workers(args.config, config, listen)
        return 0
    with bind_failures(listen):
        asyncio.run(
            serve(
                config,
                listen=listen,
                on_ready=lambda port: _print_ready(listen, port),
                config_path=args.config,
                own_process=True,
            )
        )
    return 0


def _print_ready(listen: str, port: int) -> None:
    host = listen.rsplit(":", 1)[0]
    # Logged, not printed: with log_format = "json" every line on stderr is a JSON object.
    logging.getLogger("broker").info("broker listening on %s:%d", host, port)


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
