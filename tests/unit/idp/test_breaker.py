"""The circuit breaker's states, on a clock the test moves."""

from __future__ import annotations

from datetime import timedelta

import pytest

from broker.errors import IdpUnavailableError
from broker.idp.breaker import CircuitBreaker


class Monotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Monotonic, transitions: list[str]) -> CircuitBreaker:
    return CircuitBreaker(
        "https://sts.test",
        threshold=3,
        cool_down=timedelta(seconds=5),
        monotonic=clock,
        on_transition=lambda _, state: transitions.append(state),
    )


def test_circuit_opens_after_threshold_failures_and_fails_fast_with_retry_time() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    for _ in range(3):
        circuit.before_request()
        circuit.failed()
    assert circuit.state == "open"
    clock.now += 2
    with pytest.raises(IdpUnavailableError) as caught:
        circuit.before_request()
    assert caught.value.retry_after == timedelta(seconds=3)
    assert transitions == ["open"]


def test_half_open_lets_one_trial_through_and_success_closes_the_circuit() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    for _ in range(3):
        circuit.failed()
    clock.now += 5
    assert circuit.state == "half-open"
    circuit.before_request()  # the trial
    with pytest.raises(IdpUnavailableError):
        circuit.before_request()  # only one trial at a time
    circuit.succeeded()
    assert circuit.state == "closed"
    circuit.before_request()
    assert transitions == ["open", "closed"]


def test_failed_trial_opens_the_circuit_again_for_a_full_cool_down() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    for _ in range(3):
        circuit.failed()
    clock.now += 5
    circuit.before_request()
    circuit.failed()
    assert circuit.state == "open"
    clock.now += 4.9
    with pytest.raises(IdpUnavailableError):
        circuit.before_request()


def test_failures_below_the_threshold_do_not_open_the_circuit_when_a_success_intervenes() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    circuit.failed()
    circuit.failed()
    circuit.succeeded()
    circuit.failed()
    circuit.failed()
    circuit.before_request()
    assert circuit.state == "closed"
    assert transitions == []


def test_abandoned_trial_lets_the_next_request_try_when_the_trial_was_cancelled() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    for _ in range(3):
        circuit.failed()
    clock.now += 5
    trial = circuit.before_request()
    circuit.abandoned(trial)
    assert circuit.before_request()  # would raise if the cancelled trial still held the circuit


def test_a_cancelled_request_that_was_not_the_trial_leaves_the_running_trial_alone() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    assert not circuit.before_request()  # began while the circuit was closed
    for _ in range(3):
        circuit.failed()
    clock.now += 5
    assert circuit.before_request()  # the half-open trial
    circuit.abandoned(False)  # the old request is cancelled now
    with pytest.raises(IdpUnavailableError):
        circuit.before_request()  # still one trial at a time
    assert circuit.state == "half-open"


def test_raise_if_open_checks_without_taking_the_trial() -> None:
    clock, transitions = Monotonic(), []
    circuit = breaker(clock, transitions)
    circuit.raise_if_open()
    for _ in range(3):
        circuit.failed()
    with pytest.raises(IdpUnavailableError):
        circuit.raise_if_open()
    clock.now += 5
    circuit.raise_if_open()
    circuit.raise_if_open()
    assert circuit.before_request()  # the check took nothing: the trial is still free
