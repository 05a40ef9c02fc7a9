# LoRa time on air (Semtech SX1276 datasheet 4.1.1.7).
# Runs under CPython (pytest) and MicroPython (tests/core/mp_run.py): plain
# test_* functions and asserts only.
from pollen.airtime import time_on_air_us, low_data_rate, symbol_us, preset_time_on_air_us, PRESETS

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
