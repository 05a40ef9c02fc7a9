# Telemetry, part of Node: each node floods a compact status frame (STATUS)
# now and then, so that a monitor attached to any node sees the whole mesh:
# who is alive, how well it hears its neighbours, its airtime, queue and
# battery. Payload (docs/protocol.md §11), big-endian:
#   0   payload version (1)
#   1   name length n (0..16), then n bytes of name (UTF-8)
#   +0  uptime s (u32)      +4 battery mV (u16, 0 = unknown)
#   +6  free heap bytes (u32, 0xFFFFFFFF = unknown)
#   +10 airtime used in the last hour, per mille of the time (u16)
#   +12 duty-cycle headroom, per mille (u16)
#   +14 queue (u8)  +15 held (u8)  +16 file store used, KiB (u16)
#   +18 seconds until its next status frame is due (u16; 65535: 18 h or more)
#   +20 counters (u32 each): rx, tx, relayed, duplicates, dropped, auth failed
#   +44 neighbour count k (0..8), then k x (id u32, RSSI dBm i8, SNR i8 in 1/4 dB)
# Rate: every node aims at a status frame every telemetry_interval_ms, longer
# when many nodes are heard (RTCP-style: each status is relayed by about
# every node, so one node's share grows with the number of nodes), and a
# hard budget keeps own and relayed status frames within
# telemetry_share_per_mille of the airtime the node may use (its duty-cycle
# budget, or all the time where the region has none).
# And the mesh's status frames together stay a small share of what is on the
# channel (RTCP keeps its reports at 5 % of the session's traffic the same
# way): every frame a node hears or sends that is not a status earns
# 3/4 of telemetry_share_per_mille of its airtime in credit (1.5 % by default),
# every status frame heard or sent (anyone's) costs its airtime, plus twice
# the node's own share of the time (above) so a quiet mesh still reports:
# what one node may spend becomes what its whole neighbourhood may spend,
# however many nodes it has. Own and relayed status frames go only while
# the credit covers them. It saves up at most four status frames, and starts
# with two (our own first status and one relay).
from pollen import wire
from pollen.wire import Frame
from pollen.airtime import AirtimeBudget
from pollen._compat import const
from pollen.jobs import Job

# the numbers of wire.py and jobs.py used here, as private copies (_compat.publish)
_HEADER_BYTES = const(16)
_BROADCAST = const(0xFFFFFFFF)
_STATUS = const(9)
_J_ONCE = const(0)

_VERSION = const(1)
_NEIGHBOURS = const(8)     # most neighbours one status lists
_FIXED_BYTES = const(45)   # payload after the name, without neighbours
_UNKNOWN32 = const(0xFFFFFFFF)
_MAX_STATUS_FRAME = const(135)  # bytes: header, the longest payload (111), tag
_AGAIN_MS = const(20000)   # the second status goes 20-40 s after the first
_FIRST_MS = const(17000)   # the first status goes 3 s + up to this after start (spread:
                           # a whole mesh powered on at once does not send them together)
_STATUS_JOB = const(4)  # job key of our own status (sharing.py has 1..3; node.py has it too)



