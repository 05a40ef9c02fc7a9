# Congestion, owned by Node: how busy the channel is, and what to shed.
#
# Utilisation is the share of time the channel was busy over a sliding
# window of _BUCKETS buckets of _BUCKET_MS: our own transmissions plus what
# carrier sense reported (Node.channel_busy). Overlapping busy periods are
# counted once. Meshtastic measures the same thing the same way (six 10 s
# periods, airtime.cpp) and holds back its own broadcasts above 25 %.
#
# As utilisation rises the node sheds the least valuable traffic first
# (Node._transmit_due asks `sheds(cls)` for every frame it is about to send):
#   level 1 (>= 35 %): gossip beyond what neighbour discovery needs
#                      (relayed status, catalog; beacon intervals grow)
#   level 2 (>= 50 %): post repair, held-copy offers and relays' retries are
#                      dropped; our own retries wait for a quieter moment
#   level 3 (>= 70 %): end-to-end retries back off twice as long
# First transmissions and acks are never shed, so what the channel can carry
# is still delivered: goodput plateaus at capacity instead of collapsing.
from pollen._compat import const

_BUCKETS = const(6)
_BUCKET_MS = const(10000)
# traffic classes, most valuable first
C_FIRST = const(0)     # first transmissions, relays of them, acks
C_RETRY = const(1)     # retries, post repair, held-copy offers
C_GOSSIP = const(2)    # relayed status, catalog, beacons beyond discovery
_LEVELS = (350, 500, 700)  # per mille at which level 1, 2, 3 start


class Congestion:
    def __init__(self, now_ms=0):
        self.busy_ms = [0] * _BUCKETS
        self.bucket_at_ms = now_ms - now_ms % _BUCKET_MS  # start of the current bucket
        self.counted_ms = 0   # busy time is counted up to here
        self.shed = 0         # frames not sent because of congestion

    def busy(self, start_ms, end_ms):
        # the channel was (or will be) busy from start_ms to end_ms
        if start_ms < self.counted_ms:
            start_ms = self.counted_ms
        if end_ms <= start_ms:
            return
        self._advance(start_ms)
        self.busy_ms[-1] += end_ms - start_ms
        self.counted_ms = end_ms

    def _advance(self, now_ms):
        n = (now_ms - self.bucket_at_ms) // _BUCKET_MS
        if n <= 0:
            return
        if n >= _BUCKETS:
            self.busy_ms = [0] * _BUCKETS
        else:
            self.busy_ms = self.busy_ms[n:] + [0] * n
        self.bucket_at_ms += n * _BUCKET_MS

    def per_mille(self, now_ms):
        self._advance(now_ms)
        span = (_BUCKETS - 1) * _BUCKET_MS + (now_ms - self.bucket_at_ms)
        if span <= 0:
            return 0
        busy = sum(self.busy_ms)
        # time counted ahead (a frame still on air) is not past yet
        if self.counted_ms > now_ms:
            busy -= self.counted_ms - now_ms
        u = busy * 1000 // span
        return 0 if u < 0 else (1000 if u > 1000 else u)

    def level(self, now_ms):
        u = self.per_mille(now_ms)
        n = 0
        for t in _LEVELS:
            if u >= t:
                n += 1
        return n

    def sheds(self, cls, now_ms):
        # should a frame of this class stay off the air now?
        if cls == C_FIRST:
            return False
        lv = self.level(now_ms)
        return lv >= 2 if cls == C_RETRY else lv >= 1
