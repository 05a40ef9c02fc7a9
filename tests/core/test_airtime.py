# LoRa time on air (Semtech SX1276 datasheet 4.1.1.7), and the budget that
# keeps background frames within a share of it (AirtimeBudget).
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.airtime import time_on_air_us, low_data_rate, symbol_us, preset_time_on_air_us, PRESETS
from pollen.airtime import AirtimeBudget

from .fakemesh import XorShift
from .util import raises


def test_airtime_known_values():
    assert time_on_air_us(10, 7, 125000, 5, 8) == 41216
    assert time_on_air_us(51, 7, 125000, 5, 8) == 102656
    assert time_on_air_us(51, 12, 125000, 5, 8) == 2465792
    assert symbol_us(7, 125000) == 1024 and symbol_us(12, 125000) == 32768


def test_low_data_rate_optimisation():
    assert low_data_rate(11, 125000) and low_data_rate(12, 125000)
    assert not low_data_rate(10, 125000)
    assert not low_data_rate(11, 250000) and not low_data_rate(12, 500000)
    # LDRO on makes SF12 frames longer (fewer bits per symbol)
    assert time_on_air_us(51, 12, 125000, 5, 8, ldro=False) < time_on_air_us(51, 12, 125000, 5, 8)


def test_airtime_grows_with_payload_and_options():
    for name in PRESETS:
        p = PRESETS[name]
        t = [preset_time_on_air_us(n, p) for n in range(0, 256, 5)]
        for a, b in zip(t, t[1:]):
            assert a <= b, name
    assert time_on_air_us(10, 7, 125000, crc=False) < time_on_air_us(10, 7, 125000)
    assert time_on_air_us(10, 7, 125000, explicit_header=False) < time_on_air_us(10, 7, 125000)
    assert time_on_air_us(10, 7, 125000, cr=8) > time_on_air_us(10, 7, 125000, cr=5)


def test_airtime_rejects_bad_modulation():
    for sf, cr in ((5, 5), (13, 5), (7, 4), (7, 9)):
        raises(ValueError, time_on_air_us, 10, sf, 125000, cr)


# ---- AirtimeBudget: a share of the time, saved up to a cap ---------------------

def test_budget_spends_what_is_saved_and_says_when_the_rest_will_be():
    b = AirtimeBudget(100000, 1000000, 500000)     # 10 %: 100 us of air per ms
    assert b.take(300000, 0) == 0 and b.saved_us == 200000
    wait_ms = b.take(300000, 0)
    assert wait_ms == 1001 and b.saved_us == 200000   # nothing spent
    assert b.take(300000, 998) > 0                     # not yet: 299800 saved
    assert b.saved_us == 299800
    assert b.take(300000, wait_ms) == 0 and b.saved_us == 100   # when it said
    assert b.take(0, wait_ms) == 0


def test_budget_saves_up_to_its_cap_only():
    b = AirtimeBudget(100000, 1000000, 0)
    assert b.take(1, 0) == 1                           # 1 us short: 0.01 ms, so 1 ms
    assert b.take(0, 10 ** 7) == 0 and b.saved_us == 1000000   # idle for hours: the cap
    assert b.take(1000000, 10 ** 7) == 0
    assert b.take(100001, 10 ** 7 + 1000) == 1          # 1 us short after a second


def test_budget_with_no_share_spends_only_its_start():
    b = AirtimeBudget(0, 1000, 500)
    assert b.take(400, 0) == 0
    assert b.take(400, 10 ** 6) == 3600000             # ask again in an hour
    assert b.saved_us == 100 and b.take(100, 10 ** 9) == 0


def test_budget_never_passes_a_frame_bigger_than_its_cap():
    b = AirtimeBudget(100000, 50000, 50000)
    t = 0
    for _ in range(5):
        w = b.take(50001, t)
        assert w > 0
        t += w
    assert b.saved_us == 50000


def test_budget_holds_any_window_to_its_share_and_gives_all_of_it():
    # a sender that always has a frame and sends as soon as take allows:
    # in every interval [t1, t2] between two sends it spends at most the cap
    # plus the share of t2 - t1, and over an hour nearly all of its share
    per_million, cap_us = 50000, 400000                 # 5 %, 0.4 s saved
    b = AirtimeBudget(per_million, cap_us, cap_us)
    rng = XorShift(9)
    t = 0
    sends = 0
    spent_us = 0       # sent up to and including the last frame
    worst = None       # max over earlier sends i of (share up to t_i) - (sent before i)
    air_us = 20000 + rng.getrandbits(18) % 180000
    while t < 3600000:
        w = b.take(air_us, t)
        if w:
            assert w > 0
            t += w
            continue
        # this send ends a window that starts at any earlier send (or this one)
        here = per_million * t - 1000 * spent_us
        worst = here if worst is None or here > worst else worst
        spent_us += air_us
        assert 1000 * spent_us - per_million * t + worst <= 1000 * cap_us, (t, sends)
        sends += 1
        t += air_us // 1000 + rng.getrandbits(4)
        air_us = 20000 + rng.getrandbits(18) % 180000
    assert sends > 1000
    share_us = cap_us + per_million * t // 1000
    assert spent_us <= share_us and spent_us > share_us * 97 // 100, (spent_us, share_us)
