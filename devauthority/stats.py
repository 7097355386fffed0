"""Dev-only counters and injected faults, so tests can see how often a broker calls, and make it fail."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

FaultMode = Literal["ok", "unavailable", "slow"]
FAULT_MODES: tuple[FaultMode, ...] = ("ok", "unavailable", "slow")
MAX_DELAY_S = 120.0  # a typo of 3000 instead of 3 should not hang a test run for an hour


@dataclass
class AttestStats:
    """Trust-framework attests (``nhn:tillitsrammeverk:parameters``) the authority has seen.

    ``in_assertions``: accepted in a code or refresh grant's client assertion; ``in_request_objects``:
    accepted in a PAR request object; ``double``: refused with ``HID-DOUBLE-STRUCTURE``; ``invalid``:
    refused for their shape, systems or codes (wherever sent).
    """

    in_assertions: int = 0
    in_request_objects: int = 0
    double: int = 0
    invalid: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "in_assertions": self.in_assertions,
            "in_request_objects": self.in_request_objects,
            "double": self.double,
            "invalid": self.invalid,
        }


@dataclass
class Stats:
    """What the authority has seen since start or the last reset.

    ``token_requests`` and ``par_requests`` count every request to those endpoints; ``tokens_issued``
    counts successful token responses of every grant; ``logins`` counts codes handed out at authorize;
    ``refreshes`` and ``exchanges`` count successful refresh_token and token-exchange grants;
    ``revocations`` counts accepted revocation requests (200, whether or not the token was known).
    ``errors_by_code`` counts every error answer of every endpoint by its ``error`` code, nonce
    challenges (``use_dpop_nonce``) and injected outages (``temporarily_unavailable``) included.
    """

    token_requests: int = 0
    token_requests_by_grant: Counter[str] = field(default_factory=Counter)
    nonce_challenges: int = 0
    tokens_issued: int = 0
    errors_by_code: Counter[str] = field(default_factory=Counter)
    par_requests: int = 0
    logins: int = 0
    refreshes: int = 0
    exchanges: int = 0
    revocations: int = 0
    # Token requests whose client assertion verified (and that passed on to the grant), by the key's kid:
    # which key a client signs with (key rotation tests read it).
    tokens_by_kid: Counter[str] = field(default_factory=Counter)
    attests: AttestStats = field(default_factory=AttestStats)

    def snapshot(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "token_requests_by_grant": dict(self.token_requests_by_grant),
            "nonce_challenges": self.nonce_challenges,
            "tokens_issued": self.tokens_issued,
            "errors_by_code": dict(self.errors_by_code),
            "par_requests": self.par_requests,
            "logins": self.logins,
            "refreshes": self.refreshes,
            "exchanges": self.exchanges,
            "revocations": self.revocations,
            "tokens_by_kid": dict(self.tokens_by_kid),
            "attests": self.attests.snapshot(),
        }

    def reset(self) -> None:
        fresh = Stats()
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(fresh, name))


@dataclass
class Faults:
    """How the token endpoint misbehaves on purpose.

    ``slow`` answers normally after ``delay_s``; ``unavailable`` answers 503, after ``delay_s`` if one
    is given (an outage that also hangs, for timeout tests); ``ok`` ignores ``delay_s``.
    """

    token_endpoint: FaultMode = "ok"  # noqa: S105 - a mode, not a secret
    delay_s: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        return {"token_endpoint": self.token_endpoint, "delay_s": self.delay_s}

    def update(self, data: Any) -> None:
        """Apply ``{"token_endpoint": mode, "delay_s": n}``, or raise ``ValueError`` and change nothing."""
        if not isinstance(data, dict) or set(data) - {"token_endpoint", "delay_s"}:
            raise ValueError('expected {"token_endpoint": "ok"|"unavailable"|"slow", "delay_s": n}')
        mode = data.get("token_endpoint", self.token_endpoint)
        if mode not in FAULT_MODES:
            raise ValueError(f"token_endpoint must be one of {list(FAULT_MODES)}")
        delay = data.get("delay_s", 0.0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_S:
            raise ValueError(f"delay_s must be a number between 0 and {MAX_DELAY_S}")
        if mode == "slow" and delay == 0:
            raise ValueError("slow needs a delay_s above 0")
        self.token_endpoint = mode
        self.delay_s = float(delay)
