"""RFC 3986: Uniform Resource Identifier (URI): Generic Syntax. https://www.rfc-editor.org/rfc/rfc3986

Implements Appendix B (splitting a URI into its components), §5.2.4 (remove_dot_segments), §6.2.2.1 and
§6.2.2.2 (percent-encoding: upper-case hex, unreserved characters decoded) and §6.2.3 (default port and
empty path), and on top of them `normalize_http_url`: the one form of an http(s) request URL the broker
mints DPoP proofs for (the `htu` of RFC 9449 §4.2, without query and fragment).

`normalize_http_url` is strict on purpose. An allowed prefix is only a boundary if every server between the
caller and the API reads the URL the way the broker does, so anything that parsers are known to read
differently (OWASP's SSRF and path traversal material) is refused rather than guessed at: user information,
backslashes, encoded slashes and percent signs, dot segments in disguise (`..;`, `%c0%ae`, full-width dots),
numeric host forms other than dotted decimal, non-canonical IPv6, zone ids, control characters and
whitespace. Nothing here caches: the input is the caller's, and `urllib.parse.urlsplit` (which keeps its own
cache of recent URLs) is never called.
"""

from __future__ import annotations

import ipaddress
import re
import string
import unicodedata
from typing import Final
from urllib.parse import unquote_to_bytes

from broker.errors import InvalidRequestError, Reason

# Checked before anything else reads the URL; the API's request limits quote it.
MAX_URL_LENGTH: Final = 2048

DEFAULT_PORTS: Final = {"https": 443, "http": 80}
# Plain http only to the local machine, as the configuration allows it (config.py `_absolute_url`).
LOOPBACK_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})

_UNRESERVED: Final = frozenset(string.ascii_letters + string.digits + "-._~")  # §2.3
# §2: a URI is made of unreserved and reserved characters and "%"; anything else (controls, space,
# backslash, quotes, non-ASCII) is not a URI at all, and clients disagree on how to repair it.
_URI_CHARS: Final = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]*")
_SPLIT: Final = re.compile(r"(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?")  # App. B
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")  # §3.1
_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_ENCODED_CONTROL: Final = re.compile(r"%(?:[01][0-9A-Fa-f]|7[Ff])")  # C0 controls and DEL
# After §6.2.2 normalisation: "/", "\" and "%" itself, encoded, which servers decode before routing.
_PATH_AMBIGUOUS: Final = re.compile(r"%(?:2F|5C|25)")
_PORT: Final = re.compile(r"[1-9][0-9]{0,4}")
_LABEL: Final = re.compile(r"[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?")  # RFC 1123 §2.1
# WHATWG URL §3.5 "ends in a number": such a host is parsed as IPv4, in decimal, octal or hex.
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_DECIMAL: Final = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IPV6_CHARS: Final = re.compile(r"[0-9a-f:.]+")


