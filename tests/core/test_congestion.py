# Congestion (congestion.py): channel utilisation over a sliding window of
# five to six 10 s buckets, and the traffic classes it sheds. At now = 70 s
# the window is 20..70 s (50 s). Runs under CPython and MicroPython.
from pollen.congestion import Congestion

NOW = 70000


def test_utilisation_levels_from_busy_time():
    c = Congestion()
    assert c.level(NOW) == 0
    c.record(20000, 35000)             # 15 s of 50: 30 %
    assert c.level(NOW) == 0
    c.record(35000, 47000)             # 27 s: 54 %
    assert c.level(NOW) == 2
    c.record(47000, 57000)             # 37 s: 74 %
    assert c.level(NOW) == 3


def test_overlapping_busy_periods_count_once():
    c = Congestion()
    for _ in range(5):               # the same frame sensed five times
        c.record(30000, 50000)
    c.record(40000, 50000)             # and one inside it
    assert c.level(NOW) == 1         # 20 s of 50 (40 %): level 1, not 3


def test_the_window_slides():
    c = Congestion()
    c.record(20000, 65000)
    assert c.level(NOW) == 3
    assert c.level(NOW + 60000) == 0   # a minute later it is forgotten
    assert c.level(10 ** 9) == 0       # and after a long sleep too
    c.record(10 ** 9, 10 ** 9 + 40000)
    assert c.level(10 ** 9 + 50000) == 3


def test_a_frame_still_on_air_is_not_counted_ahead():
    c = Congestion()
    c.record(20000, 40000)             # 40 %: level 1
    c.record(68000, 80000)             # started 2 s ago, 10 s still to go
    assert c.level(NOW) == 1         # 22 s of 50, not 32


def test_what_is_shed_at_each_level():
    # classes: 0 first transmissions and acks, 1 our own hop retries,
    # 2 retries and repair, 3 gossip
    c = Congestion()
    assert not any(c.sheds(k, NOW) for k in range(4))
    c.record(20000, 40000)             # level 1: gossip only
    assert [c.sheds(k, NOW) for k in range(4)] == [False, False, False, True]
    c.record(40000, 47000)             # level 2: retries and repair too
    assert [c.sheds(k, NOW) for k in range(4)] == [False, False, True, True]
    c.record(47000, NOW)               # level 3: our own hop retries wait too,
    assert c.level(NOW) == 3           # never first transmissions and acks
    assert [c.sheds(k, NOW) for k in range(4)] == [False, True, True, True]
