# Recent posts a node has, for repairing what its neighbours missed.
# Beacons carry a summary: a 2-byte tag per post the node received in the
# last window (at most _CAP of them). A node that hears a neighbour's beacon
# without a post it has (and the summary is not full, so the absence means
# something) sends that post again. Flooding loses posts to frame loss and
# collisions; this heals it within a beacon interval, and carries posts across
# a partition when a node moves between the parts.
from pollen._compat import const

_CAP = const(8)
_MAX_REPAIRS = const(3)


def tag16(key):
    # key = origin << 32 | msg id
    return ((key >> 32) ^ key) & 0xFFFF


class RecentPosts:
    def __init__(self, window_ms):
        self.window_ms = window_ms
        self.items = []  # [key, frame, received_ms, repairs sent], oldest first

    def add(self, key, frame, now_ms):
        for it in self.items:
            if it[0] == key:
                return
        self.items.append([key, frame, now_ms, 0])
        if len(self.items) > _CAP:
            self.items.pop(0)

    def _fresh(self, now_ms):
        self.items = [it for it in self.items if now_ms - it[2] <= self.window_ms]
        return self.items

    def summary(self, now_ms):
        out = bytearray()
        for it in self._fresh(now_ms):
            t = tag16(it[0])
            out.append(t >> 8)
            out.append(t & 0xFF)
        return bytes(out)

    def missing_from(self, summary, origin, now_ms):
        # Posts we have that a neighbour's summary lacks (none if it is full:
        # then an absent post may simply have been pushed out).
        if len(summary) // 2 >= _CAP:
            return []
        theirs = set()
        for i in range(0, len(summary) - 1, 2):
            theirs.add((summary[i] << 8) | summary[i + 1])
        # newest first; a post is repaired at most _MAX_REPAIRS times by one node
        return [it for it in reversed(self._fresh(now_ms))
                if tag16(it[0]) not in theirs and it[0] >> 32 != origin
                and it[3] < _MAX_REPAIRS]
