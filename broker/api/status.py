"""The one place where broker errors become gRPC statuses (AIP-193).

Every status carries an `ErrorInfo` (domain `broker.helseid`, a stable UPPER_SNAKE reason, lowerCamel
metadata with every value the message names); INVALID_ARGUMENT adds a `BadRequest`, UNAVAILABLE a `RetryInfo`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from broker.errors import (
    BrokerError,
    ConfigurationError,
    IdpRejectedError,
    IdpUnavailableError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    Reason,
    UnauthenticatedError,
)

DOMAIN = "broker.helseid"
_log = logging.getLogger(__name__)

_CODES: tuple[tuple[type[BrokerError], grpc.StatusCode], ...] = (
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    # The caller asked for something valid; the broker's registration or configuration is what is wrong.
    (IdpRejectedError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConfigurationError, grpc.StatusCode.FAILED_PRECONDITION),
    (IdpUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
)


def status_code(error: BrokerError) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.UNAVAILABLE if error.retryable else grpc.StatusCode.INTERNAL


# Whatever an error echoes (a tenant name, a URL) is cut to these lengths, so a status stays well under
# 1 KB however large the caller's input was.
MAX_MESSAGE = 300
MAX_METADATA_VALUE = 120


def to_status(error: BrokerError) -> grpc.Status:
    code = status_code(error)
    metadata = {key: _cut(value, MAX_METADATA_VALUE) for key, value in error.metadata.items()}
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))]
    if isinstance(error, InvalidRequestError):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=_cut(error.field, MAX_METADATA_VALUE), description=_cut(error.description, MAX_MESSAGE)
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    if isinstance(error, IdpUnavailableError | RateLimitedError):
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=_duration(error.retry_after))))
    status = status_pb2.Status(code=code.value[0], message=_cut(error.message, MAX_MESSAGE), details=details)
    return rpc_status.to_status(status)


def deadline_status() -> grpc.Status:
    """The caller's deadline passed while the broker worked for it."""
    info = error_details_pb2.ErrorInfo(reason=Reason.DEADLINE_EXCEEDED, domain=DOMAIN)
    status = status_pb2.Status(
        code=code_pb2.DEADLINE_EXCEEDED, message="the caller's deadline passed", details=[_pack(info)]
    )
    return rpc_status.to_status(status)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def internal_status(exc: BaseException) -> grpc.Status:
    """An unexpected exception: logged with an incident id the caller also gets, without its text."""
    incident = uuid.uuid4().hex
    _log.error("unexpected error, incident %s", incident, exc_info=exc)
    info = error_details_pb2.ErrorInfo(reason=Reason.INTERNAL, domain=DOMAIN, metadata={"incident": incident})
    status = status_pb2.Status(
        code=code_pb2.INTERNAL, message=f"internal error (incident {incident})", details=[_pack(info)]
    )
    return rpc_status.to_status(status)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _duration(delta: timedelta) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromTimedelta(delta)
    return duration
