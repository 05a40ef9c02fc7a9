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


# Fair share (Congestion.unfair): relay airtime per origin over a sliding
# window; an origin over twice the mean share is not relayed while the
# channel is busy (level 1 or more).

def test_an_origin_over_its_fair_share_is_refused_only_when_busy():
    c = Congestion()
    for origin in (11, 12, 13, 14):            # four honest origins, 50 ms each
        assert not c.unfair(origin, 50, NOW)
    for _ in range(8):                          # a spammer: 400 ms
        assert not c.unfair(99, 50, NOW)        # an idle channel: it is relayed
    c.record(20000, 40000)                      # the channel is busy (40 %): not
    assert c.unfair(99, 50, NOW)
    assert not c.unfair(11, 50, NOW)            # an honest origin still is
    assert not c.unfair(12, 50, NOW)


def test_fair_share_forgets_and_keeps_a_bounded_table():
    c = Congestion()
    c.record(20000, 40000)
    for _ in range(8):
        c.unfair(99, 50, NOW)
    c.unfair(11, 50, NOW)
    c.unfair(12, 50, NOW)
    assert c.unfair(99, 50, NOW)
    # minutes later its airtime weighs little against what we relay now
    # (the channel busy again)
    later = NOW + 300000
    c.record(later - 40000, later - 20000)
    c.unfair(11, 50, later)
    assert not c.unfair(99, 50, later)
    for origin in range(1, 40):                 # many origins: the table stays small
        c.unfair(origin, 10 + origin, later)
    assert len(c.table) == len(c.spent) == 8


def test_a_share_not_renewed_is_gone_so_a_few_talkers_are_not_unfair():
    # eight origins relayed for once, a while ago (or after a long quiet);
    # then one, two or three origins relayed for alike on a busy channel:
    # none is over its fair share, for the old ones have no airtime left
    for quiet_s in (90, 200, 3600):
        for talkers in (1, 2, 3):
            c = Congestion()
            for origin in range(1, 9):
                c.unfair(origin, 60, NOW)
            later = NOW + quiet_s * 1000
            c.record(later, later + 40000)   # others' frames: level 1 or more
            at = later + 40000
            assert c.level(at)
            refused = 0
            for k in range(30):
                for t in range(talkers):
                    refused += bool(c.unfair(100 + t, 60, at + k * 10))
            assert refused == 0, (quiet_s, talkers, refused)


def test_the_shares_decay_bucket_by_bucket_to_nothing():
    c = Congestion()
    c.unfair(7, 1000, NOW)
    left = []
    for k in range(1, 30):
        c.level(NOW + k * 10000)
        left.append(c.spent[c.table.index(7)])
    assert left[0] == 750 and left[1] == 562          # three quarters a bucket
    assert all(a >= b for a, b in zip(left, left[1:])) and left[-1] == 0
