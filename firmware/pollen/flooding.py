# Relaying, part of Node: managed flooding with contention delays that favour
# distant receivers, pruning by the two-hop view from beacons, hop-level
# implicit acknowledgement of routed copies and fallback to flooding.
from pollen import wire
from pollen.jobs import Job
from pollen import held as heldrec
from pollen._compat import const

# the numbers of wire.py and jobs.py used here, as private copies (_compat.publish)
_BROADCAST = const(0xFFFFFFFF)
_POST = const(2)
_ACK = const(4)
_J_ONCE = const(0)
_J_FLOOD = const(1)
_J_ROUTED = const(2)
_J_STORED = const(3)


class Flooding:
    def _overheard(self, job, f):
        # Another copy of a message we have a job for.
        if f.relayer not in job.heard_from:
            job.heard_from.append(f.relayer)
        if job.due_ms is not None:
            job.copies += 1
            if job.kind == _J_FLOOD and job.copies >= self._cancel_threshold():
                del self.jobs[job.key]
                self.counters["cancelled"] += 1
                if not job.hops and job.frame[0] & 0x0F == _POST:
                    # our own post, sent before a restart: on air already
                    self.storage.delete(heldrec.record_name(job.key))
            elif job.kind == _J_STORED:
                del self.jobs[job.key]  # someone else is delivering it
                self.counters["cancelled"] += 1
            return
        if f.hops > job.hops:
            job.onward = True

    def _relay_flood(self, f, data, snr_db, now_ms):
        if f.dest != _BROADCAST:
            # a unicast flood goes no further than the destination needs: if
            # we know it is d hops away and the copy has fewer left, it cannot
            # arrive through us
            d = self.routes.hops(f.dest)
            if d is not None and d > f.hop_limit - f.hops:
                self._drop("out_of_scope")
                return
            # we know a way: hand it on along the route instead of flooding on
            # (the flood stops here; other relays may do the same)
            nh = self._next_hop(f.dest, now_ms)
            if nh is not None and nh & 0xFF != f.relayer:
                self._forward_routed(f, data, now_ms, snr_db)
                return
        copy = wire.relayed(data, f.hops + 1, 0, self.low, self.key)
        # a relayed unicast is sent again if nobody is heard taking it on; a
        # post is not: beacons' post summaries repair what a neighbour missed
        retries = 0 if f.dest == _BROADCAST else self.s.relay_retries
        job = Job(f.key(), _J_FLOOD, copy, now_ms + self._contention_ms(snr_db),
                  f.hops + 1, f.dest, 1 + retries)
        job.heard_from.append(f.relayer)  # the copy we got counts for coverage too
        self._add_job(job)
        self._maybe_carry(f, copy, now_ms)

    def _forward_routed(self, f, data, now_ms, snr_db=None):
        nh = self._next_hop(f.dest, now_ms)
        if nh is None:
            # named as next hop but no way on (the route expired or failed):
            # flood it from here, within the copy's hop limit
            self._relay_flood(f, data, 0, now_ms)
            return
        copy = wire.relayed(data, f.hops + 1, nh & 0xFF, self.low, self.key)
        # an ack handed to its destination is not taken further: nothing to
        # hear, so it goes once, or twice over a weak link (a lost ack costs
        # the origin a retry)
        kind = _J_ROUTED
        if f.ftype == _ACK and nh & 0xFF == f.dest & 0xFF:
            e = self.neigh.table.get(f.dest)
            if e is not None and not self._weak(e[2]):
                kind = _J_ONCE
        tries = 1 if kind == _J_ONCE else 1 + self.s.relay_retries
        due_ms = now_ms + self._rand(self.slot_ms // 2)
        if snr_db is not None:
            # a flooded copy we take on along our route: other relays of the
            # flood may do the same, so contend like a flood relay and stand
            # down on hearing one of them (else they collide)
            kind = _J_FLOOD
            due_ms = now_ms + self._contention_ms(snr_db)
        self._add_job(Job(f.key(), kind, copy, due_ms, f.hops + 1, f.dest, tries))
        self._maybe_carry(f, copy, now_ms)

    def _retried(self, f, data, now_ms):
        # A retry or stored copy (F_STORED) of a unicast we passed on before:
        # its origin has had no ack (even if we saw one go by, it may have
        # been lost after us), so pass it on again; the destination acks
        # duplicates. A routed copy is taken on by the node it names; a
        # flooded one only from nearer the origin than we are (hops only
        # grow), so relays never bounce it between them. What we spend on it
        # is charged to the message's budget (Node._transmit_due), however
        # often the copy is replayed.
        if f.key() in self.jobs or f.hops >= f.hop_limit:
            return
        if f.next_hop == self.low:
            self._forward_routed(f, data, now_ms)
            return
        if f.next_hop != 0:
            return
        d = self.routes.hops(f.origin)  # just learned from the shortest copy heard
        if d is not None and f.hops < d:
            self._relay_flood(f, data, 0, now_ms)

    def _covered(self, job, now_ms):
        # Would our copy reach anyone new? Every live neighbour of ours either
        # sent a copy itself or hears a node that did (two-hop view from
        # beacons). Only trusted once we have listened for a while: a fresh
        # table misses neighbours.
        if now_ms - self.started_ms < self.s.beacon_interval_ms * 3 // 2:
            return False
        theirs = [self.neigh.their_neighbours(t, now_ms) for t in job.heard_from]
        for n in self.neigh.live(now_ms):
            low = n & 0xFF
            if low in job.heard_from:
                continue
            for t in theirs:
                if low in t:
                    break
            else:
                return False
        return True

    def _watch_done(self, job, now_ms):
        # The time to hear our copy taken further has passed.
        done = job.onward or job.key in self.acked
        if job.kind == _J_FLOOD and not done and job.dest == _BROADCAST:
            done = self._covered(job, now_ms)
        if done or job.tries <= 0 or job.kind == _J_ONCE:
            del self.jobs[job.key]
            if not done:
                if job.kind == _J_ROUTED and job.frame[0] & 0x0F != _ACK:
                    # the next hop was not heard taking it on: the route is
                    # suspect. The origin's next attempt finds another way
                    # (no flood from the middle of the path: that is what
                    # made retries storms)
                    self.routes.forget(job.dest)
                self._unacknowledged(job, now_ms)
            return
        self.counters["retries"] += 1
        job.copies = 0  # a retry (Node._traffic_class)
        job.watch_ms = None
        if job.kind == _J_ROUTED and job.tries == 1 and job.frame[14] != job.dest & 0xFF \
                and (job.hops == 0 or job.frame[0] & 0x0F == _ACK):
            # our own message, or an ack, that the route did not carry on:
            # its last try floods from here (within its hop limit), where
            # relays that know a way take it on. At the origin this is what
            # Meshtastic's NextHopRouter does; for an ack it is cheaper than
            # the retry a lost ack causes. (Never for a relayed message: a
            # flood from the middle of every broken path made storms.)
            self.routes.forget(job.dest)
            job.kind = _J_FLOOD
            job.frame = wire.relayed(job.frame, job.hops, 0, self.low, self.key)
        # in whole slots across the window: two hidden nodes that collided
        # went at the same time, so their retries must not pick close times
        job.due_ms = now_ms + self.slot_ms // 2 + self._rand(self.s.contention_slots) * self.slot_ms

    def _window_ms(self):
        return self.s.contention_slots * self.slot_ms

    def _contention_ms(self, snr_db):
        # Distant receivers (low SNR) relay first: their copy covers the most
        # new ground. SNR -20..+10 dB maps to the first quarter..all of the window.
        n = self.s.contention_slots
        snr = int(min(max(snr_db, -20), 10))
        top = n // 4 + (n - n // 4) * (snr + 20) // 30
        return self.slot_ms // 2 + self._rand(max(1, top)) * self.slot_ms

    def _cancel_threshold(self):
        # Copies heard before a queued relay stands down. In a dense
        # neighbourhood two copies mean our neighbours almost surely have it
        # and more relays only collide; in a sparse one each relay may be the
        # only way forward (and the first copy's path is the route learned).
        if len(self.neigh.table) >= 4:
            return self.s.cancel_copies
        return self.s.cancel_copies + 1
