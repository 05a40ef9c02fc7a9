# Congestion, owned by Node: how busy the channel is, and what to shed.
#
# Utilisation is the share of time the channel was busy over a sliding
# window of _BUCKETS buckets of _BUCKET_MS: our own transmissions plus what
# carrier sense reported (Node.channel_busy). Overlapping busy periods are
# counted once. Meshtastic measures the same thing the same way (six 10 s
# periods, airtime.cpp) and holds back its own broadcasts above 25 %.
#
# Every job has a traffic class (jobs.py Job.cls), most valuable first:
#   0  first transmissions, relays of them, acks   never shed
#   1  retries, post repair, held-copy offers
#   2  gossip: relayed status, catalog
# and as utilisation rises the node sheds the least valuable first
# (Node._transmit_due asks `sheds`):
#   level 1 (>= 35 %): gossip; beacons come less often
#   level 2 (>= 50 %): also post repair, held-copy offers and relays' retries
#                      (dropped); our own retries wait for a quieter moment
#   level 3 (>= 70 %): our own retries back off twice as long
# What the channel can carry is still delivered: goodput plateaus at
# capacity instead of collapsing under retries and gossip.
from pollen._compat import const

_BUCKETS = const(6)
_BUCKET_MS = const(10000)
_L1 = const(350)  # per mille at which level 1, 2, 3 start
_L2 = const(500)
_L3 = const(700)


class Congestion:
    def __init__(self):
        self.busy_ms = [0] * _BUCKETS  # a ring: bucket b counts [b*_BUCKET_MS, ...)
        self.bucket = 0                # the current bucket's number (time // _BUCKET_MS)
        self.counted_ms = 0            # busy time is counted up to here

    def busy(self, start_ms, end_ms):
        # the channel was (or will be) busy from start_ms to end_ms
        if start_ms < self.counted_ms:
            start_ms = self.counted_ms
        while end_ms > start_ms:  # each bucket gets its part
            self._advance(start_ms)
            t = (self.bucket + 1) * _BUCKET_MS
            if t > end_ms:
                t = end_ms
            self.busy_ms[self.bucket % _BUCKETS] += t - start_ms
            start_ms = self.counted_ms = t

    def _advance(self, now_ms):
        b = now_ms // _BUCKET_MS
        while self.bucket < b:
            self.bucket += 1
            self.busy_ms[self.bucket % _BUCKETS] = 0
            if b - self.bucket > _BUCKETS:
                self.bucket = b - _BUCKETS

    def level(self, now_ms):
        self._advance(now_ms)
        span = (_BUCKETS - 1) * _BUCKET_MS + now_ms % _BUCKET_MS
        busy = sum(self.busy_ms)
        if self.counted_ms > now_ms:
            busy -= self.counted_ms - now_ms  # a frame still on air is not past yet
        u = busy * 1000 // span if span else 0
        return (u >= _L1) + (u >= _L2) + (u >= _L3)

    def sheds(self, cls, now_ms):
        # should a frame of this class stay off the air now?
        return cls and self.level(now_ms) >= 3 - cls
