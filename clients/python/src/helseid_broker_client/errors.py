"""The broker's errors as typed values: the gRPC code, the ErrorInfo reason and the RetryInfo delay."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

#: The google.rpc.ErrorInfo domain of every error the broker returns.
ERROR_DOMAIN = "broker.helseid"
_DETAILS_KEY = "grpc-status-details-bin"


class BrokerError(Exception):
    """A failed broker call.

    ``reason`` is the broker's stable ``ErrorInfo.reason`` (such as ``TENANT_NOT_FOUND``; empty when the
    status carries none, e.g. a connection failure); branch on it, never on the message. ``retry_delay`` is
    the ``RetryInfo`` delay in seconds (or None), ``code`` the ``grpc.StatusCode``, ``metadata`` the
    ErrorInfo's metadata.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        retry_delay: float | None = None,
        metadata: Mapping[str, str] | None = None,
        domain: str = "",
    ) -> None:
        super().__init__(f"{code.name}: {reason + ': ' if reason else ''}{message}")
        self.code = code
        self.message = message
        self.reason = reason
        self.retry_delay = retry_delay
        self.metadata: dict[str, str] = dict(metadata or {})
        self.domain = domain

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> BrokerError:
        """Reads the status details (``grpc-status-details-bin``) of a failed sync or asyncio call."""
        call: Any = error
        code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
        message = (call.details() if hasattr(call, "details") else None) or ""
        trailers = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
        reason, domain, metadata, retry_delay = "", "", {}, None
        status = _status_of(trailers)
        if status is not None:
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    if not reason or info.domain == ERROR_DOMAIN:
                        reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    retry_delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
        return cls(code, message, reason=reason, retry_delay=retry_delay, metadata=metadata, domain=domain)


def _status_of(trailers: Iterable[Any] | None) -> status_pb2.Status | None:
    for item in trailers or ():
        key, value = item[0], item[1]
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except Exception:  # a malformed trailer is no reason to hide the call's own error
                return None
            return status
    return None
