"""`token` and `headers`: one call to a running broker, its answer on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from broker.cli_connect import add_connection_arguments, connection_from_args
from broker.cli_errors import CommandError

if TYPE_CHECKING:
    from broker.api.connection import Connection


def add_call_commands(commands: Any) -> None:  # argparse's subparsers action has no public type
    token = commands.add_parser("token", help="ask a running broker for a token (JSON)")
    token.add_argument("--tenant", required=True)
    token.add_argument("--target", required=True)
    token.add_argument("--url", help="the headers for a request to this URL instead (same as: headers)")
    _request_arguments(token, url_required=False)
    token.set_defaults(handler=token_command)

    headers = commands.add_parser("headers", help="the Authorization and DPoP headers for one HTTP request")
    headers.add_argument("--tenant", required=True)
    headers.add_argument("--target", required=True)
    headers.add_argument("--url", required=True, help="the request's absolute URL")
    _request_arguments(headers, url_required=True)
    headers.set_defaults(handler=headers_command)


def _request_arguments(parser: argparse.ArgumentParser, *, url_required: bool) -> None:
    scope = "" if url_required else " (with --url)"
    parser.add_argument("--method", default="GET", help=f"the request's HTTP method{scope}")
    parser.add_argument("--dpop-nonce", default="", help=f"a DPoP-Nonce the API sent last{scope}")
    parser.add_argument(
        "--format",
        choices=("json", "http"),
        default="json",
        help=f"json, or http: 'Name: value' lines{scope}",
    )
    add_connection_arguments(parser)


def token_command(args: argparse.Namespace) -> int:
    if args.url:
        return headers_command(args)
    connection = connection_from_args(args)
    from broker.api import client  # noqa: PLC0415 - grpc loads after connection_from_args quieted its core

    print(_call(connection, client.get_token_json(connection, args.tenant, args.target)))
    return 0


def headers_command(args: argparse.Namespace) -> int:
    connection = connection_from_args(args)
    from broker.api import client  # noqa: PLC0415 - grpc loads after connection_from_args quieted its core

    call = client.authorize_request_json(
        connection,
        args.tenant,
        args.target,
        http_method=args.method,
        url=args.url,
        dpop_nonce=args.dpop_nonce,
    )
    text = _call(connection, call)
    if args.format == "http":
        answer = json.loads(text)
        print(f"Authorization: {answer['authorization']}")
        if answer.get("dpop"):
            print(f"DPoP: {answer['dpop']}")
    else:
        print(text)
    return 0


def _call(connection: Connection, call: Coroutine[Any, Any, str]) -> str:
    from broker.api.client import CallFailedError  # noqa: PLC0415 - loaded by the caller already

    try:
        return asyncio.run(call)
    except CallFailedError as exc:
        reason = f" [{exc.reason}]" if exc.reason else ""
        raise CommandError(f"{exc.code}{reason}: {exc.message} (broker at {connection.address})") from None
