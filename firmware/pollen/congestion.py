# Congestion, owned by Node: how busy the channel is, and what to shed.
#
# Utilisation is the share of time the channel was busy over a sliding
# window of _BUCKETS buckets of _BUCKET_MS: our own transmissions plus what
# carrier sense reported (Node.channel_busy). Overlapping busy periods are
# counted once. Meshtastic measures the same thing the same way (six 10 s
# periods, airtime.cpp) and holds back its own broadcasts above 25 %.
#
# Every frame has a traffic class (Node._traffic_class), most valuable first:
#   0  first transmissions, relays of them, acks   never shed
#   1  the hop retries of our own message or ack (its first attempt)
#   2  retries, post repair, held-copy offers
#   3  gossip: relayed status, catalog
# and as utilisation rises the node sheds the least valuable first
# (Node._transmit_due asks `sheds`):
#   level 1 (>= 35 %): gossip; beacons come less often
#   level 2 (>= 50 %): also post repair, held-copy offers and relays' retries
#                      (dropped); our own end-to-end retries wait for a
#                      quieter moment
#   level 3 (>= 70 %): our own hop retries wait too, and our own retries
#                      back off twice as long
# What the channel can carry is still delivered: goodput plateaus at
# capacity instead of collapsing under retries and gossip.
#
# Fair share (unfair): the node's relay airtime per origin over the same
# buckets (3/4 of it kept each bucket, rounded down, so a share that is not
# renewed is gone within minutes; all of it after _QUIET buckets without
# traffic), for the _FAIR origins it relayed most for. While the channel is
# at level 1 or more, the first transmission of a relay for an origin that
# has had more than twice the mean share of the origins with airtime left
# in the table is not sent
# (Node._transmit_due drops it: "unfair"): a member flooding at its duty
# limit gets its own airtime and a fair part of its neighbours', not all of
# it. (Not on the duty budget alone: in a 1 % region half of it is spent
# in ordinary traffic, and line-10 then lost honest relays.)
# (Attribute names are ones the core has anyway: each new name is a qstr,
# and a node's heap is near the point where MicroPython adds a pool of them.)
from pollen._compat import const

_BUCKETS = const(6)
_BUCKET_MS = const(10000)
_L1 = const(350)  # per mille at which level 1, 2, 3 start
_L2 = const(500)
_L3 = const(700)
_FAIR = const(8)  # origins in the fair-share table
_QUIET = const(16)  # buckets after which nothing is left of the shares (0.75**16: 1 %)


class Congestion:
    def __init__(self):
        self.used = [0] * _BUCKETS  # busy ms per bucket, a ring: bucket b is used[b % _BUCKETS]
        self.stamp = 0              # the current bucket's number (time // _BUCKET_MS)
        self.at_ms = 0              # busy time is counted up to here
        self.table = [0] * _FAIR    # the origins we relayed most for lately (0: none)
        self.spent = [0] * _FAIR    # our relay airtime on each, ms; 3/4 kept each bucket

    def record(self, start_ms, end_ms):
        # the channel was (or will be) busy from start_ms to end_ms
        if start_ms < self.at_ms:
            start_ms = self.at_ms
        while end_ms > start_ms:  # each bucket gets its part
            self._slot(start_ms)
            t = (self.stamp + 1) * _BUCKET_MS
            if t > end_ms:
                t = end_ms
            self.used[self.stamp % _BUCKETS] += t - start_ms
            start_ms = self.at_ms = t

    def _slot(self, now_ms):
        # move the ring on to now's bucket, emptying the buckets it passes
        b = now_ms // _BUCKET_MS
        while self.stamp < b:
            if b - self.stamp > _QUIET:
                # a long quiet: no busy time is left in the window, nor
                # any share (decayed bucket by bucket it would be all but 0)
                self.stamp = b
                for i in range(_BUCKETS):
                    self.used[i] = 0
                for i in range(_FAIR):
                    self.spent[i] = 0
                return
            self.stamp += 1
            self.used[self.stamp % _BUCKETS] = 0
            for i in range(_FAIR):
                self.spent[i] = self.spent[i] * 3 >> 2  # (rounded down: reaches 0)

    def level(self, now_ms):
        self._slot(now_ms)
        span = (_BUCKETS - 1) * _BUCKET_MS + now_ms % _BUCKET_MS
        busy = sum(self.used)
        if self.at_ms > now_ms:
            busy -= self.at_ms - now_ms  # a frame still on air is not past yet
        u = busy * 1000 // span if span else 0
        return (u >= _L1) + (u >= _L2) + (u >= _L3)

    def unfair(self, origin, air_ms, now_ms):
        # Fair share: may we spend air_ms relaying for origin? Not if the
        # channel is busy (level 1 or more) and origin has had more than
        # twice the mean share of our relay airtime lately; else it is
        # charged (a new origin takes the place of the one we spent least on)
        self._slot(now_ms)
        a = self.spent
        if origin in self.table:
            i = self.table.index(origin)
            if self.level(now_ms) and a[i] * (_FAIR - a.count(0)) > sum(a) * 2:
                return True
        else:
            i = a.index(min(a))
            self.table[i] = origin
            a[i] = 0
        a[i] += air_ms

    def sheds(self, cls, now_ms):
        # should a frame of this class stay off the air now?
        return cls and self.level(now_ms) >= 4 - cls
