"""The one place where broker errors become gRPC statuses (AIP-193).

Every status carries an `ErrorInfo` (domain `broker.helseid`, a stable UPPER_SNAKE reason, lowerCamel
metadata with every value the message names); INVALID_ARGUMENT adds a `BadRequest` (every bad field), an
invalid configuration a `PreconditionFailure` (every mistake), UNAVAILABLE a `RetryInfo`.
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
    IdpUnavailableError,
    InvalidRequestError,
    RateLimitedError,
    Reason,
    TooManyStreamsError,
)

DOMAIN = "broker.helseid"
_log = logging.getLogger(__name__)

_C = grpc.StatusCode
# Every reason's gRPC code: the one mapping, checked complete by tests/contract/test_reasons.py and listed in
# the README's error table.
REASON_CODES: dict[Reason, grpc.StatusCode] = {
    Reason.INVALID_ARGUMENT: _C.INVALID_ARGUMENT,
    Reason.LOGIN_STATE_UNKNOWN: _C.INVALID_ARGUMENT,
    Reason.ISSUER_MISMATCH: _C.INVALID_ARGUMENT,
    Reason.REDIRECT_URI_NOT_ALLOWED: _C.INVALID_ARGUMENT,
    Reason.LIFETIME_UNAVAILABLE: _C.INVALID_ARGUMENT,
    Reason.NOT_FOUND: _C.NOT_FOUND,
    Reason.TENANT_NOT_FOUND: _C.NOT_FOUND,
    Reason.TARGET_NOT_FOUND: _C.NOT_FOUND,
    Reason.SESSION_NOT_FOUND: _C.NOT_FOUND,
    Reason.SESSION_EXPIRED: _C.NOT_FOUND,
    Reason.CALLER_UNAUTHENTICATED: _C.UNAUTHENTICATED,
    Reason.PERMISSION_DENIED: _C.PERMISSION_DENIED,
    Reason.CALLER_NOT_ALLOWED: _C.PERMISSION_DENIED,
    Reason.TARGET_NOT_ALLOWED: _C.PERMISSION_DENIED,
    Reason.URL_NOT_ALLOWED: _C.PERMISSION_DENIED,
    Reason.TARGET_NOT_IN_SESSION: _C.PERMISSION_DENIED,
    Reason.LOGIN_REQUIRED: _C.PERMISSION_DENIED,
    Reason.SESSIONS_DISABLED: _C.PERMISSION_DENIED,
    Reason.LOGIN_NOT_CONFIGURED: _C.PERMISSION_DENIED,
    Reason.RATE_LIMITED: _C.RESOURCE_EXHAUSTED,
    Reason.TOO_MANY_TENANTS: _C.RESOURCE_EXHAUSTED,
    Reason.TOO_MANY_STREAMS: _C.RESOURCE_EXHAUSTED,
    Reason.TENANT_MANAGED_BY_FILES: _C.FAILED_PRECONDITION,
    # The caller asked for something valid; the broker's registration, configuration or its STS is wrong.
    Reason.STS_REJECTED: _C.FAILED_PRECONDITION,
    Reason.INVALID_CONFIGURATION: _C.FAILED_PRECONDITION,
    Reason.PROTOCOL_VIOLATION: _C.FAILED_PRECONDITION,
    Reason.STS_UNAVAILABLE: _C.UNAVAILABLE,
    Reason.STORE_UNAVAILABLE: _C.UNAVAILABLE,
    Reason.DEADLINE_EXCEEDED: _C.DEADLINE_EXCEEDED,
    Reason.INTERNAL: _C.INTERNAL,
}


# Whatever an error echoes (a tenant name, a URL) is cut to these lengths, so a status stays well under
# 1 KB however large the caller's input was.
MAX_MESSAGE = 300
MAX_METADATA_VALUE = 120
MAX_VIOLATIONS = 20  # a BadRequest names at most this many fields


def status_code(error: BrokerError) -> grpc.StatusCode:
    return REASON_CODES[error.reason]


def to_status(error: BrokerError) -> grpc.Status:
    code = status_code(error)
    metadata = {key: _cut(value, MAX_METADATA_VALUE) for key, value in error.metadata.items()}
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))]
    if isinstance(error, InvalidRequestError):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(
                field=_cut(path, MAX_METADATA_VALUE), description=_cut(description, MAX_MESSAGE)
            )
            for path, description in error.violations[:MAX_VIOLATIONS]
        ]
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(error, ConfigurationError):  # a refused reload: every mistake, by its path in the files
        failures = [
            error_details_pb2.PreconditionFailure.Violation(
                type="CONFIGURATION",
                subject=_cut(path, MAX_METADATA_VALUE),
                description=_cut(text, MAX_MESSAGE),
            )
            for path, text in error.problems[:MAX_VIOLATIONS]
        ]
        details.append(_pack(error_details_pb2.PreconditionFailure(violations=failures)))
    if isinstance(error, IdpUnavailableError | RateLimitedError | TooManyStreamsError):
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
