# LoRa time on air by the Semtech formula (SX1276 datasheet 4.1.1.7, AN1200.13)
# and the radio presets the mesh uses. Pure integer arithmetic: runs the same
# on boards, in emulation and in the simulator.

# name: (spreading factor, bandwidth Hz, coding rate denominator 5..8, preamble symbols)
PRESETS = {
    "ShortFast": (7, 250000, 5, 16),
    "ShortSlow": (8, 250000, 5, 16),
    "MediumFast": (9, 250000, 5, 16),
    "MediumSlow": (10, 250000, 5, 16),
    "LongFast": (11, 250000, 5, 16),
    "LongModerate": (11, 125000, 8, 16),
    "LongSlow": (12, 125000, 8, 16),
}


def symbol_us(sf, bw_hz):
    return ((1 << sf) * 1000000) // bw_hz


def low_data_rate(sf, bw_hz):
    # Semtech recommends low data rate optimisation when a symbol lasts >= 16 ms.
    return symbol_us(sf, bw_hz) >= 16000


def time_on_air_us(payload_bytes, sf, bw_hz, cr=5, preamble=8, crc=True,
                   explicit_header=True, ldro=None):
    if not 6 <= sf <= 12:
        raise ValueError("sf must be 6..12")
    if not 5 <= cr <= 8:
        raise ValueError("cr must be 5..8 (4/5..4/8)")
    if ldro is None:
        ldro = low_data_rate(sf, bw_hz)
    t_sym = symbol_us(sf, bw_hz)
    preamble_us = (preamble * 4 + 17) * t_sym // 4  # (n + 4.25) symbols
    num = 8 * payload_bytes - 4 * sf + 28 + (16 if crc else 0) - (0 if explicit_header else 20)
    den = 4 * (sf - (2 if ldro else 0))
    blocks = -(-num // den) if num > 0 else 0
    payload_symbols = 8 + blocks * cr
    return preamble_us + payload_symbols * t_sym


def preset_time_on_air_us(payload_bytes, preset):
    sf, bw_hz, cr, preamble = preset
    return time_on_air_us(payload_bytes, sf, bw_hz, cr, preamble)


class AirtimeBudget:
    # A share of the time on air, per million of the time, saved up to
    # cap_us: a token bucket for background frames (catalogs, status) that
    # must stay within a share of the channel however busy the mesh is.
    def __init__(self, per_million, cap_us, saved_us):
        self.per_million = per_million
        self.cap_us = cap_us
        self.saved_us = saved_us
        self.at_ms = 0

    def take(self, air_us, now_ms):
        # Spend air_us if it is saved up and return 0; else return how many
        # ms until it will be (spending nothing).
        saved = self.saved_us + (now_ms - self.at_ms) * self.per_million // 1000
        self.saved_us = saved if saved < self.cap_us else self.cap_us
        self.at_ms = now_ms
        if air_us <= self.saved_us:
            self.saved_us -= air_us
            return 0
        if not self.per_million:
            return 3600000  # no share at all: ask again in an hour
        return (air_us - self.saved_us) * 1000 // self.per_million + 1
