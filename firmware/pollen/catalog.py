# The catalog: files known to exist in the mesh, learned from neighbours'
# CATALOG frames (gossip). There is no central index: each node keeps its
# own bounded view, and for each file the neighbours that lead to a holder.
#   cid -> [name, size_kib, last_seen_ms, sources]
#   sources: {neighbour id: [hops from it to a holder (0 = it holds it), heard_ms]}
# Like a distance-vector routing table for content: a fetch asks the source
# with the fewest hops, and a node advertises a file it does not hold with
# one hop more than its best source.
from pollen._compat import const, publish

_FAR_HOPS = const(7)       # a file further away than this is not advertised
_SOURCES = const(4)       # neighbours remembered per file


class Catalog:
    def __init__(self, capacity=64, expiry_ms=3600000):
        self.capacity = capacity
        self.expiry_ms = expiry_ms
        self.table = {}

    def heard(self, cid, name, size_kib, hops, via, now_ms):
        # A neighbour advertised cid at `hops` from a holder. True if this
        # improved our way to it (new file, or fewer hops): worth telling on.
        if hops >= _FAR_HOPS:
            return False
        before = self.distance(cid, now_ms)
        e = self.table.get(cid)
        if e is None:
            if len(self.table) >= self.capacity:
                self._evict()
            e = [name, size_kib, now_ms, {}]
            self.table[cid] = e
        if name:
            e[0] = name
        e[1] = size_kib
        e[2] = now_ms
        src = e[3]
        src[via] = [hops, now_ms]
        if len(src) > _SOURCES:
            worst = None
            for k, v in src.items():
                if worst is None or (v[0], -v[1]) > (src[worst][0], -src[worst][1]):
                    worst = k
            del src[worst]
        after = self.distance(cid, now_ms)
        return before is None or after < before

    def _fresh(self, e, now_ms):
        src = e[3]
        for k in [k for k, v in src.items() if now_ms - v[1] > self.expiry_ms]:
            del src[k]
        return src

    def sources(self, cid, now_ms, exclude=()):
        # [(neighbour id, hops)] fewest hops first, most recently heard first
        e = self.table.get(cid)
        if e is None:
            return []
        src = self._fresh(e, now_ms)
        out = [(k, v[0], v[1]) for k, v in src.items() if k not in exclude]
        out.sort(key=lambda s: (s[1], -s[2]))
        return [(s[0], s[1]) for s in out]

    def distance(self, cid, now_ms):
        # hops from us to the nearest holder through our best source, or None
        s = self.sources(cid, now_ms)
        return s[0][1] + 1 if s else None

    def forget_source(self, cid, via):
        e = self.table.get(cid)
        if e is not None:
            e[3].pop(via, None)

    def expire(self, now_ms):
        for cid in [c for c, e in self.table.items() if now_ms - e[2] > self.expiry_ms]:
            del self.table[cid]

    def _evict(self):
        oldest = None
        for cid, e in self.table.items():
            if oldest is None or e[2] < self.table[oldest][2]:
                oldest = cid
        del self.table[oldest]


publish(globals())  # hosts: wire.MSG and the like (_compat.py)
