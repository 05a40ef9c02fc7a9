# The node: pollen's protocol state machine, sans-IO.
#
#   node = Node(settings, storage, rng)
#   node.start(now_ms)                          # loads held messages
#   node.on_frame(data, rssi_dbm, snr_db, now_ms)   # a frame from the radio
#   node.channel_busy(until_ms, now_ms)         # the radio sensed a transmission
#   node.send(dest, text, now_ms) -> msg_id     # dest = wire.BROADCAST for a post
#   actions = node.poll(now_ms)                 # run timers, collect actions
#   node.next_wake_ms                           # call poll again by then
#
# Actions are tuples: ("tx", frame) transmit now; ("received", info) a message
# for the app; ("delivered", info) our unicast was acknowledged; ("expired",
# info) a held message ran out of lifetime; ("fetch_progress" | "fetched" |
# "fetch_failed", info) a file fetch (node.fetch, see sharing.py) moved on;
# ("telemetry", info) another node's status frame (telemetry.py).
# The caller owns radio, clock, storage and randomness; nothing here blocks
# or raises on input from the air.
from pollen._compat import const, unload
from pollen import wire
from pollen.wire import Frame
from pollen.crypto import NetworkKey
from pollen.airtime import preset_time_on_air_us
from pollen.region import DutyCycle, REGIONS
from pollen.tables import Seen, Neighbours, Routes, Replay
from pollen import held as heldrec
from pollen.posts import RecentPosts
from pollen.jobs import Job
from pollen.flooding import Flooding
from pollen.custody import Custody
from pollen.sharing import Sharing
from pollen.telemetry import Telemetry
from pollen.ids import Values
from pollen.congestion import Congestion

# the numbers of wire.py and jobs.py used here, as private copies (_compat.publish)
_MAX_HOPS = const(7)
_BROADCAST = const(0xFFFFFFFF)
_BEACON = const(1)
_POST = const(2)
_MSG = const(3)
_ACK = const(4)
_CATALOG = const(5)
_PART = const(8)
_STATUS = const(9)
_IDENT = const(10)
_F_WANT_ACK = const(0x80)
_F_STORED = const(0x40)
_F_FRESH = const(0x40)
_J_ONCE = const(0)
_J_FLOOD = const(1)
_J_ROUTED = const(2)
_J_STORED = const(3)
_MAX_JOBS = const(24)

# What Node is made of (docs/architecture.md). node.py keeps the state every
# part shares and the frame dispatch; four mixins, one file each, share its
# self. What each reads and calls of the rest (kept as mixins, not parts
# with their own self: on a 128K heap each part object and accessor costs
# heap the node does not have; see docs/architecture.md):
#   Flooding (flooding.py): relaying floods and routed copies, overheard copies
#     reads  s, slot_ms, low, key, jobs, neigh, routes, acked, counters,
#            started_ms, storage
#     calls  _add_job, _rand, _drop, _weak, _next_hop (node.py);
#            _maybe_carry, _unacknowledged (custody.py)
#   Custody (custody.py): messages held for others and our own, retries,
#   store-and-forward
#     reads  s, slot_ms, low, key, held, jobs, neigh, routes, acked, cong,
#            counters, out, storage
#     calls  _add_job, _rand, _next_hop, _ack_timeout_ms (node.py)
#   Sharing (sharing.py): the shared commons: files, fetching, serving,
#   catalog gossip
#     reads  s, slot_ms, id, low, key, dwell_us, jobs, neigh, counters, out,
#            storage
#     calls  _add_job, _rand, _drop, _new_id, _airtime_us, channel_busy (node.py)
#   Telemetry (telemetry.py): status frames, ours and others'
#     reads  s, slot_ms, id, low, key, jobs, neigh, routes, seen, held, files,
#            duty, counters, drops, out, started_ms, battery_mv,
#            heap_free_bytes
#     calls  _add_job, _rand, _drop, _new_id, _airtime_us (node.py);
#            _relay_flood (flooding.py)
# What Node calls of them: Flooding's _overheard, _relay_flood,
# _forward_routed, _retried, _covered, _watch_done, _window_ms; Custody's
# _held_timers, _destination_reachable, _offer_via, _evict_held, _attempt,
# _persist; Sharing's _init_sharing, _on_file_frame, _file_timers, _file_wake,
# _hold_windows; Telemetry's _init_telemetry, _on_status, _status_credit,
# _telemetry_timer.

