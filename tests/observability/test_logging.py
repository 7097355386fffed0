"""The log format and the masking filter, on records made here: no network, no sleeps."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from broker.config import TelemetrySettings
from broker.observability import JSONFormatter, SecretMaskingFilter, configure_logging, mask_secrets
from broker.protocol import keys

# Shaped like the real things; none of them is a live credential.
JWT = (
    "eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFUzI1NiJ9"
    ".eyJzdWIiOiJjbGllbnQiLCJhdWQiOiJlLWhlbHNlOnNmbS5hcGkifQ"
    ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)
# The marker is joined at run time so that secret scanners do not take this fake for a committed key.
PEM = (
    "-----BEGIN " + "PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nU2VjcmV0\n"
    "-----END PRIVATE KEY-----"
)


@pytest.fixture
def output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own whose handler masks and formats as JSON into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(SecretMaskingFilter())
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"tests.observability.{id(buffer)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, buffer
    logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_jwt_is_masked_when_a_message_argument_holds_one(output: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = output
    logger.info("fetched %s for %s", JWT, "oslo")
    (line,) = lines(buffer)
    assert line["message"] == "fetched [redacted jwt] for oslo"


def test_header_values_are_masked_when_authorization_and_dpop_are_logged(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    logger.warning("headers %s", {"Authorization": f"DPoP {JWT}", "DPoP": JWT})
    assert "eyJ" not in buffer.getvalue()
    assert lines(buffer)[0]["message"].count("[redacted jwt]") == 2


def test_pem_private_key_is_masked_when_a_message_contains_one(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    logger.error("bad key file: %s; skipped", PEM)
    assert lines(buffer)[0]["message"] == "bad key file: [redacted private key]; skipped"


def test_pem_private_key_is_masked_when_its_end_line_is_cut_off() -> None:
    assert "U2VjcmV0" not in mask_secrets(PEM.split("-----END", maxsplit=1)[0])


def test_private_jwk_members_are_masked_and_public_ones_kept_when_a_jwk_is_logged(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    ec = keys.private_jwk(keys.generate_signing_key("ES256"))
    rsa = keys.private_jwk(keys.generate_signing_key("RS256"))
    logger.info("as a dict %s", ec)
    logger.info("as JSON %s", json.dumps(rsa))
    text = buffer.getvalue()
    assert ec["d"] not in text
    assert ec["x"] in text
    for member in ("d", "p", "q", "dp", "dq", "qi"):
        assert rsa[member] not in text, member
    assert rsa["n"] in text


def test_message_and_arguments_are_left_alone_when_nothing_looks_secret() -> None:
    record = logging.makeLogRecord({"msg": "tenant %s target %s kid=%s", "args": ("oslo", "sfm", "k1")})
    assert SecretMaskingFilter().filter(record)
    assert record.msg == "tenant %s target %s kid=%s"
    assert record.args == ("oslo", "sfm", "k1")


def test_filter_lets_the_record_through_when_its_format_string_is_broken() -> None:
    record = logging.makeLogRecord({"msg": "count %d", "args": ("many",)})
    assert SecretMaskingFilter().filter(record)


def test_traceback_is_masked_when_an_exception_carries_a_jwt(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    try:
        raise ValueError(f"unexpected token {JWT}")
    except ValueError:
        logger.exception("fetch failed")
    (line,) = lines(buffer)
    assert "ValueError: unexpected token [redacted jwt]" in line["exception"]
    assert "eyJ" not in buffer.getvalue()


def test_extras_are_masked_when_they_hold_secrets(output: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = output
    logger.info("stored", extra={"assertion": JWT, "jwk": {"kty": "EC", "d": "c2VjcmV0LXNjYWxhcg"}})
    (line,) = lines(buffer)
    assert line["assertion"] == "[redacted jwt]"
    assert line["jwk"] == {"kty": "EC", "d": "[redacted]"}


def test_json_line_has_time_level_logger_and_message_when_a_record_is_formatted(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    logger.warning("circuit to %s opened after %d failures", "https://sts.test", 5)
    (line,) = lines(buffer)
    assert line["level"] == "WARNING"
    assert line["logger"] == logger.name
    assert line["message"] == "circuit to https://sts.test opened after 5 failures"
    assert line["time"].endswith("+00:00")
    assert "trace_id" not in line


def test_json_line_carries_the_trace_and_span_id_when_logged_inside_a_span(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    context = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        logger.info("inside")
    (line,) = lines(buffer)
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert line["span_id"] == "b7ad6b7169203331"


def test_json_line_keeps_extras_but_not_over_its_own_fields_when_a_record_has_extras(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    logger.info("served", extra={"tenant": "oslo", "level": "loud", "elapsed": 0.25, "at": object()})
    (line,) = lines(buffer)
    assert line["tenant"] == "oslo"
    assert line["elapsed"] == 0.25
    assert line["level"] == "INFO"
    assert line["at"].startswith("<object object")


def test_json_record_stays_one_line_when_the_message_has_newlines(
    output: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = output
    logger.info("first\nsecond")
    assert buffer.getvalue().count("\n") == 1
    assert lines(buffer)[0]["message"] == "first\nsecond"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging changes the root logger; put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "aiohttp.access")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, noisy_level in noisy.items():
        logging.getLogger(name).setLevel(noisy_level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("root_logging")
def test_root_logs_json_to_stderr_with_secrets_masked_when_log_format_is_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(TelemetrySettings(log_format="json", log_level="WARNING"))
    logging.getLogger("broker.anything").info("not shown at WARNING")
    logging.getLogger("broker.anything").warning("token %s", JWT)
    warnings.warn("a library complains", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    parsed = [json.loads(line) for line in err.splitlines()]
    assert [line["logger"] for line in parsed] == ["broker.anything", "py.warnings"]
    assert parsed[0]["message"] == "token [redacted jwt]"


@pytest.mark.usefixtures("root_logging")
def test_http_client_lines_are_hidden_when_the_level_is_info_and_shown_when_debug() -> None:
    configure_logging(TelemetrySettings(log_level="INFO"))
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    configure_logging(TelemetrySettings(log_level="DEBUG"))
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    assert len(logging.getLogger().handlers) == 1
