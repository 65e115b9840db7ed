import time

from ais_wds._core.retry import Backoff


def test_backoff_doubles_from_a_fifth_of_a_second_up_to_two_seconds():
    backoff = Backoff(budget=100)
    assert [round(backoff.next_delay(), 3) for _ in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff.attempts == 6


def test_backoff_never_waits_past_its_budget_and_then_gives_up():
    backoff = Backoff(budget=0.05)
    first = backoff.next_delay()
    assert 0 < first <= 0.05 + 1e-9  # float rounding of the monotonic clock
    time.sleep(0.06)
    assert backoff.next_delay() is None
    assert Backoff(budget=0).next_delay() is None
