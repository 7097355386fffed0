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
    ├── StoreUnavailableError        Redis failed; the engine treats it as a miss and goes on without it
    └── RateLimitedError             a caller drove more STS traffic than its rate allows (retry later)

Every error carries one `Reason` (a stable UPPER_SNAKE name, the `ErrorInfo.reason` callers see);
`api/status.py` is the one place that turns these into gRPC statuses. Messages never contain a token, an
assertion, a proof or a key.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import timedelta


class Reason(enum.StrEnum):
    """Every `ErrorInfo.reason` the broker answers with: one enumeration, each documented in the README."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
    TARGET_NOT_FOUND = "TARGET_NOT_FOUND"
    NOT_FOUND = "NOT_FOUND"
    CALLER_UNAUTHENTICATED = "CALLER_UNAUTHENTICATED"
    CALLER_NOT_ALLOWED = "CALLER_NOT_ALLOWED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    TARGET_NOT_ALLOWED = "TARGET_NOT_ALLOWED"
    URL_NOT_ALLOWED = "URL_NOT_ALLOWED"
    SESSIONS_DISABLED = "SESSIONS_DISABLED"
    LOGIN_NOT_CONFIGURED = "LOGIN_NOT_CONFIGURED"
    REDIRECT_URI_NOT_ALLOWED = "REDIRECT_URI_NOT_ALLOWED"
    LOGIN_STATE_UNKNOWN = "LOGIN_STATE_UNKNOWN"
    ISSUER_MISMATCH = "ISSUER_MISMATCH"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    TARGET_NOT_IN_SESSION = "TARGET_NOT_IN_SESSION"
    LOGIN_REQUIRED = "LOGIN_REQUIRED"
    LIFETIME_UNAVAILABLE = "LIFETIME_UNAVAILABLE"
    RATE_LIMITED = "RATE_LIMITED"
    TENANT_MANAGED_BY_FILES = "TENANT_MANAGED_BY_FILES"
    TOO_MANY_TENANTS = "TOO_MANY_TENANTS"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    INVALID_CONFIGURATION = "INVALID_CONFIGURATION"
    PROTOCOL_VIOLATION = "PROTOCOL_VIOLATION"
    STS_REJECTED = "STS_REJECTED"
    STS_UNAVAILABLE = "STS_UNAVAILABLE"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    reason: Reason = Reason.INTERNAL
    retryable: bool = False

    def __init__(self, message: str, *, reason: Reason | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: Mapping[str, str] = metadata


class InvalidRequestError(BrokerError):
    """A request field is missing or malformed; `field` names it (the first, when `violations` lists more:
    every `(field, message)` found, so a caller fixes a whole request at once)."""

    reason = Reason.INVALID_ARGUMENT

    def __init__(
        self,
        field: str,
        message: str,
        *,
        reason: Reason | None = None,
        violations: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.violations: tuple[tuple[str, str], ...] = tuple(violations) or ((field, message),)
        text = "; ".join(f"{path}: {description}" for path, description in self.violations)
        super().__init__(text, reason=reason, field=field)
        self.field = field
        self.description = message


class NotFoundError(BrokerError):
    """An unknown tenant or target."""

    reason = Reason.NOT_FOUND


class UnauthenticatedError(BrokerError):
    """The caller presented no credential, or one the broker does not know."""

    reason = Reason.CALLER_UNAUTHENTICATED


class PermissionDeniedError(BrokerError):
    """The request names things that exist but may not be combined (tenant without that target, URL)."""

    reason = Reason.PERMISSION_DENIED


class ConfigurationError(BrokerError):
    """The configuration is invalid; `field` is the dotted path of the (first) offending value, `problems`
    every `(field, message)` found, in file order, so one run shows an operator every mistake."""

    reason = Reason.INVALID_CONFIGURATION

    def __init__(self, field: str, message: str, *, problems: Sequence[tuple[str, str]] = ()) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems) or ((field, message),)
        lines = [f"{path}: {text}" for path, text in self.problems]
        summary = lines[0] if len(lines) == 1 else f"{len(lines)} mistakes:\n  " + "\n  ".join(lines)
        super().__init__(summary, field=field)
        self.field = field


class ProtocolError(BrokerError):
    """A value received from the outside (token response, JWT) breaks a protocol rule."""

    reason = Reason.PROTOCOL_VIOLATION


class IdpRejectedError(BrokerError):
    """The STS answered with an OAuth error such as `invalid_client` or `invalid_scope`."""

    reason = Reason.STS_REJECTED

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

    reason = Reason.STS_UNAVAILABLE
    retryable = True

    def __init__(self, message: str, *, issuer: str, retry_after: timedelta = timedelta(seconds=1)) -> None:
        super().__init__(message, issuer=issuer)
        self.retry_after = retry_after


class StoreUnavailableError(BrokerError):
    """The shared store (Redis) could not be reached or failed."""

    reason = Reason.STORE_UNAVAILABLE
    retryable = True


class TooManyStreamsError(BrokerError):
    """A broker process holds as many WatchToken streams as `[server] max_watch_streams` allows."""

    reason = Reason.TOO_MANY_STREAMS
    retryable = True

    def __init__(self, message: str, *, retry_after: timedelta, **metadata: str) -> None:
        super().__init__(message)
        self.metadata = metadata
        self.retry_after = retry_after


class RateLimitedError(BrokerError):
    """A caller drove more STS traffic (logins, exchanges, session ends) than its rate allows."""

    reason = Reason.RATE_LIMITED
    retryable = True

    def __init__(self, message: str, *, retry_after: timedelta, **metadata: str) -> None:
        super().__init__(message)
        self.metadata = metadata
        self.retry_after = retry_after
