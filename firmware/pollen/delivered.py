# What the node has handed to its app lately, owned by Node and kept across
# restarts: a node forgets what it has seen when it restarts, and a message
# retried, or a post repaired, after that must not reach the app twice (it
# did, 393 times in 705 power cuts). The last _COUNT message keys, each
# folded to 4 bytes as the seen table folds them (tables._fold: 30 bits),
# after one byte: where the next goes. One storage record, "rx", rewritten
# whole at every delivery (the storage replaces a record atomically, so a
# cut leaves the old ring or the new one). _COUNT is the seen table's
# capacity: a node remembers across a restart as many messages as it does
# while it runs (32 keys were too few: 167 duplicates in 1000 power cuts once
# the nodes carried more traffic). This is also where replay protection
# starts: a copy recorded here, replayed later, is not delivered again.
from pollen._compat import const
from pollen.tables import _find, _fold

_RECORD = "rx"
_COUNT = const(128)
_KEY_BYTES = const(4)


class Delivered:
    def __init__(self, storage):
        self.storage = storage
        self.ring = None  # read at the first delivery, not at start (a start's heap is its peak)

    def load(self):
        # the ring, read from storage at the first use
        if self.ring is None:
            rec = self.storage.get(_RECORD)
            if rec is None or len(rec) != 1 + _KEY_BYTES * _COUNT or rec[0] >= _COUNT:
                # none yet, damaged, or of the first layout (32 keys of 8 bytes): start empty
                rec = bytes(1 + _KEY_BYTES * _COUNT)
            self.ring = bytearray(rec)
        return self.ring

    def __contains__(self, key):
        # was key handed to the app lately?
        return _find(self.load(), _fold(key), 1) >= 0

    def add(self, key):
        # key was handed to the app: remember it (persisted)
        ring = self.load()
        n = ring[0]
        ring[1 + _KEY_BYTES * n:1 + _KEY_BYTES * (n + 1)] = _fold(key)
        ring[0] = (n + 1) % _COUNT
        try:
            self.storage.put(_RECORD, ring)
        except MemoryError:
            pass  # remembered until a restart; the message is not lost for it