_BEACON_NEIGHBOURS = const(32)  # most neighbours a beacon lists
_ID_BLOCK = const(256)          # ids reserved in storage at a time: beacons, files, status
_MSG_ID_BLOCK = const(32)       # and for messages: a restart jumps at most this far, so a
# message its origin holds across a restart stays inside the receivers' replay windows
# (tables.Replay: 64 ids) if the origin sends fewer than about 32 new ones before it
_ID_RECORD = const("ids")
_BEACON_JOB = const(0)          # the job key of our beacon (message keys are never 0)
_STATUS_JOB = const(4)   # our status frame's (telemetry.py)
_CATALOG_JOB = const(3)  # our catalog frame's (sharing.py)
_STORED_EXTRA = const(4)  # transmissions a relay may add for a held copy (custody._MAX_OFFERS)
_REACKS = const(3)       # acks sent again for one message a copy of which comes again


class Node(Flooding, Custody, Sharing, Telemetry):
    def __init__(self, settings, storage, rng):
        if not isinstance(settings, Values):
            from pollen.settings import plain  # not kept: the app frees it after start
            settings = plain(settings)
        s = settings
        self.s = s
        self.id = s.node_id
        self.low = s.node_id & 0xFF
        self.storage = storage
        self.rng = rng
        self.key = NetworkKey(s.network_key)
        region = REGIONS[s.region]
        self.duty = DutyCycle(region[1])
        self.dwell_us = region[3] * 1000
        self.preset = s.preset
        self.seen = Seen(s.seen_capacity)
        self.acked = Seen(64)
        self.neigh = Neighbours(s.neighbour_capacity, s.neighbour_expiry_ms)
        self.routes = Routes(s.route_capacity, s.route_expiry_ms)
        self.jobs = {}
        self.held = {}
        self.posts = RecentPosts(s.repair_window_ms)
        self.cong = Congestion()  # channel utilisation; traffic classes 0..2
        self.out = []
        self.busy_until_ms = 0     # our own transmission ends
        self.channel_until_ms = 0  # someone else's transmission ends
        self.backoff_until_ms = 0  # listen-before-talk: not before then
        self.next_offer_all_ms = 0
        self.beaconed = False      # a beacon has gone out since start
        self.beacon_calm = 0       # 1: no new neighbour since the last beacon
        self.next_beacon_ms = 0
        self.next_wake_ms = 0
        self.started_ms = 0
        self.ids = [0, 0, 0, 0]  # next id and block end: messages, then other frames (_new_id)
        # slot: one frame of typical size on air plus turnaround; contention
        # windows are counted in slots so relays in different slots do not overlap
        self.slot_ms = preset_time_on_air_us(64, self.preset) // 1000 + 8
        self.counters = {"rx": 0, "tx": 0, "relayed": 0, "duplicates": 0,
                         "cancelled": 0, "retries": 0, "delivered": 0,
                         "originated": 0, "held": 0, "expired": 0, "deferred": 0,
                         "repaired": 0, "offered": 0, "released": 0,
                         "queue_full": 0, "internal": 0, "chunks_sent": 0,
                         "chunks_stored": 0, "wants": 0, "catalogs": 0,
                         "telemetry_skipped": 0}
        self.drops = {}
        self.last_internal = None
        self._init_sharing()
        self._init_telemetry()
        # each origin's window of accepted message ids (read from storage at
        # the first use): what the app had, across restarts too
        self.replay = Replay(storage, s.replay_origins)
        # our key pair, others' keys and the pair keys of private messages
        # (identity.py), if the config gives us an identity
        self.ident = None
        if s.identity_key:
            from pollen.identity import Identity
            self.ident = Identity(storage, s.node_id, s.identity_key)
        self.battery_mv = None       # the app sets these two where it can
        self.heap_free_bytes = None  # measure them, for status frames

    # ---- inputs -------------------------------------------------------------

    def start(self, now_ms):
        self.started_ms = now_ms
        self.next_beacon_ms = now_ms + self._rand(2000)
        names = self.storage.names()  # listed once, for everything kept there
        from pollen.restart import load_held, start_sharing  # code run once: restart.py
        load_held(self, names, now_ms)
        # message ids count up from a block reserved in storage, so an id (and
        # with it the cipher's nonce) is never used twice, across restarts too
        rec = self.storage.get(_ID_RECORD) or b""
        # (a record of one counter, as before there were two: both go on from it)
        c = self.ids
        c[0] = (wire.u32(rec, 0) if len(rec) in (4, 8) else self.rng.getrandbits(32)) & 0x7FFFFFFF
        # (the other counter far from it in the low 30 bits: ids of the two
        # with those bits alike fold alike in the seen table, tables._fold)
        c[2] = wire.u32(rec, 4) & 0x7FFFFFFF if len(rec) == 8 else (c[0] + 0x20000000) & 0x7FFFFFFF
        self._reserve_ids()
        start_sharing(self, names, now_ms)
        if self.ident:
            from pollen.identity_work import load
            load(self.ident, self, names, now_ms)
        self._init_telemetry(now_ms)
        unload("pollen.restart")  # its code leaves the heap

    def send(self, dest, text, now_ms, hop_limit=None):
        # Accept a message from the app (sending.py: code a node runs when
        # its user sends, loaded then and dropped after). Raises ValueError
        # on misuse (too long, bad destination); once this returns, the
        # message is persisted.
        from pollen.sending import send
        try:
            return send(self, dest, text, now_ms, hop_limit)
        finally:
            unload("pollen.sending")

    def on_frame(self, data, rssi_dbm, snr_db, now_ms):
        self.counters["rx"] += 1
        try:
            try:
                if self.fetches:
                    self._hold_windows(self._airtime_us(len(data)) // 1000)
                if data:
                    self._status_credit(now_ms, data)
                f, reason = wire.unpack(data, self.key)
            except MemoryError:
                # no heap to check it (decryption builds the plaintext): this
                # frame is lost, counted; the node goes on with the next
                self._drop("memory")
                return
            if f is None:
                self._drop(reason)
                return
            if f.origin == self.id and f.hops == 0:
                self._drop("loop")  # our own frame echoed back by a misbehaving radio
                return
            if not f.origin & 0xFF or f.origin == _BROADCAST or not f.dest & 0xFF:
                # no node has such an id (00000000, ffffffff, or a last byte
                # of 00: Settings refuse them), and a message key from one could
                # name one of our own jobs (their keys are small numbers)
                self._drop("reserved")
                return
            try:
                self._handle(f, data, rssi_dbm, snr_db, now_ms)
            except Exception as e:  # an authenticated but nonsensical frame must not stop us
                self._internal("%s: %s" % (type(e).__name__, e))
        except MemoryError:
            # no heap even to count what went wrong (a drop reason seen
            # for the first time, an error's text): the frame is lost all
            # the same, and this must not escape to the radio task (nor go
            # through _internal: that is what may have failed)
            self.counters["internal"] += 1
            self.last_internal = "MemoryError in on_frame"

    def _internal(self, what):
        # an exception the core caught: counted, and the last one kept for
        # status (what to fix). Allocates nothing: called on a full heap
        self.counters["internal"] += 1
        self.last_internal = what

    def channel_busy(self, until_ms, now_ms):
        # The radio sensed another transmission (channel activity detection)
        # lasting until until_ms: listen before talk.
        if until_ms > self.channel_until_ms:
            self.channel_until_ms = until_ms
        self.cong.record(now_ms, until_ms)

    # ---- outputs ------------------------------------------------------------

    def poll(self, now_ms):
        try:
            wake = 0
            try:
                self._timers(now_ms)
            except MemoryError:
                # a timer that needs heap (a retry's frame read back, a
                # beacon built) must not keep what is queued from going:
                # sending is what frees the heap (a job leaves the queue).
                # The timer runs again a slot later
                self._internal("MemoryError in poll")
                wake = now_ms + self.slot_ms
            if now_ms < self.channel_until_ms:
                # back off: nothing goes until a random slot after the channel frees
                if self.backoff_until_ms < self.channel_until_ms:
                    self.backoff_until_ms = self.channel_until_ms + self._rand(self.slot_ms * 2)
            elif now_ms >= self.busy_until_ms and now_ms >= self.backoff_until_ms:
                self._transmit_due(now_ms)
            self._plan_wake(now_ms)
            if self.next_wake_ms < wake:
                self.next_wake_ms = wake
        except Exception as e:
            # out of heap, or a bug: counted, said in status (what it was,
            # if there is heap to say it), and the node goes on (what failed
            # runs again a slot later)
            self.next_wake_ms = now_ms + self.slot_ms
            self._internal("MemoryError in poll")
            if not isinstance(e, MemoryError):
                try:
                    self.last_internal = "%s: %s" % (type(e).__name__, e)
                except MemoryError:
                    pass
        out = self.out
        self.out = []
        return out

    def status(self, now_ms):
        # a snapshot of the node's state (docs/console.md, status fields):
        # hosts' (the simulator, tests), in node_report.py
        from pollen.node_report import status
        return status(self, now_ms)

    def status_items(self, now_ms):
        # the same, as (field, value) pairs one at a time. Who it is and its
        # counters always; the rest comes from node_report.py, code for the
        # console and hosts loaded when asked for. When a full heap has no
        # room for that code, the status says so ("partial") and ends there
        yield "id", "%08x" % self.id
        yield "name", self.s.name
        yield "uptime_s", (now_ms - self.started_ms) // 1000
        yield "counters", self.counters
        yield "dropped", self.drops
        try:
            from pollen.node_report import status_items
        except MemoryError:
            yield "partial", True
            return
        yield from status_items(self, now_ms)

    # ---- frame handling -----------------------------------------------------

    def _handle(self, f, data, rssi_dbm, snr_db, now_ms):
        if f.ftype == _BEACON and not self.replay.heard(f.origin, f.msg_id):
            self._drop("replay")  # not newer than its last: recorded and sent again
            return
        via = self._learn(f, rssi_dbm, snr_db, now_ms)
        if _CATALOG <= f.ftype <= _PART:
            self._on_file_frame(f, via, now_ms)  # the shared commons: sharing.py
            return
        key = f.key()
        if f.ftype == _BEACON:
            self._on_beacon(f, now_ms)
            return
        if f.dest == self.id and (f.ftype == _MSG or f.ftype == _ACK):
            # ours: a channel one's inner tag is the network key's; a node
            # with an identity takes only private ones, which its pair key
            # opens (any member could forge a channel one's origin)
            if not (self.ident.opened(self, f, data, rssi_dbm, snr_db, now_ms) if self.ident
                    else wire.inner_ok(data, self.key)):
                self._drop("private")
                return
        job = self.jobs.get(key)
        if job is not None:
            self._overheard(job, f)
        known = key in self.seen
        if not known and _POST <= f.ftype <= _ACK:
            # out of the seen table (a restart, much traffic since): its
            # origin's window tells a message accepted before, or older
            # than any it keeps (tables.Replay). A replay, or a late copy
            st = self.replay.state(f.origin, f.msg_id)  # 1 accepted, 2 older
            if st:
                self._drop("replay")
                if st == 2:
                    return
                self.seen.add(key)
                known = True
        if known:
            if f.ftype == _MSG and f.dest == self.id:
                # seen, but perhaps not handed to the app (handling the first
                # copy failed on the way: a full heap): then it is now. Acked
                # when handed, and again when a copy says our ack was lost: an
                # end-to-end retry (F_STORED), or a copy handed to us by name
                # (its sender's hop retry: it heard no ack; a lost last-hop
                # ack otherwise costs a whole end-to-end retry). Never before
                # the app has it (the sender then lets it go)
                # (a few times at most: a replayed copy must not make us
                # transmit an ack each time; charged to the message)
                handed = self._deliver(f, "msg", key, rssi_dbm, snr_db)
                if f.flags & _F_WANT_ACK and (handed or (f.flags & _F_STORED or f.next_hop == self.low)
                                             and self.replay.state(f.origin, f.msg_id) == 1
                                             and self.seen.spent(key, 1) <= _REACKS):
                    self._send_ack(f, via, snr_db, now_ms)
                return
            if f.ftype == _POST and f.origin != self.id:
                self._deliver(f, "post", key, rssi_dbm, snr_db)  # the same for a post
                return
            self.counters["duplicates"] += 1
            if f.ftype == _MSG and f.flags & _F_STORED:
                self._retried(f, data, now_ms)
            return
        self.seen.add(key)
        if f.ftype == _ACK or f.ftype == _MSG and f.dest != self.id:
            self.replay.add(f.origin, f.msg_id)  # (what the app gets: when handed)
        if f.ftype == _ACK:
            self._on_ack(f, now_ms)
        if f.ftype == _IDENT:
            # a node's key: pinned, answered if it asks us (identity.py), and
            # flooded on like a post
            if self.ident:
                from pollen.identity_work import heard
                if not heard(self.ident, self, f, now_ms):
                    return
            if f.dest == self.id:
                return
            if f.hops < f.hop_limit:
                self._relay_flood(f, data, snr_db, now_ms)
            return
        if f.dest == self.id:
            if f.ftype == _MSG:
                self._deliver(f, "msg", key, rssi_dbm, snr_db)
                if f.flags & _F_WANT_ACK:
                    self._send_ack(f, via, snr_db, now_ms)
            return
        if f.ftype == _STATUS:
            self._on_status(f, data, rssi_dbm, snr_db, now_ms)
            return
        if f.dest == _BROADCAST:
            if f.ftype == _POST:
                self._deliver(f, "post", key, rssi_dbm, snr_db)
                if f.hops < f.hop_limit:
                    # within the hop limit our neighbours may be owed a repair
                    self.posts.add(key, wire.relayed(data, f.hops + 1, 0, self.low, self.key),
                                   now_ms)
                    self._relay_flood(f, data, snr_db, now_ms)
            return
        # a unicast for someone else
        if f.hops >= f.hop_limit:
            return
        if f.next_hop == 0:
            if self.neigh.is_live(f.dest, now_ms):
                self._forward_routed(f, data, now_ms, snr_db)  # we can hand it over directly
            else:
                self._relay_flood(f, data, snr_db, now_ms)
        elif f.next_hop == self.low:
            self._forward_routed(f, data, now_ms)

    def _learn(self, f, rssi_dbm, snr_db, now_ms):
        # Who transmitted this copy, and what it tells us about routes.
        if f.hops == 0:
            via = f.origin
            e = self.neigh.table.get(via)
            # back after missing more than two beacons (switched off, out of
            # range): as good as new for store-and-forward
            back = e is not None and now_ms - e[3] > self.s.beacon_interval_ms * 5
            # or it says it has just started (it may have been off for a moment)
            fresh = f.ftype == _BEACON and f.flags & _F_FRESH
            if self.neigh.heard(via, rssi_dbm, snr_db, now_ms) or back or fresh:
                self._neighbour_appeared(via, now_ms)
                self.beacon_calm = 0  # the neighbourhood changed: beacon at the base rate
            else:
                self._heard_directly(via, now_ms)
        else:
            via = self.neigh.by_low_byte(f.relayer, now_ms)
            if via is not None:
                self.neigh.heard(via, rssi_dbm, snr_db, now_ms)
        # routes come from the first copy of a message, or a later one that
        # came a shorter way; other later copies took longer ways or are our
        # own forward overheard from the next hop (a route pointing back)
        # A relayer not in our neighbour table (full, in a dense mesh) is
        # still a next hop: frames name next hops by their low byte anyway
        nh = f.relayer if via is None else via
        if nh and f.origin != self.id and (
                f.key() not in self.seen or f.hops + 1 < (self.routes.hops(f.origin) or 0)):
            if self.routes.learn(f.origin, nh, f.hops + 1, now_ms):
                # it is alive and we know a way: what waits for it can go
                self._destination_reachable(f.origin, now_ms, True)
        return via

    def _on_beacon(self, f, now_ms):
        # payload: name length, name, neighbour count, low bytes of the nodes
        # it hears, then 2-byte tags of the posts it has (see posts.py)
        p = f.payload
        if not p or p[0] > 16 or p[0] + 2 > len(p) or p[p[0] + 1] > _BEACON_NEIGHBOURS \
                or p[0] + 2 + p[p[0] + 1] > len(p):
            self._drop("field")  # (a name of 16 bytes at most, 32 neighbours at most)
            return
        e = self.neigh.table.get(f.origin)
        if e is None:
            return
        n = p[0]
        try:
            e[0] = p[1:1 + n].decode()
        except Exception:
            e[0] = ""
        k = p[1 + n]
        heard = bytes(p[2 + n:2 + n + k])
        if heard != e[5]:
            before = e[5]
            e[5] = heard
            self._offer_via(f.origin, before, now_ms)  # it may hear what we carry for
        for it in self.posts.missing_from(p[2 + n + k:], f.origin, now_ms):
            if it[0] not in self.jobs:
                # it missed a post we have: send it again, unless another
                # neighbour of it does so first. One repair per beacon heard.
                it[3] += 1
                self.counters["repaired"] += 1
                self._add_job(Job(it[0], _J_STORED, it[1], now_ms + self.slot_ms
                                  + self._rand(self.slot_ms * 4), 1, _BROADCAST, 1))
                break

    def _neighbour_appeared(self, node_id, now_ms):
        # A link came up (a node new to us, or back after expiring): what we
        # hold for that node goes to it, and what we hold for any other
        # destination may have a way through it now (a healed partition, a
        # data mule arriving). In a dense mesh neighbours come and go from a
        # full table all the time: the latter at most once a beacon interval.
        self._destination_reachable(node_id, now_ms)
        if now_ms >= self.next_offer_all_ms:
            self.next_offer_all_ms = now_ms + self.s.beacon_interval_ms
            self._destination_reachable(None, now_ms, via=node_id)

    def _on_ack(self, f, now_ms):
        if len(f.payload) != 4:
            self._drop("field")
            return
        acked = (f.dest << 32) | wire.u32(f.payload, 0)
        self.acked.add(acked)
        job = self.jobs.get(acked)
        if job is not None:
            del self.jobs[acked]
        h = self.held.pop(acked, None)
        if h is not None:
            self.storage.delete(heldrec.record_name(acked))
            if h.own:
                self.counters["delivered"] += 1
                self.out.append(("delivered", {"id": acked & 0xFFFFFFFF,
                                               "to": "%08x" % h.dest,
                                               "hops": f.hops + 1}))

    def _deliver(self, f, kind, key, rssi_dbm, snr_db):
        # Hand f to the app unless it had it lately (before a restart too):
        # True if handed now. It is recorded as the app's only once handed,
        # so a failure on the way leaves it to the next copy, not lost
        if self.replay.state(f.origin, f.msg_id):
            self.counters["duplicates"] += 1
            return False
        try:
            text = f.payload.decode()
        except Exception:
            self._drop("text")
            self.replay.add(f.origin, f.msg_id)  # (not flooded again either)
            return False
        self.out.append(("received", {"kind": kind, "from": "%08x" % f.origin,
                                      "to": "%08x" % f.dest, "id": f.msg_id,
                                      "text": text, "hops": f.hops,
                                      "private": kind == "msg" and self.ident is not None,
                                      "rssi_dbm": rssi_dbm, "snr_db": snr_db}))
        self.replay.add(f.origin, f.msg_id)
        self.replay.flush()
        return True

    def _send_ack(self, f, via, snr_db, now_ms):
        # an ack may come back a longer way than the message went: full hop
        # limit. It goes back to the node we heard the message from (by its
        # low byte if it is not in our neighbour table)
        if via is None:
            via = f.relayer or None
        a = Frame(_ACK, 0, _MAX_HOPS, 0, self.id, f.origin, self._new_id(0),
                  (via or 0) & 0xFF, self.low, wire.be32(f.msg_id))
        if via is not None and f.hops > 0:
            self.routes.learn(f.origin, via, f.hops + 1, now_ms)
        data = wire.pack(a, self.key, self.ident and self.ident.key(f.origin))
        self.seen.add(a.key())
        kind = _J_FLOOD
        if a.next_hop:
            # straight back to the origin: once, or twice over a weak link
            # (nothing can tell us it arrived; a lost ack costs a retry)
            kind = _J_ONCE if via == f.origin and not self._weak(snr_db) else _J_ROUTED
        self._add_job(Job(a.key(), kind, data, now_ms + self._rand(self.slot_ms // 2),
                          0, f.origin, 2))

    # ---- relaying -----------------------------------------------------------

    def _weak(self, snr_db):
        # a link within 6 dB of what the spreading factor can demodulate
        # (SX126x/SX127x: -7.5 dB at SF7, 2.5 dB lower per step) is weak
        return snr_db < 16 - 2.5 * self.preset[0]

    def _next_hop(self, dest, now_ms):
        if self.neigh.is_live(dest, now_ms):
            return dest
        return self.routes.next_hop(dest, now_ms)

    # ---- timers -------------------------------------------------------------

    def _timers(self, now_ms):
        if now_ms >= self.next_beacon_ms:
            self._beacon(now_ms)
        self._held_timers(now_ms)
        self._file_timers(now_ms)
        self._telemetry_timer(now_ms)
        if self.ident:
            # the identity's work (identity_work.py) when it is due; its code
            # leaves the heap once there is none
            if self.ident.wanted:
                self.ident.step()  # a slice of X25519 a turn
            if self.ident.ready is not None or now_ms >= self.ident.next_wake_ms:
                from pollen.identity_work import poll
                poll(self.ident, self, now_ms)
            unload("pollen.identity_work")
        for job in list(self.jobs.values()):
            if job.watch_ms is not None and now_ms >= job.watch_ms:
                self._watch_done(job, now_ms)

    def _beacon(self, now_ms):
        # Trickle-style: while the neighbourhood stays the same, every other
        # beacon is left out (the interval doubles once); on a busy channel
        # beacons come less often too (they are needed to find neighbours,
        # and the traffic itself shows who is there). A new neighbour puts
        # it back to the base rate.
        lv = self.cong.level(now_ms) + self.beacon_calm
        interval = self.s.beacon_interval_ms << (lv if lv < 2 else 2)
        self.beacon_calm = 1
        self.next_beacon_ms = now_ms + interval - interval // 10 + self._rand(interval // 5)
        name = self.s.name.encode()[:16]
        heard = bytes(n & 0xFF for n in self.neigh.live(now_ms)[:_BEACON_NEIGHBOURS])
        flags = 0 if self.beaconed else _F_FRESH
        self.replay.flush()  # (with the windows of frames relayed since the last)
        f = Frame(_BEACON, flags, 0, 0, self.id, _BROADCAST, self._new_id(1), 0, self.low,
                  bytes((len(name),)) + name + bytes((len(heard),)) + heard
                  + self.posts.summary(now_ms))
        # one beacon job at most: a newer beacon replaces one still waiting
        self._add_job(Job(_BEACON_JOB, _J_ONCE, wire.pack(f, self.key), now_ms, 0))

    def _transmit_due(self, now_ms):
        # the most valuable class first (acks, first sends and our own hop
        # retries before other retries before gossip), then the earliest due
        best = None
        for job in self.jobs.values():
            if job.due_ms is not None and job.due_ms <= now_ms:
                c = self._traffic_class(job)
                o = c - 1 if c else 0
                if best is None or o < order or o == order and job.due_ms < best.due_ms:
                    best = job
                    cls = c
                    order = o
        if best is None:
            return
        if best.kind == _J_FLOOD and best.hops > 0 and self._covered(best, now_ms):
            del self.jobs[best.key]  # every neighbour we know of has it already
            self.counters["cancelled"] += 1
            return
        relay = best.hops > 0 or best.kind == _J_STORED
        # a held copy handed on later (store-and-forward, post repair) has a
        # few more, counted by custody.py and posts.py
        if relay and self.seen.spent(best.key) >= self.s.tx_budget \
                + (_STORED_EXTRA if best.kind == _J_STORED else 0):
            del self.jobs[best.key]  # this node has spent its share on this message
            self._drop("over_budget")
            return
        if cls and best.key != _STATUS_JOB and self.cong.sheds(cls, now_ms):
            self._drop("shed")
            h = self.held.get(best.key)
            if h is not None and h.own and best.hops == 0:
                # our own retry waits for a quieter moment (the attempt is
                # not lost: its ack timeout runs from when it goes)
                best.due_ms = now_ms + self._window_ms() + self._rand(self._window_ms() * 2)
                if h.retry_ms is not None and h.retry_ms < best.due_ms:
                    h.retry_ms = best.due_ms + self._ack_timeout_ms(self.routes.hops(h.dest) or 3)
                return
            del self.jobs[best.key]  # the channel is busy: less valuable traffic waits
            return
        air_us = self._airtime_us(len(best.frame))
        at = self.duty.earliest_ms(now_ms, air_us)
        if at < 0:
            del self.jobs[best.key]
            self._drop("dwell")
            return
        if at > now_ms and (best.key == _BEACON_JOB or best.key == _STATUS_JOB):
            del self.jobs[best.key]  # no budget for a beacon: messages go first
            self.counters["deferred"] += 1
            if best.key == _STATUS_JOB:  # charged when queued (telemetry.py): not spent
                self.tele_budget.saved_us += air_us
            return
        if at <= now_ms and best.key != _STATUS_JOB and best.frame[0] & 0x0F == _STATUS \
                and (self._status_credit(now_ms) < air_us
                     or self.tele_budget.take(air_us, now_ms)):
            del self.jobs[best.key]  # a relay: telemetry has used its share of airtime
            self.counters["telemetry_skipped"] += 1
            return
        if at > now_ms:
            # deferred by the duty-cycle budget; budget frees on minute
            # boundaries, so jitter or nodes sharing a clock all go at once
            best.due_ms = at + self._rand(self.slot_ms * 4)
            self.counters["deferred"] += 1
            return
        air_ms = air_us // 1000 + 1
        if best.hops and best.copies and best.kind != _J_STORED \
                and best.frame[0] & 0x0F != _ACK \
                and self.cong.unfair(best.key >> 32, air_ms, now_ms):
            # a relay for an origin over its fair share of our relay airtime
            # (congestion.py): one member's flood cannot take it all. Only
            # its first transmission is weighed (not a retry: copies 0; nor a
            # held copy handed on, a data mule's: class 2 and the message's
            # budget bound those)
            del self.jobs[best.key]
            self._drop("unfair")
            return
        self.duty.record(now_ms, air_us)
        self.busy_until_ms = now_ms + air_ms
        self.cong.record(now_ms, now_ms + air_ms)
        self._status_credit(now_ms, best.frame)
        if best.key > 0xFFFF:  # a message (job keys of our own are small)
            self.seen.spent(best.key, 1)
        if self.fetches:
            self._hold_windows(air_ms)
        self.counters["tx"] += 1
        if relay:
            self.counters["relayed"] += 1
        self.out.append(("tx", best.frame))
        if best.key == _BEACON_JOB:
            self.beaconed = True
        elif not best.hops and best.tries > self.s.post_retries \
                and best.frame[0] & 0x0F == _POST:
            # our own post (a POST at hop 0 is only ever ours) is on air for
            # the first time: its record has done its job (send())
            self.storage.delete(heldrec.record_name(best.key))
        best.tries -= 1
        best.due_ms = None
        if best.kind == _J_ONCE:
            del self.jobs[best.key]
            return
        best.onward = False
        if best.kind == _J_FLOOD:
            wait = self._window_ms() + air_ms * 2
        else:
            wait = self.slot_ms * 2 + air_ms * 3
        best.watch_ms = now_ms + air_ms + wait

    def _traffic_class(self, job):
        # what congestion sheds first (congestion.py): 3 gossip (relayed
        # status and adverts to all, catalog: not a key asked for); 2
        # retries and repair (a held copy, a copy sent again: F_STORED, a
        # relay's retry queued by _watch_done); 1 the hop
        # retries of our own message or ack, and the flood its last one
        # becomes (its first attempt still: shedding them at level 2 made
        # the end-to-end retry wait, 30 s p95 in town-100, and then flood
        # anyway); 0 the rest
        t = job.frame[0] & 0x0F
        if (t == _STATUS or t == _IDENT and job.dest == _BROADCAST) and job.hops \
                or job.key == _CATALOG_JOB:
            return 3
        if job.kind == _J_STORED or t == _MSG and job.frame[1] & _F_STORED \
                or not job.copies and (job.hops or t != _MSG and t != _ACK):
            return 2
        return 0 if job.copies else 1

    def _plan_wake(self, now_ms):
        t = self.next_beacon_ms
        # nothing is sent while our radio or the channel is busy, or in backoff
        hold = max(self.busy_until_ms, self.backoff_until_ms)
        for job in self.jobs.values():
            if job.due_ms is not None:
                d = job.due_ms if job.due_ms > hold else hold
            else:
                d = job.watch_ms
            if d is not None and d < t:
                t = d
        for h in self.held.values():
            if h.expires_ms < t:
                t = h.expires_ms
            # a retry is only due once the previous attempt has left the queue
            if h.retry_ms is not None and h.retry_ms < t and h.key not in self.jobs:
                t = h.retry_ms
        t = self._file_wake(t)
        if self.ident:
            t = min(t, now_ms if self.ident.wanted else self.ident.next_wake_ms)
        if self.s.telemetry_interval_ms and self.next_status_ms < t:
            t = self.next_status_ms
        if t < self.busy_until_ms:
            t = self.busy_until_ms
        self.next_wake_ms = max(t, now_ms)

    # ---- helpers ------------------------------------------------------------

    def _add_job(self, job):
        if job.key not in self.jobs and len(self.jobs) >= _MAX_JOBS:
            # full: drop the newest-due flood relay, or refuse this job
            victim = None
            for j in self.jobs.values():
                if j.kind == _J_FLOOD and j.hops > 0 and j.due_ms is not None:
                    if victim is None or j.due_ms > victim.due_ms:
                        victim = j
            self.counters["queue_full"] += 1
            if victim is None:
                return
            del self.jobs[victim.key]
        self.jobs[job.key] = job

    def _drop(self, reason):
        try:
            self.drops[reason] = self.drops.get(reason, 0) + 1
        except MemoryError:
            # a reason seen for the first time grows the table: on a full
            # heap the drop is counted as internal, and does not raise into
            # the handler that is dropping (the app's tasks drop "memory"
            # right after a MemoryError)
            self._internal("MemoryError")

    def _rand(self, n):
        return self.rng.getrandbits(16) % n if n > 0 else 0

    def _new_id(self, kind=1):
        # two counters (tables.Replay): kind 0 for messages (POST, MSG, ACK: the
        # top bit clear), 1 for the rest (BEACON, file frames, STATUS: set)
        c = self.ids
        j = kind * 2
        i = c[j]
        c[j] = (i + 1) & 0x7FFFFFFF
        if c[j] == c[j + 1]:
            self._reserve_ids()
        return i | kind << 31 if i else self._new_id(kind)

    def _reserve_ids(self):
        # persist the end of each counter's next block: one storage write
        # per block of ids (_MSG_ID_BLOCK for messages, _ID_BLOCK for the rest)
        c = self.ids
        for j in (1, 3):
            if c[j] == c[j - 1] or not c[j]:
                c[j] = (c[j - 1] + (_MSG_ID_BLOCK if j == 1 else _ID_BLOCK)) & 0x7FFFFFFF
        self.storage.put(_ID_RECORD, wire.be32(c[1]) + wire.be32(c[3]))

    def _airtime_us(self, frame_bytes):
        return preset_time_on_air_us(frame_bytes, self.preset)

    def _ack_timeout_ms(self, hops, routed=False):
        # there and back: a flooded hop waits half a contention window on
        # average, a routed one half a slot (and a hop retry sometimes)
        per_hop = self.slot_ms * 3 if routed else self._window_ms() // 2 + self.slot_ms
        return 2 * (hops + 1) * per_hop + self.slot_ms * 4
