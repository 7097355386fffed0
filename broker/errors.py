"""One error tree for the whole broker.

    BrokerError                      reason, retryable, metadata
    ├── InvalidRequestError          a caller's input is malformed (field named)
    ├── NotFoundError                an unknown tenant or target
    ├── UnauthenticatedError         the caller presented no credential, or an unknown one
    ├── PermissionDeniedError        a target the tenant may not use, a URL the target does not allow
    ├── ConfigurationError           the configuration is invalid (field named); stops the start
    ├── ProtocolError                a value from the outside broke a protocol rule (bad token response)
    ├── IdpRejectedError             the STS answered with an OAuth error (oauth_error is data)
    ├── IdpUnavailableError          the STS could not be reached, timed out or answered 5xx (retryable)
    └── StoreUnavailableError        Redis failed; the engine treats it as a miss and goes on without it

Every class has a stable UPPER_SNAKE `reason`; `api/status.py` is the one place that turns these into gRPC
statuses. Messages never contain a token, an assertion, a proof or a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    reason: str = "BROKER_ERROR"
    retryable: bool = False

    def __init__(self, message: str, *, reason: str | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: Mapping[str, str] = metadata


class InvalidRequestError(BrokerError):
    """A request field is missing or malformed; `field` names it."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"{field}: {message}", reason=reason, field=field)
        self.field = field
        self.description = message


class NotFoundError(BrokerError):
    """An unknown tenant or target."""

    reason = "NOT_FOUND"


class UnauthenticatedError(BrokerError):
    """The caller presented no credential, or one the broker does not know."""

    reason = "CALLER_UNAUTHENTICATED"


class PermissionDeniedError(BrokerError):
    """The request names things that exist but may not be combined (tenant without that target, URL)."""

    reason = "PERMISSION_DENIED"


class ConfigurationError(BrokerError):
    """The configuration is invalid; `field` is the dotted path of the offending value."""

    reason = "INVALID_CONFIGURATION"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class ProtocolError(BrokerError):
    """A value received from the outside (token response, JWT) breaks a protocol rule."""

    reason = "PROTOCOL_VIOLATION"


class IdpRejectedError(BrokerError):
    """The STS answered with an OAuth error such as `invalid_client` or `invalid_scope`."""

    reason = "STS_REJECTED"

    def __init__(self, oauth_error: str, description: str, *, status: int, issuer: str) -> None:
        text = f"the STS rejected the request: {oauth_error}"
        if description:
            text += f" ({description})"
        super().__init__(text, oauthError=oauth_error, issuer=issuer, httpStatus=str(status))
        self.oauth_error = oauth_error
        self.description = description
        self.status = status


class IdpUnavailableError(BrokerError):
    """The STS could not be reached, timed out, or answered 5xx; try again after `retry_after`."""

    reason = "STS_UNAVAILABLE"
    retryable = True

    def __init__(self, message: str, *, issuer: str, retry_after: timedelta = timedelta(seconds=1)) -> None:
        super().__init__(message, issuer=issuer)
        self.retry_after = retry_after


class StoreUnavailableError(BrokerError):
    """The shared store (Redis) could not be reached or failed."""

    reason = "STORE_UNAVAILABLE"
    retryable = True
