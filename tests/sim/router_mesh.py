"""FakeMesh (tests/core/fakemesh.py: explicit links, fake clock, half-duplex,
collisions, carrier sense) with a baseline router in place of pollen's Node,
recording every transmission. Shared by the baseline routers' tests."""
from core.fakemesh import FakeMesh, XorShift, settings


class RouterMesh(FakeMesh):
    ROUTER = None            # the router class: set by a subclass
    DEFAULTS = {}            # settings every node gets unless a test says otherwise

    def boot(self, i, **kw):
        s = dict(self.DEFAULTS)
        s.update(self.kw)
        s.update(kw)
        n = self.ROUTER(settings(i, **s), self.storage[i], XorShift(self.seed * 7919 + i))
        n.start(self.now_ms)
        self.nodes[i] = n
        self.up[i] = True
        return n

    def _transmit(self, i, frame):
        self.__dict__.setdefault("sent", []).append((self.now_ms, i, frame))
        super()._transmit(i, frame)

    def sent_by(self, i):
        return [s for s in self.__dict__.get("sent", []) if s[1] == i]

    def events_of(self, i, kind):
        return [e[3] for e in self.events if e[1] == i and e[2] == kind]


def run_until_tx(r, t, limit_ms=600000):
    # poll one router at each wake-up until it transmits; -> (time, frame) or None
    end = t + limit_ms
    while t <= end:
        for a in r.poll(t):
            if a[0] == "tx":
                return t, a[1]
        t = r.next_wake_ms if r.next_wake_ms > t else t + 1
    return None
