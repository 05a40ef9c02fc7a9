# Store-and-forward, part of Node: messages held until their destination can
# be reached (our own unicasts awaiting an ack, and copies carried for
# others), persisted through the storage object (record format in held.py),
# retried end to end, and sent on when the destination is heard again.
from pollen._compat import const
from pollen import wire
from pollen import held as heldrec
from pollen.jobs import Job

# the numbers of wire.py and jobs.py used here, as private copies (_compat.publish)
_MSG = const(3)
_F_STORED = const(0x40)
_J_FLOOD = const(1)
_J_ROUTED = const(2)
_J_STORED = const(3)

_MAX_OFFERS = const(4)  # times a carried copy is sent on before it is let go
_OFFERS_PER_LINK = const(4)  # carried copies offered when a new neighbour appears
_AT_ONCE = const(4)     # own messages retried at the same time (each retry is a queued frame)
_START_GAP_SLOTS = const(8)  # after a restart, own messages are retried this many slots apart
_QUIET_MS = const(600000)  # past max_attempts: at most one attempt per message this often,
_QUIET_DEST_MS = const(120000)  # or this often when it is its destination that is heard


class Custody:
    def _held_frame(self, h):
        # the sealed frame of a held message: in the heap while it is new,
        # else read back from its record (None if the record is gone)
        if h.frame is not None:
            return h.frame
        name = heldrec.record_name(h.key)
        rec = heldrec.decode(name, self.storage.get(name) or b"", 0)
        return rec[4] if rec else None

    def _held_timers(self, now_ms):
        # held messages with a frame queued: a few at a time (_AT_ONCE), so
        # what a node holds does not all come into its heap at once
        busy = 0
        for h in self.held.values():
            if h.key in self.jobs and (h.own or h.custody):  # (not a relay's copy in flight)
                busy += 1
        for h in list(self.held.values()):
            if now_ms >= h.expires_ms:
                self._forget_held(h)
                self.jobs.pop(h.key, None)
                self.counters["expired"] += 1
                if h.own:
                    self.out.append(("expired", {"id": h.key & 0xFFFFFFFF,
                                                 "to": "%08x" % h.dest}))
            elif h.own and h.retry_ms is not None and now_ms >= h.retry_ms \
                    and h.key not in self.jobs:
                if h.attempts < self.s.max_attempts or h.bonus > 0:
                    if busy >= _AT_ONCE:
                        h.retry_ms = now_ms + self.slot_ms * _START_GAP_SLOTS
                        continue  # a few at a time: each queued retry holds a frame
                    if h.attempts >= self.s.max_attempts:
                        h.bonus -= 1
                    busy += 1
                    h.retry_ms = now_ms + self.slot_ms * _START_GAP_SLOTS  # if it fails (no heap)
                    self._attempt(h, now_ms)
                else:
                    h.retry_ms = None  # wait until the destination is heard of again
            elif not h.own and h.retry_ms is not None and now_ms >= h.retry_ms \
                    and h.key not in self.jobs:
                # a carried copy due to be handed on (_destination_reachable)
                if busy >= _AT_ONCE:
                    h.retry_ms = now_ms + self.slot_ms * _START_GAP_SLOTS
                    continue
                busy += 1
                h.retry_ms = None
                self._send_held(h, now_ms)

    def _destination_reachable(self, dest, now_ms, custody_only=False, via=None):
        # Store-and-forward: send what we hold for a destination that is back.
        # dest None (a link to neighbour `via` came up): our own messages get
        # one more attempt, and what we took custody of goes on where there
        # is evidence of a way: a route, or the newcomer's beacon naming the
        # destination among the nodes it hears (_offer_via). A copy is not
        # offered blindly to every node a mule meets on its way.
        offers = 0
        for h in list(self.held.values()):  # _send_held may let one go
            if dest is not None and h.dest != dest:
                continue
            if h.key in self.jobs:
                if dest is not None and h.custody:
                    # on its way now: handed on again once it has gone, if
                    # no ack came meanwhile (_held_timers)
                    h.retry_ms = now_ms + self._rand(self.slot_ms * 2)
                elif dest is not None and h.own:
                    h.bonus = 1  # one more attempt if this one fails
                continue
            if not h.own and (dest is None or custody_only) and not h.custody:
                continue  # a copy still in flight, not one we took custody of
            if dest is None and not h.own:
                if offers >= _OFFERS_PER_LINK or (  # (via itself is a next hop now)
                        self._next_hop(h.dest, now_ms) is None and not self._hears(via, h.dest)):
                    continue
                offers += 1
            if h.own:
                if h.attempts < self.s.max_attempts or h.bonus > 0:
                    # its retries still run, or one more is on its way; the
                    # destination heard of meanwhile: one more if they fail
                    if dest is not None:
                        h.bonus = 1
                    continue
                # the way may be open again: one more attempt, along the
                # route; as often as that happens while the message lives
                # (restarts do not use these up), but no more than once per
                # _QUIET_MS for a new neighbour, _QUIET_DEST_MS for the
                # destination heard of again (then it waits for its turn)
                wait = h.quiet_ms - now_ms - (0 if dest is None else _QUIET_MS - _QUIET_DEST_MS)
                if wait > 0 and dest is None:
                    continue
                h.triggered = True
                h.bonus = 1
                h.retry_ms = now_ms + (wait if wait > 0 else 0) + self._rand(self.slot_ms * 2)
                h.quiet_ms = h.retry_ms + _QUIET_MS
            elif dest is None:
                self._send_held(h, now_ms)
            else:
                # every copy for a destination that is back: a few at a
                # time (_held_timers), not all queued at once
                h.retry_ms = now_ms + self._rand(self.slot_ms * 2)

    def _heard_directly(self, node_id, now_ms):
        # A node we keep copies for is heard itself, whatever it sent (its
        # "fresh" beacon after a restart may have been lost): what we keep
        # for it, idle since it went unacknowledged, goes to it (each copy
        # _MAX_OFFERS times at most: a one-way link costs little)
        for h in self.held.values():
            if h.custody and h.dest == node_id and h.retry_ms is None and h.key not in self.jobs:
                h.retry_ms = now_ms + self._rand(self.slot_ms * 2)

    def _hears(self, neighbour, dest):
        # its last beacon named dest among the nodes it hears (by low byte)
        e = self.neigh.table.get(neighbour)
        return e is not None and (dest & 0xFF) in e[5]

    def _offer_via(self, neighbour, before, now_ms):
        # A neighbour's beacon names nodes it did not hear before: what we
        # carry for one of them, with no route of our own, goes to it for
        # the last hop (once per newly named node, not at every beacon)
        offers = 0
        for h in list(self.held.values()):
            if h.own or not h.custody or h.key in self.jobs or offers >= _OFFERS_PER_LINK \
                    or h.dest & 0xFF in before or not self._hears(neighbour, h.dest) \
                    or self._next_hop(h.dest, now_ms) is not None:
                continue
            offers += 1
            self._send_held(h, now_ms, neighbour)

    def _maybe_carry(self, f, copy, now_ms):
        # Unicast we relay without knowing a way to its destination: remember
        # it until we see it acknowledged, so that if the destination is away
        # (another village, switched off) we can hand it over when it comes
        # back. With a route, the origin's own retries are what recovers it.
        if f.ftype != _MSG or f.key() in self.held or f.key() in self.acked \
                or self._next_hop(f.dest, now_ms) is not None:
            return
        if len(self.held) >= self.s.held_capacity and not self._evict_held():
            return
        h = heldrec.Held(f.key(), f.dest, copy, now_ms + self.s.lifetime_ms, False)
        self.held[h.key] = h
        self.counters["held"] += 1
        # persisted only when the relay's watch ends without an ack (see _watch_done)

    def _evict_held(self):
        victim = None
        for h in self.held.values():
            if not h.own and (victim is None or h.expires_ms < victim.expires_ms):
                victim = h
        if victim is None:
            return False
        self._forget_held(victim)
        return True

    def _forget_held(self, h):
        self.held.pop(h.key, None)
        self.storage.delete(heldrec.record_name(h.key))

    def _attempt(self, h, now_ms):
        # One end-to-end attempt for our own unicast: along the route while we
        # know one (learned from the destination's own floods, or from the ack
        # of an earlier message), flooded when we do not, and on the last
        # attempt (as Meshtastic's NextHopRouter does): the flood finds a new
        # way and its ack teaches it to every node on it. Retries wait
        # longer each time, and longer on a busy channel.
        h.attempts += 1
        nh = None
        if h.attempts < self.s.max_attempts or h.triggered:
            nh = self._next_hop(h.dest, now_ms)
        else:
            self.routes.forget(h.dest)  # the route did not deliver: flood this time
        if h.attempts > 1:
            self.counters["retries"] += 1
        h.triggered = False
        data = frame = self._held_frame(h)
        if frame is None:  # its record is gone (a damaged store): nothing to send
            self._forget_held(h)
            return
        if h.attempts > 1:
            data = wire.with_flags(data, _F_STORED, self.key)
        # the ack comes back from as far as the destination is known to be
        # (a neighbour: one hop, whatever the route table says)
        hops = 1 if nh == h.dest else self.routes.hops(h.dest) or self.s.hop_limit
        if nh is not None:
            data = wire.relayed(data, 0, nh & 0xFF, self.low, self.key)
            self._add_job(Job(h.key, _J_ROUTED, data, now_ms, 0, h.dest,
                              1 + self.s.relay_retries))
        else:
            self._add_job(Job(h.key, _J_FLOOD, data, now_ms + self._rand(self.slot_ms),
                              0, h.dest, 1))
        n = h.attempts - 1 if h.attempts < 4 else 3
        wait = self._ack_timeout_ms(hops, nh is not None) << n
        lv = self.cong.level(now_ms)
        if lv >= 3:
            wait *= 2
        h.retry_ms = now_ms + wait + self._rand(wait // 4 + 1)
        self._persist(h, now_ms, frame)

    def _send_held(self, h, now_ms, nh=None):
        # a copy carried for someone else is offered a few times at most: an
        # ack that went by out of our hearing must not cost airtime for a day
        h.attempts += 1
        if h.attempts > _MAX_OFFERS:
            self._forget_held(h)
            self.counters["released"] += 1
            return
        self.counters["offered"] += 1
        nh = self._next_hop(h.dest, now_ms) or nh
        frame = self._held_frame(h)
        f, _ = wire.unpack(frame or b"", self.key)
        if f is None:
            self._forget_held(h)
            return
        hops = f.hops if f.hops < f.hop_limit else f.hop_limit - 1
        data = wire.relayed(frame, hops, (nh or 0) & 0xFF, self.low, self.key)
        data = wire.with_flags(data, _F_STORED, self.key)
        # a second try if nobody is heard taking it on (the link just came up:
        # the first may meet the newcomer's own frames)
        self._add_job(Job(h.key, _J_STORED, data,
                          now_ms + self.slot_ms + self._rand(self.slot_ms * 4), hops, h.dest, 2))

    def _unacknowledged(self, job, now_ms):
        h = self.held.get(job.key)
        if h is None and job.frame[14] and job.hops > 0 and job.frame[0] & 0x0F == _MSG \
                and job.key not in self.acked \
                and (len(self.held) < self.s.held_capacity or self._evict_held()):
            # we sent it along our route (header byte 14: a next hop) and it
            # was not heard taken on: the way may be cut or the destination
            # away, so keep it for when it (or a way to it) is heard again
            h = heldrec.Held(job.key, job.dest, job.frame, now_ms + self.s.lifetime_ms, False)
            self.held[h.key] = h
            self.counters["held"] += 1
        if h is not None and not h.own and job.key not in self.acked:
            h.custody = True
            # custody: keep it for when the destination returns
            self._persist(h, now_ms, self._held_frame(h))

    def _persist(self, h, now_ms, frame):
        # the record holds the frame from now on: the heap does not
        self.storage.put(heldrec.record_name(h.key), heldrec.encode(h, now_ms, frame))
        h.frame = None
