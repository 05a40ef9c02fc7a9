# Bounded tables the node keeps in RAM: messages seen, neighbours heard,
# routes learned. Each has a fixed capacity and evicts the oldest entry.
from array import array
from pollen._compat import const
from pollen.wire import be32, u32


def _find(buf, k, at=0):
    # the slot holding the 4-byte key k in buf (slots of 4 bytes from `at`),
    # or -1: searched in C, a match must start on a slot
    i = buf.find(k, at)
    while i >= 0 and (i - at) & 3:
        i = buf.find(k, i + 1)
    return (i - at) >> 2 if i >= 0 else -1


def _fold(key):
    # a message key (origin << 32 | id) as 4 bytes (30 bits, never all zero)
    k = (key ^ key >> 30 ^ key >> 60) & 0x3FFFFFFF
    return bytes((k >> 24 | 0x40, k >> 16 & 0xFF, k >> 8 & 0xFF, k & 0xFF))


class Seen:
    # Duplicate suppression: the last `capacity` message keys, in arrival
    # order, each folded to 4 bytes in one bytearray (searched in C; a
    # 64-bit key would be an object of its own on the heap, about 32 bytes,
    # and a list holding them 8 bytes more each). Two messages fold alike
    # once in 2**30 / capacity.
    # Beside each key, the transmissions this node has spent on that message
    # (one byte): every copy, relay and retry is charged to it, and a node
    # stops spending on a message at its budget (Node._within_budget).
    def __init__(self, capacity=128):
        self.capacity = capacity
        self._ring = bytearray(4 * capacity)
        self._spent = bytearray(capacity)
        self._i = 0

    def _find(self, k):
        # the slot holding folded key k, or -1
        return _find(self._ring, k)

    def __contains__(self, key):
        return self._find(_fold(key)) >= 0

    def add(self, key):
        k = _fold(key)
        if self._find(k) >= 0:
            return
        self._ring[4 * self._i:4 * self._i + 4] = k
        self._spent[self._i] = 0
        self._i = (self._i + 1) % self.capacity

    def spent(self, key, charge=0):
        # transmissions charged to this message so far (0 if not remembered),
        # after charging it `charge` more
        j = self._find(_fold(key))  # one scan: a message we transmit is nearly always here
        if j < 0:
            if not charge:
                return 0
            self.add(key)
            j = (self._i - 1) % self.capacity
        n = self._spent[j] + charge
        self._spent[j] = n if n < 255 else 255
        return n


class Neighbours:
    # Nodes heard directly:
    #   id -> [name, rssi_dbm, snr_db, last_heard_ms, heard_count, their_neighbours]
    # their_neighbours: low bytes of the nodes they hear (from their beacon),
    # the two-hop view that lets a relay tell whether its copy would reach anyone new.
    def __init__(self, capacity=32, expiry_ms=900000):
        self.capacity = capacity
        self.expiry_ms = expiry_ms
        self.table = {}

    def heard(self, node_id, rssi_dbm, snr_db, now_ms, name=None):
        e = self.table.get(node_id)
        is_new = e is None or now_ms - e[3] > self.expiry_ms
        if e is None:
            if len(self.table) >= self.capacity:
                # a full table in a dense mesh: nodes come and go from it all
                # the time, which says nothing about links coming up
                self._evict()
                is_new = False
            e = [None, 0, 0, 0, 0, b""]
            self.table[node_id] = e
        if name is not None:
            e[0] = name
        e[1] = rssi_dbm
        e[2] = snr_db
        e[3] = now_ms
        e[4] += 1
        return is_new

    def _evict(self):
        oldest = None
        for k, e in self.table.items():
            if oldest is None or e[3] < self.table[oldest][3]:
                oldest = k
        del self.table[oldest]

    def is_live(self, node_id, now_ms):
        e = self.table.get(node_id)
        return e is not None and now_ms - e[3] <= self.expiry_ms

    def by_low_byte(self, low, now_ms):
        # The one live neighbour whose id ends in `low`, or None if none or ambiguous.
        found = None
        for k, e in self.table.items():
            if k & 0xFF == low and now_ms - e[3] <= self.expiry_ms:
                if found is not None:
                    return None
                found = k
        return found

    def their_neighbours(self, low, now_ms):
        n = self.by_low_byte(low, now_ms)
        return self.table[n][5] if n is not None else b""

    def live(self, now_ms):
        return [k for k, e in self.table.items() if now_ms - e[3] <= self.expiry_ms]


