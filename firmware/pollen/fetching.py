# A fetch's timer, part of Sharing (sharing.py): what to ask which source
# for next, back-off for silent sources, giving up. Its own module, imported
# when the node has a fetch running (Sharing._file_timers) and kept after:
# a node that fetches nothing, as most do most of the time, does not have
# this code in its heap. `self` is the Node.
from pollen._compat import const
from pollen.files import cid_str

# the numbers of jobs.py and sharing.py used here, as private copies
# (_compat.publish)
_MAX_JOBS = const(24)
_WANT_JOB = const(2)
_FIRST_PARTS = const(8)
_MAX_BACKOFF = const(4)
_MAX_STRIKES = const(8)


def fetch_tick(self, fe, now_ms):
    if now_ms < fe.next_ms:
        return
    for src, w in list(fe.windows.items()):
        if now_ms >= w[1]:
            del fe.windows[src]  # what did not come may be asked for again
            if not w[2]:
                # nothing came: ask it again later and later (a partition,
                # a node gone), never forget it (it may be the only way)
                st = fe.strikes.get(src)
                n = st[0] + 1 if st else 1
                if st is None and len(fe.strikes) >= _MAX_STRIKES:
                    # sources come and go: forget the one whose back-off ends first
                    del fe.strikes[min(fe.strikes, key=lambda k: fe.strikes[k][1])]
                wait = self._answer_ms(4, w[4]) << (n if n < _MAX_BACKOFF else _MAX_BACKOFF)
                fe.strikes[src] = [n, now_ms + wait]
    if self.files.complete(fe.cid):
        # complete another way (shared here meanwhile, or a power cut
        # before the fetch record went): nothing is left to ask for
        self._fetch_complete(fe, now_ms)
        return
    parts = fe.cid not in self.files.manifests
    if not fe.own and not fe.windows and not fe.owed and not fe.owed_parts:
        self._end_fetch(fe, now_ms, None)  # a relay fetch with nothing left to do
        return
    if now_ms - fe.progress_ms > self.s.fetch_patience_ms:
        if fe.queries and parts and not fe.parts:
            self._end_fetch(fe, now_ms, "no node within reach has content id %s (asked for %d s)"
                            % (cid_str(fe.cid), (now_ms - fe.started_ms) // 1000))
        else:
            self._end_fetch(fe, now_ms, "no progress for %d s"
                            % (self.s.fetch_patience_ms // 1000))
        return
    if _WANT_JOB in self.jobs or len(self.jobs) >= _MAX_JOBS:
        return  # the job queue wakes us when it moves
    fe.next_ms = self._fetch_deadline(fe, now_ms)
    wanted = self._wanted(fe, parts)
    if not wanted:
        return
    # a neighbour we pass it to is no way to it, unless it holds it whole,
    # and one that sent us something false is asked no more. For a file
    # the user asked for, the false one is tried when no other way
    # answers (a frame can be forged in its name), and one we pass it to
    # when it is the only way there is
    known = self.catalog.sources(fe.cid, now_ms)
    ways = [x for x in known if x[1] == 0 or x[0] not in fe.askers]
    sources = [x for x in ways if x[0] not in fe.bad]
    if fe.own:
        for x in sources:
            st = fe.strikes.get(x[0])
            if not st or now_ms >= st[1]:
                break  # one answers, or may
        else:
            sources = ways or known
    best = None
    for src, hops in sources:
        st = fe.strikes.get(src)
        if st and now_ms < st[1]:
            continue  # silent lately: its back-off runs (a gone source ends up here)
        if best is None:
            best = hops
        elif hops > best or hops > 0:
            # several sources at once only among neighbours holding it:
            # two relay chains side by side would collide with each other
            break
        if src in fe.windows:
            continue
        take = [i for i in wanted[:self.s.fetch_window] if i - wanted[0] < 256]
        self._want(fe.cid, src & 0xFF, take, parts, now_ms)
        fe.windows[src] = [set(take), now_ms + self._answer_ms(len(take), hops),
                           False, parts, hops]
        fe.next_ms = now_ms  # another source may take the next window
        return
    if sources or fe.windows:
        return  # waiting for an answer, or for a silent source's back-off
    if not fe.own:
        self._end_fetch(fe, now_ms, None)  # no way left for the neighbours who asked
        return
    # nobody we know of leads to it: ask our neighbours, at a steady pace,
    # until the catalog brings a way or our patience ends
    if now_ms < fe.query_ms:
        fe.next_ms = fe.query_ms
        return
    fe.queries += 1
    self._want(fe.cid, 0, list(range(_FIRST_PARTS)), True, now_ms)
    fe.query_ms = now_ms + max(self.s.beacon_interval_ms // 4, self.slot_ms * 20)
    fe.next_ms = min(fe.query_ms, fe.progress_ms + self.s.fetch_patience_ms + 1)
