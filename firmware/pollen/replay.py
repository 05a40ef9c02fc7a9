# Replay protection, owned by Node and kept across restarts. The seen table
# forgets a message after 128 others, and a restart forgets them all: a
# frame recorded off the air and sent again after that was taken for new (a
# post delivered and flooded again, a message delivered and acked again, a
# first beacon of an absent node making its neighbours send it what they
# held). So, as IPsec's anti-replay window (RFC 4303 §3.4.3), each origin's
# ids are remembered as the highest accepted ("top") and a bitmap of the 64
# ids below it; an id below that window is refused as old. Message ids count
# up at their origin (node.py _new_id), with two counters: messages (POST,
# MSG, ACK: ids with the top bit clear) and the rest (BEACON, file frames,
# STATUS: top bit set), so a message held for a day is not pushed out of its
# origin's window by that origin's beacons and status frames. Beacons, sent
# one hop and never held, must count up: only the last one's id is kept.
#
# One entry of _ENTRY bytes per origin, in one bytearray (the storage record
# "rp", rewritten whole): origin, top, bitmap (bit k: id top-1-k accepted),
# last beacon id. At most `capacity` origins (Settings.replay_origins); a
# full table lets go of the origin least used lately (a clock: each entry's
# use bit gives it a second chance). An origin it let go of is protected
# again from its next frame on. A counter far behind (_REWIND) is an origin
# that lost its storage and began again at random: taken as new.
from pollen._compat import const
from pollen.wire import be32, u32

_RECORD = "replay"
_ENTRY = const(20)
_WINDOW = const(64)
_REWIND = const(0x100000)  # ids behind by more than this: a counter begun again
# what state() tells: never accepted (as far as the table knows), accepted
# before, below the window (refused)
_NEW = const(0)
_SEEN = const(1)
_OLD = const(2)


def _ahead(a, b):
    # how far 31-bit id a is ahead of b (serial numbers, RFC 1982); < 0: behind
    d = (a - b) & 0x7FFFFFFF
    return d if d < 0x40000000 else d - 0x80000000


class Replay:
    def __init__(self, storage, capacity):
        self.storage = storage
        self.capacity = capacity
        self.t = bytearray()  # read at the first use, not at start (a start's heap is its peak)
        self.used = bytearray(capacity)
        self._i = 0  # the clock's hand

    def load(self):
        t = self.t
        if not t:
            t = self.t = bytearray(_ENTRY * self.capacity)
            rec = self.storage.get(_RECORD)
            if rec:
                n = min(len(rec), len(t)) // _ENTRY * _ENTRY
                t[:n] = rec[:n]  # (a capacity changed since: what fits)
            self._i = max(self._slot(bytes(4)), 0)  # the first free entry
        return t

    def _slot(self, key):
        # the entry of origin key (4 bytes), or -1
        t = self.t
        i = t.find(key)
        while i >= 0 and i % _ENTRY:
            i = t.find(key, i + 1)
        return i // _ENTRY if i >= 0 else -1

    def _find(self, origin, add):
        # the offset of origin's entry; a new one if add (letting another go)
        self.load()
        key = be32(origin)
        j = self._slot(key)
        if j < 0:
            if not add:
                return -1
            u = self.used
            while u[self._i]:
                u[self._i] = 0
                self._i = (self._i + 1) % self.capacity
            j = self._i
            self._i = (j + 1) % self.capacity
            self.t[j * _ENTRY:(j + 1) * _ENTRY] = bytes(_ENTRY)
            self.t[j * _ENTRY:j * _ENTRY + 4] = key
        self.used[j] = 1
        return j * _ENTRY

    def state(self, origin, msg_id):
        # _NEW, _SEEN or _OLD: was message msg_id of origin accepted before?
        o = self._find(origin, False)
        if o < 0:
            return _NEW
        t = self.t
        top = u32(t, o + 4)
        d = _ahead(msg_id & 0x7FFFFFFF, top)
        if not top or d > 0 or d < -_REWIND:
            return _NEW
        if not d:
            return _SEEN
        k = -d - 1
        if k >= _WINDOW:
            return _OLD
        return t[o + 8 + (k >> 3)] >> (k & 7) & 1

    def add(self, origin, msg_id):
        # message msg_id of origin is accepted: remembered (saved by flush())
        o = self._find(origin, True)
        t = self.t
        m = msg_id & 0x7FFFFFFF
        top = u32(t, o + 4)
        d = _ahead(m, top)
        if not top or d > 0 or d < -_REWIND:
            # ahead: the window moves up, the old top into its bitmap
            b = int.from_bytes(t[o + 8:o + 16], "little")
            b = (b << d | 1 << d - 1) & 0xFFFFFFFFFFFFFFFF if top and 0 < d <= _WINDOW else 0
            t[o + 8:o + 16] = b.to_bytes(8, "little")
            t[o + 4:o + 8] = be32(m)
        elif d < 0 and -d <= _WINDOW:
            k = -d - 1
            t[o + 8 + (k >> 3)] |= 1 << (k & 7)

    def heard(self, origin, msg_id):
        # a beacon: True if newer than the last one heard from origin (and
        # remembered as the last); False: a replay
        o = self._find(origin, True)
        t = self.t
        m = msg_id & 0x7FFFFFFF
        last = u32(t, o + 16)
        d = _ahead(m, last)
        if last and 0 >= d >= -_REWIND:
            return False
        t[o + 16:o + 20] = be32(m)
        return True

    def flush(self):
        # write the table: at deliveries, and at each beacon of ours
        if self.t:
            try:
                self.storage.put(_RECORD, self.t)
            except MemoryError:
                pass  # kept in RAM: saved with the next