def split(uri: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    """Scheme, authority, path, query and fragment of a URI reference (Appendix B); absent ones are None."""
    match = _SPLIT.fullmatch(uri)
    if match is None:  # the expression matches every string without line breaks
        raise ValueError("not a URI reference")
    scheme, authority, path, query, fragment = match.groups()
    return scheme, authority, path, query, fragment


def normalize_percent_encoding(text: str) -> str:
    """§6.2.2.1 (hex digits upper-cased) and §6.2.2.2 (unreserved characters decoded).

    ValueError when a "%" is not followed by two hex digits (§2.1).
    """
    if _BAD_ESCAPE.search(text):
        raise ValueError("a percent sign is not followed by two hex digits")
    return _ESCAPE.sub(_normalize_escape, text)


def _normalize_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def remove_dot_segments(path: str) -> str:
    """The path without "." and ".." segments, by §5.2.4's steps A to E. The input buffer is `path` from
    `start` on, so a long path costs linear time rather than a copy per step."""
    output: list[str] = []
    start, end = 0, len(path)
    while start < end:
        if path.startswith("../", start):  # A
            start += 3
        elif path.startswith(("./", "/./"), start):  # A, B: "./" dropped, "/./" becomes "/"
            start += 2
        elif path.startswith("/../", start):  # C: "/../" becomes "/", the last output segment goes
            start += 3
            if output:
                output.pop()
        elif end - start <= 3 and path[start:] in {"/.", "/..", ".", ".."}:  # B, C, D at the very end
            if path[start:] == "/.." and output:
                output.pop()
            if path.startswith("/", start):
                output.append("/")
            break
        else:  # E: the first segment, with its leading "/", moves to the output
            slash = path.find("/", start + 1)
            slash = end if slash < 0 else slash
            output.append(path[start:slash])
            start = slash
    return "".join(output)


def normalize_http_url(url: str, *, field: str = "url") -> str:
    """`url` as `scheme://host[:port]/path`: the syntax-based (§6.2.2) and scheme-based (§6.2.3) normal
    form, without query and fragment (RFC 9449 §4.2 `htu`).

    InvalidRequestError naming `field`: with reason INVALID_ARGUMENT when it is not an absolute http(s) URL
    of at most MAX_URL_LENGTH characters, with URL_NOT_ALLOWED for well-formed URLs in a form that servers
    read differently (see the module docstring).
    """
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequestError(field, f"must be at most {MAX_URL_LENGTH} characters")
    if not _URI_CHARS.fullmatch(url):
        raise InvalidRequestError(
            field,
            "may contain only URI characters (RFC 3986 §2): no spaces, controls, backslashes or non-ASCII",
        )
    if _BAD_ESCAPE.search(url):
        raise InvalidRequestError(field, "has a percent sign not followed by two hex digits")
    if _ENCODED_CONTROL.search(url):
        raise _refused(field, "must not contain encoded control characters")
    scheme, authority, path, _, _ = split(url)
    if scheme is None or authority is None or not _SCHEME.fullmatch(scheme):
        raise InvalidRequestError(field, "must be an absolute http or https URL")
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequestError(field, "must be an absolute http or https URL")
    host, port = _authority(authority, field)
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise _refused(field, "must be an https URL (http only on loopback)")
    origin = f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"
    return origin + _path(path, field)


def _refused(field: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(field, message, reason=Reason.URL_NOT_ALLOWED)


def _authority(authority: str, field: str) -> tuple[str, int | None]:
    """The normalised host and the port (None when absent or empty, §6.2.3) of an authority (§3.2)."""
    if "@" in authority:
        # RFC 9110 §4.2.4: user information must not be sent in a target URI; it only serves to disguise
        # the host (https://allowed.example@evil.example/).
        raise _refused(field, "must not contain user information")
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidRequestError(field, "has an IPv6 literal without its closing bracket")
        host, rest = _ipv6_host(authority[1:end], field), authority[end + 1 :]
    else:
        colon = authority.find(":")
        colon = len(authority) if colon < 0 else colon
        host, rest = _name_host(authority[:colon].lower(), field), authority[colon:]
    if rest in {"", ":"}:
        return host, None
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]) or int(rest[1:]) > 65535:
        raise InvalidRequestError(field, "has an invalid port")
    return host, int(rest[1:])


def _ipv6_host(literal: str, field: str) -> str:
    """A bracketed IPv6 host in its one canonical form (RFC 5952); zone ids and IPvFuture are refused."""
    literal = literal.lower()
    if "%" in literal or literal.startswith("v"):
        # RFC 6874 zone ids ("%25eth0") name an interface of the broker's host, not a server.
        raise _refused(field, "must not use an IPv6 zone id or a future IP literal")
    if not _IPV6_CHARS.fullmatch(literal):
        raise InvalidRequestError(field, "has an invalid IPv6 literal")
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        raise InvalidRequestError(field, "has an invalid IPv6 literal") from None
    if address.compressed != literal:
        raise _refused(field, "must write an IPv6 address in its canonical form (RFC 5952)")
    return f"[{literal}]"


def _name_host(host: str, field: str) -> str:
    """A lower-cased DNS name or dotted-decimal IPv4 address; every other numeric form is refused."""
    if not host:
        raise InvalidRequestError(field, "must name a host")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # http://2130706433/, http://0x7f.1/ and http://0177.0.0.1/ all reach 127.0.0.1 in some client.
        if not _DOTTED_DECIMAL.fullmatch(host):
            raise _refused(field, "must write a numeric host as four decimal octets")
        return host
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        # Percent-encoded and trailing-dot forms land here too; punycode (xn--) is plain ASCII and stays
        # allowed, but only ever matches a prefix that names exactly that form.
        raise _refused(field, "must name its host as a DNS name or an IP address")
    return host


def _path(path: str, field: str) -> str:
    """The path normalised (§6.2.2, §5.2.4, "/" when empty); refused where a server could route it
    elsewhere."""
    path = normalize_percent_encoding(path)
    if _PATH_AMBIGUOUS.search(path):
        raise _refused(field, "must not contain an encoded slash, backslash or percent sign in its path")
    path = remove_dot_segments(path) or "/"
    for segment in path.split("/"):
        if "%" in segment or ";" in segment or segment.startswith("."):
            _check_segment(segment, field)
    return path


def _check_segment(segment: str, field: str) -> None:
    """Refuses a segment some server reads as a dot segment or a separator: `..;x` (Tomcat), `%c0%ae`
    (overlong UTF-8), full-width dots and slashes (NFKC), trailing dots and spaces (Windows)."""
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise _refused(field, "must encode its path as UTF-8") from None
    text = unicodedata.normalize("NFKC", text)
    if "/" in text or "\\" in text:
        raise _refused(field, "must not contain a character that folds to a slash")
    head = text.split(";", 1)[0]
    if "." in head and not head.strip(". "):
        raise _refused(field, "must not contain a dot segment in disguise")
