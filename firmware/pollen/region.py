# Regional rules the core enforces: duty cycle over a sliding window and the
# longest single transmission (dwell time).

from array import array
from pollen._compat import const

# name: (frequency Hz, duty cycle per mille (0 = none), max tx power dBm, dwell ms (0 = none))
REGIONS = {
    "EU868": (868100000, 10, 14, 0),  # ETSI EN 300 220 sub-band 868.0-868.6 MHz: 1 %, 25 mW
    # 869.40-869.65 MHz: 10 %, 500 mW (27 dBm) - the sub-band Meshtastic's EU_868 uses
    "EU868-10": (869525000, 100, 27, 0),
    "EU433": (433175000, 10, 10, 0),  # ETSI EN 300 220: 1 %, 10 mW
    "US915": (915000000, 0, 30, 400),  # FCC 15.247: 400 ms dwell per transmission
    "AU915": (915000000, 0, 30, 400),
    "AS923": (923200000, 0, 16, 400),
}

_WINDOW_MS = const(3600000)  # duty cycle is averaged over one hour (ETSI)
# Bookkeeping resolution: one-minute buckets. The window holds 61 of them (the
# hour plus the minute being filled) so that an entry is never forgotten before
# it is a full hour old.
_BUCKETS = const(61)


class DutyCycle:
    # Airtime used in the last hour, kept in one-minute buckets: bounded
    # memory, and conservative (an entry counts for 60 to 61 minutes).
    def __init__(self, per_mille, window_ms=_WINDOW_MS):
        self.per_mille = per_mille
        self.budget_us = window_ms * 1000 * per_mille // 1000
        self.window_ms = window_ms
        self.bucket_ms = window_ms // (_BUCKETS - 1)
        # (arrays of 32-bit ints: 4 bytes an entry, not a list's 8 or 16)
        self.used = array("i", [0] * _BUCKETS)    # airtime us per bucket
        self.stamp = array("i", [-1] * _BUCKETS)  # bucket index (absolute) each slot holds
        self.total_us = 0                # airtime ever spent, for telemetry

    def _slot(self, now_ms):
        b = now_ms // self.bucket_ms
        i = b % _BUCKETS
        if self.stamp[i] != b:
            self.stamp[i] = b
            self.used[i] = 0
        return i

    def used_us(self, now_ms):
        lo = now_ms // self.bucket_ms - _BUCKETS + 1
        total = 0
        for i in range(_BUCKETS):
            if self.stamp[i] >= lo:
                total += self.used[i]
        return total

    def record(self, now_ms, airtime_us):
        self.used[self._slot(now_ms)] += airtime_us
        self.total_us += airtime_us

    def earliest_ms(self, now_ms, airtime_us):
        # When a transmission of airtime_us fits within the budget (now if it does).
        if not self.per_mille:
            return now_ms
        if airtime_us > self.budget_us:
            return -1  # can never be sent
        need = self.used_us(now_ms) + airtime_us - self.budget_us
        if need <= 0:
            return now_ms
        b_now = now_ms // self.bucket_ms
        # Buckets leave the window oldest first; find when enough has left.
        for age in range(_BUCKETS - 1, -1, -1):
            b = b_now - age
            i = b % _BUCKETS
            if self.stamp[i] == b:
                need -= self.used[i]
                if need <= 0:
                    return (b + _BUCKETS) * self.bucket_ms
        return now_ms + self.window_ms

    def headroom_per_mille(self, now_ms):
        if not self.per_mille:
            return 1000
        return (self.budget_us - self.used_us(now_ms)) * 1000 // max(1, self.budget_us)
