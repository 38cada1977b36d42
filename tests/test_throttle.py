"""Failed logins are counted per address: guessing is slow, and a stranger
who knows a name cannot lock its owner out."""

from __future__ import annotations

from cadence.server.throttle import PER_ADDRESS, PER_NAME, WINDOW, LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_name_guessed_from_one_address_waits_until_the_oldest_failure_is_old() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for _ in range(PER_NAME):
        assert throttle.wait("10.0.0.1", "sam") == 0
        throttle.failed("10.0.0.1", "sam")
        clock.now += 10
    assert throttle.wait("10.0.0.1", "SAM") == WINDOW - 10 * PER_NAME
    assert throttle.wait("10.0.0.2", "sam") == 0  # the owner, elsewhere, logs in
    assert throttle.wait("10.0.0.1", "ann") == 0  # another name from there too
    clock.now += WINDOW - 10 * PER_NAME
    assert throttle.wait("10.0.0.1", "sam") == 0


def test_many_names_from_one_address_are_counted_together() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock)
    for number in range(PER_ADDRESS):
        throttle.failed("10.0.0.1", f"name{number}")
    assert throttle.wait("10.0.0.1", "someone-new") == WINDOW
    assert throttle.wait("10.0.0.9", "someone-new") == 0


def test_a_login_that_succeeds_clears_its_names_count() -> None:
    throttle = LoginThrottle(Clock())
    for _ in range(PER_NAME - 1):
        throttle.failed("10.0.0.1", "sam")
    throttle.succeeded("10.0.0.1", "sam")
    throttle.failed("10.0.0.1", "sam")
    assert throttle.wait("10.0.0.1", "sam") == 0


def test_attempts_made_at_once_are_counted_before_any_has_failed() -> None:
    throttle = LoginThrottle(Clock())
    allowed = [throttle.attempt("10.0.0.1", "sam") == 0 for _ in range(3 * PER_NAME)]
    assert allowed == [True] * PER_NAME + [False] * (2 * PER_NAME)


def test_an_ipv6_machine_counts_as_its_whole_network() -> None:
    throttle = LoginThrottle(Clock())
    for host in range(PER_NAME):
        throttle.attempt(f"2001:db8:1:2::{host + 1}", "sam")
    assert throttle.attempt("2001:db8:1:2:ffff::9", "sam") > 0
    assert throttle.attempt("2001:db8:1:3::1", "sam") == 0
