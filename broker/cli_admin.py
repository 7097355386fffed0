"""`admin`: the AdminService of a running broker (tenants, reload, public keys), its answers as JSON.

Every subcommand takes the connection flags of `cli_connect`. A refused call is one line (code, ErrorInfo
reason, message) like `token`'s; when the status names every mistake (a BadRequest for a bad request field,
a PreconditionFailure for a refused reload), each follows on a line of its own, so that a tenant with three
bad fields is fixed in one round. grpc and the generated code are imported only after
`connection_from_args` has quieted gRPC's C core (see cli_connect).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.cli_connect import add_connection_arguments, connection_from_args
from broker.cli_errors import CommandError

if TYPE_CHECKING:
    import grpc

    from broker.api.connection import Connection
    from broker.v1 import admin_service_pb2 as pb
    from broker.v1.admin_service_pb2_grpc import AdminServiceStub

Metadata = tuple[tuple[str, str], ...]
TIMEOUT_S = 30.0
PAGE_SIZE = 100

# The top-level keys of a tenant file (broker/config/directory.py) and whether each holds a list of strings.
TENANT_KEYS: dict[str, bool] = {
    "client": False,
    "targets": True,
    "warm": True,
    "orgnr_parent": False,
    "orgnr_child": False,
    "sfm_journal_id": False,
}
REQUIRED_KEYS = ("client", "targets")


@dataclass(frozen=True, slots=True)
class _RefusedError(Exception):
    """A call the broker answered with an error: its one-line headline and every mistake it named."""

    headline: str
    mistakes: tuple[str, ...]


def add_admin_commands(commands: Any) -> None:  # argparse's subparsers action has no public type
    admin = commands.add_parser("admin", help="a running broker's AdminService: tenants, reload, public keys")
    actions = admin.add_subparsers(required=True, metavar="action")

    listing = actions.add_parser("list", help="every tenant the broker serves (JSON array)")
    listing.add_argument(
        "--page-size", type=int, default=PAGE_SIZE, help=f"tenants per call (1 to 1000, default {PAGE_SIZE})"
    )
    _finish(listing, list_command)

    get = actions.add_parser("get", help="one tenant (JSON)")
    get.add_argument("name", metavar="NAME")
    _finish(get, get_command)

    put = actions.add_parser("put", help="create or replace a tenant in the shared store")
    put.add_argument("name", metavar="NAME")
    source = put.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", type=Path, help="a tenant file, as a tenants directory holds it")
    source.add_argument("--client", help="the client (in [clients]) its tokens are fetched with")
    put.add_argument("--targets", help="comma-separated targets it may use (with --client)")
    put.add_argument("--warm", help="comma-separated targets kept warm (with --client)")
    put.add_argument("--orgnr-parent", help="organisation number of the legal entity (with --client)")
    put.add_argument("--orgnr-child", help="organisation number of the sub-unit (with --client)")
    put.add_argument("--sfm-journal-id", help="SFM's journal id of the tenant (with --client)")
    _finish(put, put_command)

    delete = actions.add_parser("delete", help="delete a tenant from the shared store")
    delete.add_argument("name", metavar="NAME")
    _finish(delete, delete_command)

    reload = actions.add_parser("reload", help="reload the configuration files now, on every replica")
    _finish(reload, reload_command)

    jwks = actions.add_parser("jwks", help="every configured client's public JWK, for Selvbetjening")
    jwks.add_argument("--client", help="only this client (prints its public JWK alone)")
    _finish(jwks, jwks_command)


def _finish(parser: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], int]) -> None:
    add_connection_arguments(parser)
    parser.set_defaults(handler=lambda args: _reporting(handler, args))


def _reporting(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """A refusal that names its mistakes is printed here, a line each (exit 2); any other is a CommandError,
    the one line `main` prints."""
    try:
        return handler(args)
    except _RefusedError as refused:
        if not refused.mistakes:
            raise CommandError(refused.headline) from None
        print(refused.headline, file=sys.stderr)
        for mistake in refused.mistakes:
            print(f"  {mistake}", file=sys.stderr)
        return 2


def list_command(args: argparse.Namespace) -> int:
    if not 1 <= args.page_size <= 1000:
        raise CommandError("--page-size must be between 1 and 1000")
    page_size: int = args.page_size

    async def every_page(stub: AdminServiceStub, metadata: Metadata) -> list[dict[str, Any]]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        tenants: list[dict[str, Any]] = []
        token = ""
        while True:
            request = pb.ListTenantsRequest(page_size=page_size, page_token=token)
            page = await stub.ListTenants(request, metadata=metadata, timeout=TIMEOUT_S)
            tenants += [_tenant_json(tenant) for tenant in page.tenants]
            if not page.next_page_token:
                return tenants
            token = page.next_page_token

    return _print(_call(args, every_page))


def get_command(args: argparse.Namespace) -> int:
    name: str = args.name

    async def get(stub: AdminServiceStub, metadata: Metadata) -> dict[str, Any]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        answer = await stub.GetTenant(pb.GetTenantRequest(tenant=name), metadata=metadata, timeout=TIMEOUT_S)
        return _tenant_json(answer.tenant)

    return _print(_call(args, get))


def put_command(args: argparse.Namespace) -> int:
    name: str = args.name
    if args.file is not None:
        given = [f"--{flag.replace('_', '-')}" for flag in SETTING_FLAGS if getattr(args, flag) is not None]
        if given:
            raise CommandError(f"admin put: --file holds the whole tenant; drop {', '.join(given)}")
        fields = _tenant_file(args.file)
    else:
        fields = _tenant_flags(args)

    async def put(stub: AdminServiceStub, metadata: Metadata) -> dict[str, Any]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        request = pb.UpsertTenantRequest(tenant=name, settings=pb.TenantSettings(**fields))
        answer = await stub.UpsertTenant(request, metadata=metadata, timeout=TIMEOUT_S)
        return {"tenant": _tenant_json(answer.tenant), "created": answer.created}

    return _print(_call(args, put))


def delete_command(args: argparse.Namespace) -> int:
    name: str = args.name

    async def delete(stub: AdminServiceStub, metadata: Metadata) -> dict[str, Any]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        request = pb.DeleteTenantRequest(tenant=name)
        await stub.DeleteTenant(request, metadata=metadata, timeout=TIMEOUT_S)
        return {"deleted": name}

    return _print(_call(args, delete))


def reload_command(args: argparse.Namespace) -> int:
    async def reload(stub: AdminServiceStub, metadata: Metadata) -> dict[str, Any]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        request = pb.ReloadConfigurationRequest()
        answer = await stub.ReloadConfiguration(request, metadata=metadata, timeout=TIMEOUT_S)
        # Every field, zeros and empty lists too: proto3's JSON would drop them, and "0 tenants" is an answer.
        return {
            "tenants": answer.tenants,
            "added_tenants": list(answer.added_tenants),
            "removed_tenants": list(answer.removed_tenants),
            "routes_added": answer.routes_added,
            "routes_removed": answer.routes_removed,
            "tokens_dropped": answer.tokens_dropped,
            "warming": answer.warming,
            "needs_restart": list(answer.needs_restart),
        }

    return _print(_call(args, reload))


def jwks_command(args: argparse.Namespace) -> int:
    async def jwks(stub: AdminServiceStub, metadata: Metadata) -> dict[str, Any]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        answer = await stub.GetPublicJwks(pb.GetPublicJwksRequest(), metadata=metadata, timeout=TIMEOUT_S)
        return {
            key.client: {
                "client_id": key.client_id,
                "kid": key.kid,
                "alg": key.alg,
                "jwk": json.loads(key.jwk_json),
            }
            for key in answer.keys
            if key.current  # the key each client signs with; `keys list` shows the replaced ones too
        }

    every = _call(args, jwks)
    if args.client is None:
        return _print(every)
    if args.client not in every:
        known = ", ".join(sorted(every)) or "none"
        raise CommandError(f"the broker has no client {args.client!r} (its clients: {known})")
    return _print(every[args.client]["jwk"])


def add_keys_list(actions: Any) -> None:  # argparse's subparsers action has no public type
    listing = actions.add_parser(
        "list", help="every active key of a running broker's clients: kid, thumbprint, where, origin, expiry"
    )
    _finish(listing, keys_list_command)


def keys_list_command(args: argparse.Namespace) -> int:
    async def listing(stub: AdminServiceStub, metadata: Metadata) -> list[dict[str, Any]]:
        from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

        answer = await stub.GetPublicJwks(pb.GetPublicJwksRequest(), metadata=metadata, timeout=TIMEOUT_S)
        return [
            {
                "client": key.client,
                "kid": key.kid,
                "alg": key.alg,
                "thumbprint": key.thumbprint,
                "location": key.location,
                "current": key.current,
                "origin": key.origin or None,
                "expires": _time(key, "expire_time"),
                "retire": _time(key, "retire_time"),
            }
            for key in answer.keys
        ]

    return _print(_call(args, listing))


def _time(key: pb.ClientPublicKey, name: str) -> str | None:
    if not key.HasField(name):
        return None
    stamp = getattr(key, name)
    return str(stamp.ToDatetime().isoformat(timespec="seconds") + "Z")


def _call(args: argparse.Namespace, work: Callable[[AdminServiceStub, Metadata], Awaitable[Any]]) -> Any:
    """Runs `work` against the broker; an error answer raises _RefusedError."""
    connection = connection_from_args(args)
    return asyncio.run(_on_channel(connection, work))


async def _on_channel(
    connection: Connection, work: Callable[[AdminServiceStub, Metadata], Awaitable[Any]]
) -> Any:
    import grpc  # noqa: PLC0415 - see the module's docstring

    from broker.v1.admin_service_pb2_grpc import AdminServiceStub  # noqa: PLC0415

    async with connection.channel() as channel:
        stub = AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        try:
            return await work(stub, connection.metadata())
        except grpc.aio.AioRpcError as exc:
            raise _refused(exc, connection.address) from None


def _refused(exc: grpc.aio.AioRpcError, address: str) -> _RefusedError:
    """The headline as `token` prints it, and the mistakes of a BadRequest or a PreconditionFailure."""
    from google.rpc import error_details_pb2  # noqa: PLC0415 - with grpc, see the module's docstring
    from grpc_status import rpc_status  # noqa: PLC0415

    reason = ""
    mistakes: list[str] = []
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        request = error_details_pb2.BadRequest()
        precondition = error_details_pb2.PreconditionFailure()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(request):
            mistakes += [f"{item.field}: {item.description}" for item in request.field_violations]
        elif detail.Unpack(precondition):
            mistakes += [f"{item.subject}: {item.description}" for item in precondition.violations]
    tag = f" [{reason}]" if reason else ""
    message = exc.details() or ""
    if not mistakes:
        return _RefusedError(f"{exc.code().name}{tag}: {message} (broker at {address})", ())
    # The message repeats the mistakes ("3 mistakes:" and a line each, or the one mistake alone); they
    # follow on lines of their own, so the headline keeps only what is not one of them.
    first = message.splitlines()[0].rstrip(":").strip() if message.strip() else ""
    if not first or first in mistakes:
        first = f"{len(mistakes)} mistake{'s' if len(mistakes) > 1 else ''}"
    return _RefusedError(f"{exc.code().name}{tag}: {first} (broker at {address}):", tuple(mistakes))


def _tenant_json(tenant: pb.Tenant) -> dict[str, Any]:
    """A tenant as `admin get` prints it: the fields of a tenant file, empty ones left out."""
    from broker.v1 import admin_service_pb2 as pb  # noqa: PLC0415 - see the module's docstring

    settings = tenant.settings
    sources = {pb.TENANT_SOURCE_FILES: "files", pb.TENANT_SOURCE_STORE: "store"}
    fields: dict[str, Any] = {
        "name": tenant.name,
        "source": sources.get(tenant.source, ""),
        "client": settings.client,
        "targets": list(settings.targets),
        "warm": list(settings.warm),
        "orgnr_parent": settings.orgnr_parent,
        "orgnr_child": settings.orgnr_child,
        "sfm_journal_id": settings.sfm_journal_id,
    }
    return {name: value for name, value in fields.items() if value}


SETTING_FLAGS = ("targets", "warm", "orgnr_parent", "orgnr_child", "sfm_journal_id")


def _tenant_flags(args: argparse.Namespace) -> dict[str, Any]:
    if not args.targets:
        raise CommandError("admin put: --client needs --targets (comma-separated target names)")
    fields: dict[str, Any] = {"client": args.client, "targets": _names(args.targets)}
    if args.warm:
        fields["warm"] = _names(args.warm)
    for name in ("orgnr_parent", "orgnr_child", "sfm_journal_id"):
        if (value := getattr(args, name)) is not None:
            fields[name] = value
    return fields


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _tenant_file(path: Path) -> dict[str, Any]:
    """The file's table, its keys and types checked here (the broker checks the values, naming each field);
    TenantSettings would otherwise fail on a wrong type with a protobuf message that names no key."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"--file: cannot read {path} ({exc.strerror})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CommandError(f"--file: {path} is not valid TOML: {exc}") from None
    for key, value in table.items():
        if key not in TENANT_KEYS:
            known = ", ".join(TENANT_KEYS)
            raise CommandError(f"--file: {path}: unknown key {key!r} (a tenant file holds {known})")
        if TENANT_KEYS[key]:
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise CommandError(f"--file: {path}: {key} must be a list of strings")
        elif not isinstance(value, str):
            raise CommandError(f"--file: {path}: {key} must be a string (in quotes)")
    missing = [key for key in REQUIRED_KEYS if key not in table]
    if missing:
        raise CommandError(f"--file: {path}: missing {' and '.join(missing)}")
    return table


def _print(value: object) -> int:
    print(json.dumps(value, indent=2))
    return 0