class Telemetry:
    def _init_telemetry(self, now_ms=None):
        # called by Node.__init__ (now_ms None: every attribute exists from
        # then on, so a start adds none to the node's attribute table, which
        # would need a new block of a heap the start has fragmented), and by
        # Node.start with its clock
        s = self.s
        self.tele_interval_ms = s.telemetry_interval_ms
        self.next_status_ms = 0 if now_ms is None else now_ms + 3000 + self._rand(_FIRST_MS)
        self.tele_again = True
        # a share of the airtime the node may use: of its duty-cycle budget
        # where the region has one, else of all the time
        share = s.telemetry_share_per_mille * (self.duty.per_mille or 1000)
        # it saves up a quarter of an hour's share, or one status frame of
        # the longest kind if that is more, and starts full: a node's first
        # status goes when due, and relays of its neighbours' first ones as
        # far as a quarter hour's share goes. Where that is less than a
        # frame (a 1 % region, a slow preset) it starts with its own first
        # status only, and a duty-cycle budget messages need is not spent
        one = self._airtime_us(_MAX_STATUS_FRAME)
        cap = share * 900 if share * 900 > one else one
        self.tele_budget = AirtimeBudget(share, cap, cap if share else 0)
        self.tele_budget.at_ms = now_ms or 0
        # the channel credit (see the top), kept in an AirtimeBudget's fields
        # (saved_us may go below 0 here): starts with two status frames
        self.tele_chan = AirtimeBudget(share * 2, 4 * one, 2 * one)
        self.tele_chan.at_ms = now_ms or 0

    def _status_credit(self, now_ms, data=None):
        # The channel credit now (see the top); with data, a frame on the
        # channel (heard, or our own) is booked first: credit or cost
        b = self.tele_chan
        c = b.saved_us + (now_ms - b.at_ms) * b.per_million // 1000
        if data:
            air_us = self._airtime_us(len(data))
            if data[0] & 0x0F == _STATUS:
                c -= air_us
                if c < -b.cap_us:
                    c = -b.cap_us
            else:
                c += air_us * self.s.telemetry_share_per_mille * 3 // 4000
            b.saved_us = c if c < b.cap_us else b.cap_us
            b.at_ms = now_ms
        return c

    def _telemetry_timer(self, now_ms):
        base = self.s.telemetry_interval_ms
        if not base or now_ms < self.next_status_ms:
            return
        if _STATUS_JOB in self.jobs:
            self.next_status_ms = now_ms + self.slot_ms
            return
        air_us = self._airtime_us(_HEADER_BYTES + len(self._status_payload(now_ms)) + 8)
        if self._status_credit(now_ms) < air_us:
            # the mesh's status frames have their share of the channel: later
            self.next_status_ms = now_ms + self.slot_ms * 64 + self._rand(self.slot_ms * 64)
            return
        wait_ms = self.tele_budget.take(air_us, now_ms)  # spent now: ours goes first
        if wait_ms:
            self.next_status_ms = now_ms + wait_ms
            return
        # the interval: one frame for each node we know a way to, and ours
        # (we send our own and relay theirs), within the share of airtime;
        # status frames teach routes, so the route table counts the mesh
        need_ms = (len(self.routes) + 1) * air_us * 1000 // (self.tele_budget.per_million or 1)
        interval = need_ms if need_ms > base else base
        self.tele_interval_ms = interval
        gap_ms = interval - interval // 10 + self._rand(interval // 5)
        if self.tele_again:  # a node just started says so twice (one may be lost), budget allowing
            self.tele_again = False
            again_ms = _AGAIN_MS + self._rand(_AGAIN_MS)
            gap_ms = again_ms if again_ms < gap_ms else gap_ms
        self.next_status_ms = now_ms + gap_ms
        # built again: it tells when the next one is due, known only now
        f = Frame(_STATUS, 0, self.s.hop_limit, 0, self.id, _BROADCAST, self._new_id(),
                  0, self.low, self._status_payload(now_ms))
        self.seen.add(f.key())
        # like a beacon: one at a time, dropped rather than deferred by the duty cycle
        self._add_job(Job(_STATUS_JOB, _J_ONCE, wire.pack(f, self.key), now_ms, 0))

    def _on_status(self, f, data, rssi_dbm, snr_db, now_ms):
        p = f.payload
        # checked as far as relaying needs: version, and the name and the
        # neighbour count fit the length (hosts decode the rest: status_wire.py)
        if len(p) < 2 or p[0] != _VERSION or p[1] > 16 or len(p) < 2 + p[1] + _FIXED_BYTES \
                or len(p) != 2 + p[1] + _FIXED_BYTES + 6 * p[1 + p[1] + _FIXED_BYTES]:
            self._drop("field")
            return
        self.out.append(("telemetry", {"id": "%08x" % f.origin, "hops": f.hops + 1,
                                       "rssi_dbm": rssi_dbm, "snr_db": snr_db, "data": p}))
        if f.hops < f.hop_limit:
            self._relay_flood(f, data, snr_db, now_ms)

    def _status_payload(self, now_ms):
        c = self.counters
        name = self.s.name.encode()[:16]
        nb = b""
        for k in self.neigh.live(now_ms)[:_NEIGHBOURS]:
            e = self.neigh.table[k]
            rssi = min(max(int(e[1]), -128), 127)
            snr = min(max(int(e[2] * 4), -128), 127)
            nb += wire.be32(k) + bytes((rssi & 0xFF, snr & 0xFF))
        dropped = 0
        for v in self.drops.values():
            dropped += v
        heap = _UNKNOWN32 if self.heap_free_bytes is None else self.heap_free_bytes
        return bytes((_VERSION, len(name))) + name \
            + wire.be32((now_ms - self.started_ms) // 1000) \
            + _be16(self.battery_mv or 0) + wire.be32(heap) \
            + _be16(self.airtime_per_mille(now_ms)) \
            + _be16(self.duty.headroom_per_mille(now_ms)) \
            + bytes((min(len(self.jobs), 255), min(len(self.held), 255))) \
            + _be16(self.files.used_bytes() // 1024) \
            + _be16((self.next_status_ms - now_ms) // 1000) \
            + wire.be32(c["rx"]) + wire.be32(c["tx"]) + wire.be32(c["relayed"]) \
            + wire.be32(c["duplicates"]) + wire.be32(dropped) \
            + wire.be32(self.drops.get("tag", 0)) + bytes((len(nb) // 6,)) + nb

    def airtime_per_mille(self, now_ms):
        # our time on air over the last hour (or since start, if sooner)
        span_ms = now_ms - self.started_ms
        if span_ms > self.duty.window_ms:
            span_ms = self.duty.window_ms
        return min(1000, self.duty.used_us(now_ms) // max(1, span_ms))


def _be16(v):
    return wire.be32(min(max(v, 0), 0xFFFF))[2:]