class Routes:
    # Next hop towards a destination, learned from overheard traffic. Per
    # route, at the same slot of two arrays:
    #   _ring    the destination's id, 4 bytes big-endian (0: a free slot; 0
    #            is no node's id), searched in C like Seen's keys
    #   table    learned_min << 12 | hops << 8 | next hop's low byte
    # (frames name next hops by their low byte anyway). learned_min is
    # minutes since start, modulo 2**18 (182 days); an age is
    # (now_min - learned_min) & 0x3FFFF. The arrays grow 32 slots at a time
    # up to the capacity: a full table of 256 is 2 KB; as a dict it was
    # 4.8 KB, each growth needing a new block of up to 4 KB besides the old
    # one (and a 32-bit board keeps most 32-bit ids as objects of their own).
    def __init__(self, capacity=256, expiry_ms=7200000):
        self.capacity = capacity
        self.expiry_ms = expiry_ms
        self._ring = bytearray()
        self.table = array("I")
        self.used = 0

    def _find(self, dest):
        # the slot of dest, or -1 (0 is no node's id: it marks free slots)
        return _find(self._ring, be32(dest)) if dest else -1

    def __len__(self):
        return self.used  # routes held

    def learn(self, dest, via, hops, now_ms):
        if not dest:
            return False  # 0 marks a free slot (and is no node's id)
        via &= 0xFF
        now = now_ms // 60000
        j = self._find(dest)
        v = self.table[j] if j >= 0 else None
        if v is not None and ((now - (v >> 12)) & 0x3FFFF) * 60000 < self.expiry_ms \
                and (v >> 8) & 0xF < hops and v & 0xFF != via:
            return False  # keep the shorter route while it is fresh
        changed = v is None or v & 0xFF != via
        if j < 0:
            size = len(self.table)
            j = _find(self._ring, bytes(4)) if self.used < size else -1  # a free slot
            if j < 0 and size < self.capacity:  # 32 slots more
                n = min(32, self.capacity - size)
                self._ring.extend(bytes(4 * n))
                self.table.extend(array("I", bytes(4 * n)))
                j = size
            if j < 0:  # full: the oldest goes
                age = -1
                for i in range(size):
                    a = (now - (self.table[i] >> 12)) & 0x3FFFF
                    if a > age:
                        j, age = i, a
            else:
                self.used += 1
            self._ring[4 * j:4 * j + 4] = be32(dest)
        self.table[j] = (now & 0x3FFFF) << 12 | (hops & 0xF) << 8 | via
        return changed

    def next_hop(self, dest, now_ms):
        # the low byte of the next hop, or None
        j = self._find(dest)
        v = self.table[j] if j >= 0 else None
        if v is None or ((now_ms // 60000 - (v >> 12)) & 0x3FFFF) * 60000 >= self.expiry_ms:
            return None
        return v & 0xFF

    def hops(self, dest):
        j = self._find(dest)
        return (self.table[j] >> 8) & 0xF if j >= 0 else None

    def forget(self, dest):
        j = self._find(dest)
        if j >= 0:
            self._ring[4 * j:4 * j + 4] = bytes(4)
            self.table[j] = 0
            self.used -= 1

# ---- replay windows ----------------------------------------------------------
# Replay protection (Replay), owned by Node and kept across restarts. The seen table
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
