# An in-memory N-node network with a fake clock, for testing the core. Runs
# under CPython (pytest) and MicroPython (tests/core/mp_run.py) alike, so it
# uses only what both have. Links are explicit; each frame takes its LoRa time
# on air; half-duplex; overlapping frames at a receiver collide unless one is
# 6 dB stronger; hearers are told when a transmission starts (carrier sense,
# as the virtual medium does); optional random loss per frame and receiver.
from pollen.node import Node
from pollen.storage import MemoryStorage
from pollen.airtime import preset_time_on_air_us

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"


class XorShift:
    # Deterministic random source with the one method the core uses.
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def getrandbits(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x >> (32 - n) if n < 32 else x

    def random(self):
        return self.getrandbits(24) / 16777216


def max_hour_airtime_us(sent, hour_ms=3600000):
    # the most airtime in any sliding hour of [(t_ms, airtime_us)], in time order
    worst = 0
    j = 0
    total = 0
    for k in range(len(sent)):
        total += sent[k][1]
        while sent[j][0] <= sent[k][0] - hour_ms:
            total -= sent[j][1]
            j += 1
        worst = max(worst, total)
    return worst


def settings(node_id, **kw):
    # status frames off unless a test turns them on (test_telemetry.py):
    # the other tests count frames of their own protocol
    d = {"node_id": node_id, "network_key": KEY_HEX, "region": "EU868",
         "preset": "ShortFast", "beacon_interval_ms": 10000, "telemetry_interval_ms": 0}
    for k in kw:
        d[k] = kw[k]
    return d


class FakeMesh:
    def __init__(self, ids, links, seed=1, loss=0.0, carrier_sense=True, **kw):
        # links: list of (a, b) or (a, b, snr_db); symmetric
        self.rng = XorShift(seed + 1000)
        self.loss = loss
        self.carrier_sense = carrier_sense
        self.now_ms = 0
        self.kw = kw
        self.links = {}
        for l in links:
            snr = l[2] if len(l) > 2 else 5
            self.links[(l[0], l[1])] = snr
            self.links[(l[1], l[0])] = snr
        self.nodes = {}
        self.storage = {}
        self.up = {}
        self.events = []     # (t_ms, node_id, action, info)
        self.on_air = []     # [start_ms, end_ms, sender, frame]
        self.recent = []     # on air now or lately, for collision checks
        self.tx_count = 0
        self.seed = seed
        for i in ids:
            self.storage[i] = MemoryStorage()
            self.boot(i)

    def boot(self, i, **kw):
        s = dict(self.kw)
        for k in kw:
            s[k] = kw[k]
        n = Node(settings(i, **s), self.storage[i], XorShift(self.seed * 7919 + i))
        n.start(self.now_ms)
        self.nodes[i] = n
        self.up[i] = True
        return n

    def power_off(self, i):
        self.up[i] = False

    def cut(self, a, b):
        self.links.pop((a, b), None)
        self.links.pop((b, a), None)

    def join(self, a, b, snr=5):
        self.links[(a, b)] = snr
        self.links[(b, a)] = snr

    def send(self, src, dest, text):
        mid = self.nodes[src].send(dest, text, self.now_ms)
        self._poll(src)
        return mid

    def inject(self, i, frame, rssi=-80, snr=5):
        self.nodes[i].on_frame(frame, rssi, snr, self.now_ms)
        self._poll(i)

    def _poll(self, i):
        n = self.nodes[i]
        for a in n.poll(self.now_ms):
            if a[0] == "tx":
                self._transmit(i, a[1])
            else:
                self.events.append((self.now_ms, i, a[0], a[1]))

    def _transmit(self, i, frame):
        self.tx_count += 1
        air = preset_time_on_air_us(len(frame), self.nodes[i].preset) // 1000
        tx = [self.now_ms, self.now_ms + air, i, frame]
        self.on_air.append(tx)
        self.recent.append(tx)
        if self.carrier_sense:
            # what the radio's channel activity detection tells the hearers
            for (a, b) in self.links:
                if a == i and self.up.get(b):
                    self.nodes[b].channel_busy(self.now_ms + air, self.now_ms)

    def _finish(self, tx):
        start, end, sender, frame = tx
        for (a, b), snr in self.links.items():
            if a != sender or not self.up.get(b):
                continue
            if self._busy(tx, b, snr):
                continue
            if self.loss and self.rng.random() < self.loss:
                continue
            self.nodes[b].on_frame(frame, snr - 100, snr, self.now_ms)
            self._poll(b)

    def _busy(self, tx, rx, snr):
        # rx misses tx if it was transmitting itself (half-duplex) or another
        # frame it could hear overlapped and was not 6 dB weaker (collision).
        for o in self.recent:
            if o is tx or o[1] <= tx[0] or o[0] >= tx[1]:
                continue
            if o[2] == rx:
                return True
            other = self.links.get((o[2], rx))
            if other is not None and other + 6 > snr:
                return True
        return False

    def run(self, duration_ms, max_steps=500000):
        self._run(duration_ms, max_steps)
        assert self.internal_errors() == 0, "the core caught an exception: a bug: " + str([n.last_internal for n in self.nodes.values() if n.counters.get("internal")])

    def _run(self, duration_ms, max_steps):
        end = self.now_ms + duration_ms
        steps = 0
        while True:
            steps += 1
            assert steps < max_steps, "FakeMesh.run: no progress (a node's wake-up does not move)"
            t = end
            for i, n in self.nodes.items():
                if self.up[i] and n.next_wake_ms < t:
                    t = n.next_wake_ms
            for o in self.on_air:
                if o[1] < t:
                    t = o[1]
            if t >= end and not any(o[1] <= end for o in self.on_air):
                self.now_ms = end
                break
            self.now_ms = max(self.now_ms, t)
            done = [o for o in self.on_air if o[1] <= self.now_ms]
            for o in done:
                self._finish(o)
            for o in done:
                self.on_air.remove(o)
            if done:
                self.recent = [o for o in self.recent if o[1] > self.now_ms - 10000]
            for i in self.nodes:
                if self.up[i] and self.nodes[i].next_wake_ms <= self.now_ms:
                    self._poll(i)

    def internal_errors(self):
        # exceptions the core caught while handling authenticated frames: bugs
        return sum(n.counters.get("internal", 0) for n in self.nodes.values())

    def received(self, node_id, kind=None):
        return [e[3] for e in self.events
                if e[1] == node_id and e[2] == "received" and (kind is None or e[3]["kind"] == kind)]

    def delivered(self, node_id):
        return [e[3] for e in self.events if e[1] == node_id and e[2] == "delivered"]


def line(n, first=1, **kw):
    ids = [first + i for i in range(n)]
    return FakeMesh(ids, [(ids[i], ids[i + 1]) for i in range(n - 1)], **kw)
