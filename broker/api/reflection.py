"""Server reflection in both versions tools ask for: `grpc.reflection.v1` and the older `v1alpha`.

grpcio-reflection ships only v1alpha. v1 is the same protocol under another package name: the messages, their
fields and numbers are identical (grpc-go serves both from one implementation by copying fields), so the v1
service is the same servicer with v1alpha's messages on the wire. Only the descriptor differs, and reflection
must be able to describe itself: the v1 file is v1alpha's, renamed, added to the default descriptor pool that
the servicer reads.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import _async as reflection_aio  # exposed as reflection.aio at run time
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> None:
    """Serves reflection v1 and v1alpha on `server`, listing `service_names` and both reflection services."""
    _add_v1_descriptor()
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection_aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1_info = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": v1_info}),)
    )


def _add_v1_descriptor() -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.Add(v1_file_proto())
    # Once per process: a second server (tests start many) finds it there.


def v1_file_proto() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's file descriptor as `grpc/reflection/v1/reflection.proto`, package `grpc.reflection.v1`."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old_prefix, new_prefix = f".{proto.package}.", f".{V1_PACKAGE}."

    def renamed(type_name: str) -> str:
        return new_prefix + type_name.removeprefix(old_prefix)

    proto.name, proto.package = V1_FILE, V1_PACKAGE
    # v1alpha's options say deprecated and name v1alpha's Java and Go packages; v1 is neither.
    proto.options.Clear()
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.java_outer_classname = "ServerReflectionProto"
    proto.options.java_multiple_files = True
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    for message in proto.message_type:
        for message_field in message.field:
            # Only the fields of a message type have one (setting "" would mark it present on a string).
            if message_field.type_name.startswith(old_prefix):
                message_field.type_name = renamed(message_field.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    return proto
