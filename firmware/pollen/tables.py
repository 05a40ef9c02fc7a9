# Bounded tables the node keeps in RAM: messages seen, neighbours heard,
# routes learned. Each has a fixed capacity and evicts the oldest entry.
from array import array
from pollen.wire import be32


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
