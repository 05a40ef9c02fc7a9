# The region's duty cycle: a sliding hour of airtime.
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.region import DutyCycle, REGIONS

from .fakemesh import XorShift, max_hour_airtime_us


HOUR_MS = 3600000
MIN_MS = 60000


def test_duty_budget():
    d = DutyCycle(REGIONS["EU868"][1])
    assert d.budget_us == 36000000               # 1 % of an hour = 36 s
    assert d.earliest_ms(5, 1000000) == 5
    assert d.headroom_per_mille(5) == 1000
    assert d.earliest_ms(5, 36000001) == -1      # longer than the whole budget
    assert d.earliest_ms(5, 36000000) == 5


def test_duty_no_limit():
    d = DutyCycle(0)
    d.record(0, 10 ** 9)
    assert d.earliest_ms(1, 10 ** 9) == 1
    assert d.headroom_per_mille(1) == 1000


def test_duty_deferral_until_old_airtime_leaves():
    d = DutyCycle(10)
    d.record(0, 20000000)                 # minute 0
    d.record(10 * MIN_MS + 5, 16000000)   # minute 10: budget now used up
    assert d.used_us(11 * MIN_MS) == 36000000
    assert d.headroom_per_mille(11 * MIN_MS) == 0
    assert d.total_us == 36000000
    t = d.earliest_ms(11 * MIN_MS, 1000)
    assert t > 11 * MIN_MS
    assert t >= HOUR_MS                   # not before minute 0's airtime is an hour old
    assert d.earliest_ms(t, 1000) == t    # and then it fits
    assert d.used_us(t) == 16000000
    # 20 s needs both minutes to leave
    t2 = d.earliest_ms(11 * MIN_MS, 20000001)
    assert t2 >= 10 * MIN_MS + 5 + HOUR_MS
    assert d.earliest_ms(t2, 20000001) == t2


def test_duty_window_slides():
    d = DutyCycle(10)
    for m in range(60):
        d.record(m * MIN_MS + 30000, 500000)
    assert d.used_us(59 * MIN_MS + 30000) == 30000000
    # each minute later, one more minute of airtime has left the window
    used = [d.used_us(HOUR_MS + 30000 + k * MIN_MS) for k in range(0, 61, 10)]
    for a, b in zip(used, used[1:]):
        assert b < a
    assert used[-1] == 0


def test_duty_never_exceeds_budget_in_any_hour():
    # A greedy sender that always transmits as soon as earliest_ms allows must
    # stay within 1 % in every sliding hour, measured exactly.
    d = DutyCycle(10)
    rng = XorShift(5)
    sent = []  # (t_ms, airtime_us)
    t = 0
    while t < 4 * HOUR_MS:
        air = 200000 + rng.getrandbits(20) % 2000000
        t = d.earliest_ms(t, air)
        assert t >= 0
        d.record(t, air)
        sent.append((t, air))
        t += air // 1000 + 1 + rng.getrandbits(16) % 30000
    assert len(sent) > 50
    assert max_hour_airtime_us(sent, HOUR_MS) <= d.budget_us
