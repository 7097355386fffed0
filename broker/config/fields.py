"""Value types of the configuration file: each checks one kind of value and says what it must be.

`described(message)` replaces pydantic's own wording for a value, so an operator reads one sentence about the
field (`must be a whole number from 1 to 64`) whether its type or its range was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, WrapValidator

from broker.config.problems import invalid
from broker.config.settings import LOG_LEVELS
from broker.errors import InvalidRequestError
from broker.protocol import helseid, rfc3986

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def described(message: str) -> WrapValidator:
    def wrap(value: Any, handler: Callable[[Any], Any]) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise invalid(message) from None

    return WrapValidator(wrap)


def checked_by(check: Callable[[str], str]) -> AfterValidator:
    """Runs a domain check that raises ValueError or InvalidRequestError with the message to show."""

    def run(value: str) -> str:
        try:
            return check(value)
        except InvalidRequestError as exc:
            raise invalid(exc.description) from None
        except ValueError as exc:
            raise invalid(str(exc)) from None

    return AfterValidator(run)


def _absolute_url(value: str) -> str:
    parts = urlsplit(value)
    loopback = parts.hostname in LOOPBACK_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError("must be an https URL (http only on loopback)")
    if not parts.hostname:
        raise ValueError("must be an absolute URL")
    return value


def _url_prefix(value: str) -> str:
    if "?" in value or "#" in value:
        raise ValueError("a URL prefix has no query or fragment")
    # Normalised once here, so requests compare against the form their own URLs are normalised to.
    return rfc3986.normalize_http_url(value)


def _host_port(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be 'host:port'")
    return value


def _http_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http or https URL")
    return value


def _pattern(pattern: str, form: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise invalid(f"must be {form}")
        return value

    return AfterValidator(check)


def _listen(value: str) -> str:
    if ":" not in value:
        raise ValueError("must be 'host:port'")
    return value


def _log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.upper()


def _orgnr(value: str) -> str:
    return helseid.validate_orgnr(value, "orgnr")


def _journal_id(value: str) -> str:
    return helseid.validate_journal_id(value, "sfm_journal_id")


Name = Annotated[str, Field(min_length=1), described("must be a non-empty string")]
Names = Annotated[list[Name], described("must be a list of non-empty strings")]
AbsoluteUrl = Annotated[str, described("must be a URL string"), checked_by(_absolute_url)]
# HelseID's discovery gives the issuer without a trailing slash; the assertion's aud must match exactly.
Issuer = Annotated[AbsoluteUrl, AfterValidator(lambda value: value.rstrip("/"))]
UrlPrefix = Annotated[str, described("must be a URL string"), checked_by(_url_prefix)]
HostPort = Annotated[str, described("must be 'host:port'"), checked_by(_host_port)]
HttpEndpoint = Annotated[str, described("must be an http or https URL"), checked_by(_http_endpoint)]
Listen = Annotated[str, described("must be 'host:port'"), checked_by(_listen)]
LogLevel = Annotated[str, described(f"must be one of {', '.join(LOG_LEVELS)}"), checked_by(_log_level)]
Orgnr = Annotated[str, described("must be a string"), checked_by(_orgnr)]
JournalId = Annotated[str, described("must be a string"), checked_by(_journal_id)]
Seconds = Annotated[float, Field(ge=0), described("must be a number of seconds, zero or more")]


# Requests per second: above 0, at most 10 000 (more would be a typo, not a plan).
RequestRate = Annotated[
    float, Field(gt=0, le=10_000), described("must be a number above 0 and at most 10000")
]
Fraction = Annotated[float, Field(gt=0, le=1), described("must be a number above 0 and at most 1")]


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# What each identity must look like: SPIFFE ID (SPIFFE-ID §2), DNS name (no wildcard), and a namespace (a
# DNS label) with a service account's name (a DNS subdomain), as Kubernetes names objects.
SpiffeId = Annotated[
    str,
    described("must be a string"),
    _pattern(
        r"spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*",
        "a SPIFFE ID, spiffe://<trust domain>/<path>",
    ),
]
DnsName = Annotated[
    str,
    # Compared with the certificate's SANs the same way: lower case, without the root's dot.
    BeforeValidator(lambda value: value.lower().rstrip(".") if isinstance(value, str) else value),
    described("must be a string"),
    _pattern(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}", "a DNS name (no wildcard)"),
]
ServiceAccountName = Annotated[
    str,
    described("must be a string"),
    _pattern(rf"{_LABEL}:[a-z0-9]([a-z0-9.-]{{0,251}}[a-z0-9])?", "'<namespace>:<name>'"),
]
