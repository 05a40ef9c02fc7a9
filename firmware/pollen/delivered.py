# What the node has handed to its app lately, owned by Node and kept across
# restarts: a node forgets what it has seen when it restarts, and a message
# retried, or a post repaired, after that must not reach the app twice (it
# did, 393 times in 705 power cuts). The last _COUNT message keys
# (origin << 32 | id), 8 bytes each, big-endian, after one byte: where the
# next goes. One storage record, "rx", rewritten whole at every delivery
# (the storage replaces a record atomically, so a cut leaves the old ring
# or the new one). This is also where replay protection starts: a copy
# recorded here, replayed later, is not delivered again.
from pollen._compat import const

_RECORD = "rx"
_COUNT = const(32)


class Delivered:
    def __init__(self, storage):
        self.storage = storage
        rec = storage.get(_RECORD)
        if rec is None or len(rec) != 1 + 8 * _COUNT or rec[0] >= _COUNT:
            rec = bytes(1 + 8 * _COUNT)  # none yet, or damaged: start empty
        self.ring = bytearray(rec)

    def add(self, key):
        # False if key was delivered lately; else remember it (persisted) and True
        k = _bytes(key)
        ring = self.ring
        i = ring.find(k, 1)
        while i > 0:
            if (i - 1) % 8 == 0:
                return False
            i = ring.find(k, i + 1)
        n = ring[0]
        ring[1 + 8 * n:9 + 8 * n] = k
        ring[0] = (n + 1) % _COUNT
        try:
            self.storage.put(_RECORD, ring)
        except MemoryError:
            pass  # remembered until a restart; the message is not lost for it
        return True


def _bytes(key):
    return bytes(((key >> s) & 0xFF for s in (56, 48, 40, 32, 24, 16, 8, 0)))
