import pytest

from processor.breaker import FailureBreaker

DECODE = ("decode", "DecodeError", None)
EMAIL = ("clevertap", "RejectedByClevertap", 515)


def test_does_not_trip_before_min_records() -> None:
    breaker = FailureBreaker(window=100, threshold=0.5, min_records=50)
    assert [breaker.failure(DECODE) for _ in range(49)] == [False] * 49
    assert breaker.failure(DECODE) is True
    assert breaker.tripped == DECODE


@pytest.mark.parametrize(
    ("successes", "failures", "threshold", "tripped"),
    [
        (50, 50, 0.5, False),  # exactly half is not more than half
        (49, 51, 0.5, True),
        (90, 10, 0.1, False),
        (89, 11, 0.1, True),
        (0, 100, 1.0, False),  # a threshold of 1 disables the breaker
        (100, 0, 0.0, False),  # no failure at all never trips
        (99, 1, 0.0, True),  # threshold 0: any failure trips once min_records were seen
    ],
)
def test_trips_on_share_of_the_window(successes: int, failures: int, threshold: float, tripped: bool) -> None:
    breaker = FailureBreaker(window=100, threshold=threshold, min_records=100)
    breaker.success(successes)
    result = False
    for _ in range(failures):
        result = breaker.failure(DECODE)
    assert result is tripped
    assert (breaker.tripped == DECODE) is tripped


def test_different_failures_are_counted_apart() -> None:
    breaker = FailureBreaker(window=100, threshold=0.5, min_records=100)
    for _ in range(40):
        breaker.failure(DECODE)
        breaker.failure(EMAIL)
    breaker.success(20)
    assert breaker.tripped is None
    assert breaker.share(DECODE) == 0.4
    assert breaker.share(EMAIL) == 0.4


def test_old_failures_leave_the_window() -> None:
    breaker = FailureBreaker(window=10, threshold=0.5, min_records=10)
    for _ in range(5):
        breaker.failure(DECODE)
    breaker.success(10)
    assert breaker.share(DECODE) == 0.0
    assert breaker.seen == 10
    for _ in range(5):
        assert breaker.failure(DECODE) is False
    assert breaker.share(DECODE) == 0.5
    assert breaker.failure(DECODE) is True
