"""``python -m devauthority``: run a dev authority until SIGTERM or SIGINT.

Prints one JSON line, ``{"issuer": ..., "port": ...}``, to stdout once it listens, so a parent process
can start it with ``--port 0`` and learn where it is. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from datetime import timedelta

from .registry import load_clients
from .server import start_dev_authority
from .users import load_test_users


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devauthority",
        description="A HelseID-like STS for local development and tests. Never expose it.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--clients", required=True, help="JSON file with the registered clients")
    parser.add_argument("--token-lifetime", type=int, default=300, help="access-token lifetime, seconds")
    parser.add_argument("--nonce-period", type=float, default=300.0, help="DPoP nonce rotation, seconds")
    parser.add_argument(
        "--refresh-token-lifetime",
        type=int,
        default=8 * 3600,
        help="refresh-token lifetime, seconds (absolute, from the login)",
    )
    parser.add_argument(
        "--test-users", default=None, help="JSON file with extra test users (the default one is always there)"
    )
    parser.add_argument("--issuer", default=None, help="issuer URL if not http://<host>:<port>")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    authority = await start_dev_authority(
        host=args.host,
        port=args.port,
        clients=load_clients(args.clients),
        token_lifetime=timedelta(seconds=args.token_lifetime),
        nonce_period=timedelta(seconds=args.nonce_period),
        issuer=args.issuer,
        test_users=load_test_users(args.test_users) if args.test_users else (),
        refresh_token_lifetime=timedelta(seconds=args.refresh_token_lifetime),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(json.dumps({"issuer": authority.issuer, "port": authority.port}), flush=True)
    try:
        await stop.wait()
    finally:
        await authority.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        asyncio.run(_serve(args))
    except (OSError, ValueError) as exc:
        # A bad client file or a busy port: say which, without a traceback.
        print(f"dev authority failed to start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
