"""A seeded, structured fuzz of every field of every request, against a broker process and the dev authority.

Requests are built from each RPC's proto descriptor, so a new field is fuzzed without touching this test.
Strings range from valid names to control characters, non-ASCII, percent-encoded tricks and 70 KB runs;
durations cover the whole int64/int32 range. Whatever arrives, the broker must answer with a status a
caller can act on: never UNKNOWN or INTERNAL, and never a message or status over 1 KB.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, message_factory
from google.protobuf.descriptor import Descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.v1 import admin_service_pb2 as admin_pb
from broker.v1 import admin_service_pb2_grpc as admin_grpc
from broker.v1 import token_broker_service_pb2 as pb
from broker.v1 import token_broker_service_pb2_grpc as pb_grpc
from tests.fixtures.broker_server import sfm_clients
from tests.fixtures.redis_server import free_port
from tests.fixtures.sts import running_sts
from tests.observability.broker_process import broker_process, has_started, wait_until, write_config

SERVICES = {
    "TokenBrokerService": (
        pb.DESCRIPTOR.services_by_name["TokenBrokerService"],
        pb_grpc.TokenBrokerServiceStub,
    ),
    "AdminService": (admin_pb.DESCRIPTOR.services_by_name["AdminService"], admin_grpc.AdminServiceStub),
}
EXAMPLES_PER_RPC = 120
MAX_STATUS_BYTES = 1024

PLAUSIBLE = [
    "oslo",
    "bergen",
    "sfm",
    "GET",
    "POST",
    "CONNECT",
    "https://sfm.test.nhn.no/api/x",
    "https://sfm.test.nhn.no/api/../admin",
    "https://sfm.test.nhn.no/api/%2e%2e/admin",
    "https://user@sfm.test.nhn.no/api/",
    "https://[sfm.test.nhn.no/api",
    "https://sfm.test.nhn.no:99999/api/",
    "http://2130706433/",
    "eyJhbGciOiJub25lIn0.e30.",
    "%00",
    "\x00",
    "\u202e",
    "é",
    "*",
    "",
]
strings = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.text(max_size=64),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=3000),
    st.builds(
        lambda n, c: c * n, st.integers(0, 70_000), st.sampled_from(["a", "/", "%2e", "é", "\x7f", "."])
    ),
)
durations = st.one_of(
    st.just(duration_pb2.Duration()),
    st.just(duration_pb2.Duration()),
    st.builds(
        lambda s, n: duration_pb2.Duration(seconds=s, nanos=n),
        st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 90_000)),
        st.one_of(st.integers(-(2**31), 2**31 - 1), st.just(0)),
    ),
)


# Valid values, drawn three times as often as anything else, so the fuzz also gets past the first check of
# a request and reaches the engine, the URL policy and the STS with the other fields' odd values.
VALID: dict[str, list[str]] = {
    "tenant": ["oslo", "bergen"],
    "target": ["sfm"],
    "targets": ["sfm"],
    "http_method": ["GET", "POST"],
    "url": ["https://sfm.test.nhn.no/api/x"],
    "session_id": ["A" * 43],
    "state": ["s" * 43],
    "code": ["c" * 43],
    "dpop_nonce": ["nonce-1"],
    "client": ["multi"],
    "patient_id": ["01010150306"],
    "access_basis": ["SAMTYKKE"],
    "authorization": ["LE"],
}


def field_strings(name: str) -> st.SearchStrategy[str]:
    if name not in VALID:
        return strings
    valid = st.sampled_from(VALID[name])
    return st.one_of(valid, valid, valid, strings)


def request_strategy(descriptor: Descriptor) -> st.SearchStrategy[Any]:
    message_class = message_factory.GetMessageClass(descriptor)
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.Duration":
            parts[field.name] = durations
        elif field.message_type is not None:  # a nested message (a care context, tenant settings), or none
            parts[field.name] = st.one_of(st.none(), request_strategy(field.message_type))
        elif field.type == field.TYPE_BOOL:
            parts[field.name] = st.booleans()
        elif field.type in (field.TYPE_INT32, field.TYPE_INT64):
            parts[field.name] = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(0, 1200))
        elif field.is_repeated:
            parts[field.name] = st.lists(field_strings(field.name), max_size=20)
        else:
            parts[field.name] = field_strings(field.name)
    return st.fixed_dictionaries(parts).map(
        lambda values: message_class(**{name: value for name, value in values.items() if value is not None})
    )


@pytest.fixture(scope="module")
def broker_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("fuzz")
    clients = sfm_clients()
    with running_sts("devauthority", workdir, clients) as sts:
        config = write_config(workdir, sts.issuer, clients, 'log_level = "INFO"')
        with broker_process(config, free_port()) as broker:
            wait_until(broker, lambda: has_started(broker), "the broker's start")
            yield broker.address
            assert "Traceback" not in broker.output() or "incident" in broker.output()


def status_size(error: grpc.RpcError) -> int:
    trailing = error.trailing_metadata() or ()  # type: ignore[attr-defined]
    return max([len(error.details() or "")] + [len(value) for key, value in trailing if key.endswith("-bin")])  # type: ignore[attr-defined]


def call(stub: Any, streaming: bool, rpc: str, request: Any) -> tuple[grpc.StatusCode, int, str]:
    """The answer's code, the size of its status and its message."""
    method = getattr(stub, rpc)
    try:
        if streaming:
            stream = method(request, timeout=10)
            try:
                next(stream)
            finally:
                stream.cancel()
        else:
            method(request, timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
        if code is grpc.StatusCode.CANCELLED:
            return grpc.StatusCode.OK, 0, ""  # our own cancel after the first message of a stream
        return code, status_size(error), str(error.details())  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, 0, ""


@pytest.mark.parametrize(
    ("service", "rpc"),
    [(name, rpc) for name, (descriptor, _) in SERVICES.items() for rpc in sorted(descriptor.methods_by_name)],
)
def test_no_field_value_gets_an_unknown_or_internal_answer_or_a_large_status(
    broker_address: str, service: str, rpc: str
) -> None:
    codes: Counter[str] = Counter()
    descriptor, stub_class = SERVICES[service]
    method = descriptor.methods_by_name[rpc]
    with grpc.insecure_channel(broker_address) as channel:
        stub = stub_class(channel)

        @settings(
            max_examples=EXAMPLES_PER_RPC,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(request_strategy(method.input_type))
        def fuzz(request: Any) -> None:
            code, size, message = call(stub, method.server_streaming, rpc, request)
            codes[code.name] += 1
            assert code not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), (rpc, code, message)
            assert size <= MAX_STATUS_BYTES, (rpc, code, size)

        fuzz()
    print(f"\nfuzz {rpc}: {sum(codes.values())} requests: {dict(sorted(codes.items()))}; 0 UNKNOWN/INTERNAL")
