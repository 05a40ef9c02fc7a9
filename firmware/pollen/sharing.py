# The shared commons, part of Node: catalog gossip, and serving and fetching
# content-addressed files (files.py) between neighbours. Every file frame
# goes one hop (hop limit 0). A fetch travels hop by hop: a node asked for
# chunks it lacks fetches them itself from its own best source into its
# bounded cache and passes each on as it arrives, so popular files spread
# towards where they are asked for. Frames (payloads in file_wire.py):
#   CATALOG  files we hold or know of, with hops to the nearest holder:
#            gossip within a bounded share of airtime, and the answer to a query
#   WANT     a window of chunks (or manifest parts, flag F_PARTS) asked of the
#            neighbour named by next_hop; next_hop 0 is a query: "who has it?"
#   CHUNK    one chunk, broadcast: the asker and anyone else fetching it keep it
#   PART     one part of a manifest
# A node that overhears a WANT for someone else keeps quiet while the answer
# is on air (virtual carrier sense): its neighbour is receiving, and a
# transmission of ours would collide there.
from pollen import wire, files, file_wire
from pollen.wire import Frame
from pollen.jobs import Job
from pollen.airtime import AirtimeBudget
from pollen.files import FileError, cid_str
from pollen.held_files import HeldFiles
from pollen.catalog import Catalog
from pollen._compat import const, publish

# the numbers of catalog.py, wire.py, jobs.py and files.py used here, as
# private copies (_compat.publish)
_FAR_HOPS = const(7)
_MAX_FRAME_BYTES = const(255)
_BROADCAST = const(0xFFFFFFFF)
_CATALOG = const(5)
_WANT = const(6)
_CHUNK = const(7)
_PART = const(8)
_F_PARTS = const(0x40)
_J_ONCE = const(0)
_MAX_JOBS = const(24)
_CHUNK_BYTES = const(200)

_SERVE_JOB = const(1)     # job keys (message keys are never this small)
_WANT_JOB = const(2)
_CATALOG_JOB = const(3)
_MAX_FETCHES = const(4)    # files fetched at once (the user's and for neighbours)
_MAX_SERVING = const(8)   # files being sent at once
_MAX_QUEUED = const(128)  # parts and chunks of one file waiting to be sent
_FIRST_PARTS = const(8)   # manifest parts asked for before their count is known
_MAX_BACKOFF = const(4)   # a silent source is asked again after up to 2^4 answer times
_NAV_CHUNKS = const(16)   # most answer frames an overheard WANT keeps us quiet for
_MAX_ANSWER = const(64)   # most items one WANT gets (the biggest fetch_window)
_MAX_OWED = const(64)     # most chunks a fetch owes its askers
_MAX_ASKERS = const(8)    # askers a fetch remembers (they are not its sources)
_MAX_STRIKES = const(8)   # silent sources a fetch remembers backing off
_FRAME_EXTRA = const(24)  # header and tag around a payload
_CHUNK_HEAD = const(18)   # content id and index before a chunk's data
_FETCH_RECORD = const("q")        # record "q<cid hex>": a fetch the user asked for


class Fetch:
    # One file being fetched: for the user (own) or, on a node along the way,
    # for the neighbours that asked us for chunks we lack (into our cache).
    # The counts and flags below start as the class's: an instance gets its
    # own only when one changes, so a new fetch needs a smaller attribute
    # table (one block of a small, fragmented heap; 18 attributes took 368 B)
    nparts = 0         # how many manifest parts there are (0: not known yet)
    parts = None       # manifest parts still missing, a bitmap (32 bytes: at most
                       # 255 parts); None before the first (they go to storage: _on_part)
    part_from = 0      # the one neighbour they came from (0: several)
    owed_parts = False
    queries = 0
    reported = -1      # chunks held at the last progress report
    restarts = 0

    def __init__(self, cid, own, now_ms):
        self.cid = cid
        self.own = own
        self.started_ms = now_ms
        self.progress_ms = now_ms
        self.windows = {}       # source id -> [indices asked, deadline_ms, any came, parts?, hops]
        self.owed = set()       # chunks neighbours asked us for that we lack
        self.askers = set()     # neighbours we serve it to: never our sources for it
        self.bad = set()        # neighbours that sent parts or chunks of it failing their hash
        self.next_ms = now_ms   # when to look at it again
        self.query_ms = now_ms  # no "who has it?" before then
        self.strikes = {}       # source id -> [windows it left unanswered, not asked before ms]


class Sharing:
    def _init_sharing(self):
        s = self.s
        self.files = HeldFiles(self.storage, s.file_quota_bytes, s.max_file_bytes, False)
        self.catalog = Catalog(s.catalog_capacity, s.catalog_expiry_ms)
        self.fetches = {}
        self.serving = {}      # cid -> [manifest parts to send, chunks to send]
        self.bad_senders = {}  # neighbour id -> chunks/manifests it sent that failed verification
        self.cat_dirty = []    # cids to advertise first (new or nearer)
        self.cat_again = []    # ... and once more soon after (a lost frame costs a period)
        self.cat_cursor = 0
        self.file_chunk_bytes = self._fitting_chunk_bytes()
        # catalog frames and manifest parts fit the dwell time too
        self.file_payload_bytes = _CHUNK_HEAD + self.file_chunk_bytes
        # parts of the longest manifest we could take (bounds what a fetch gathers)
        n = files.max_manifest_bytes(s.max_file_bytes) // self.file_chunk_bytes + 1
        self.max_parts = n if n < 255 else 255
        self.chunk_air_ms = self._airtime_us(_FRAME_EXTRA + _CHUNK_HEAD
                                             + self.file_chunk_bytes) // 1000 + 1
        big = self._airtime_us(_MAX_FRAME_BYTES)
        # a node just started may say what it has once
        self.cat_budget = AirtimeBudget(s.catalog_share_per_mille * 1000, 4 * big, big)
        self.next_catalog_ms = 0

    def _fitting_chunk_bytes(self):
        # the biggest chunk whose frame fits the region's dwell time
        c = _CHUNK_BYTES
        while self.dwell_us and c > 16 and \
                self._airtime_us(_FRAME_EXTRA + _CHUNK_HEAD + c) > self.dwell_us:
            c -= 8
        return c

    # ---- the app's side ------------------------------------------------------

    def share_manifest(self, raw, now_ms):
        # Begin sharing a file of ours, chunks to follow (share_chunk): a board
        # never needs the whole file in RAM. Raises FileError naming the problem.
        # (A host with the whole file in RAM: file_author.share, which a node
        # never loads)
        from pollen.file_requests import share_manifest  # (file_requests.py)
        return share_manifest(self, raw, now_ms)

    def share_chunk(self, cid, index, data, now_ms):
        # One chunk of a file being shared; True once the file is complete.
        # (Here, not in file_requests.py: a host puts many chunks, and loading
        # that module for each needed heap a busy node did not always have)
        self.files.put_chunk(cid, index, data)
        if self.files.complete(cid):
            self._catalog_dirty(cid, now_ms)
            return True
        return False

    def fetch(self, cid, now_ms):
        # Fetch a file by content id; progress and the outcome come as actions
        # ("fetch_progress", "fetched", "fetch_failed"). Resumes a partial.
        from pollen.file_requests import fetch
        fetch(self, cid, now_ms)

    def catalog_entries(self, now_ms, search=None):
        # what this node holds and knows of, for the user (node_report.py)
        from pollen.node_report import catalog_entries
        return catalog_entries(self, now_ms, search)

    # ---- frames in -------------------------------------------------------------

    def _on_file_frame(self, f, via, now_ms):
        if f.hops or f.hop_limit or via is None:
            self._drop("field")  # file frames go one hop, never relayed
            return
        t = f.ftype
        if t == _CHUNK:
            self._on_chunk(f, via, now_ms)
        elif t == _WANT:
            self._on_want(f, via, now_ms)
        elif t == _PART:
            self._on_part(f, via, now_ms)
        else:
            self._on_catalog(f, via, now_ms)

    def _on_catalog(self, f, via, now_ms):
        entries = file_wire.unpack_catalog(f.payload)
        if entries is None:
            self._drop("field")
            return
        for cid, kib, hops, through, name in entries:
            if self.files.complete(cid) or through == self.low:
                continue  # we hold it, or its way goes through us (our own echo)
            if self.catalog.heard(cid, name, kib, hops, via, now_ms):
                self._catalog_dirty(cid, now_ms)
            fe = self.fetches.get(cid)
            if fe is not None:
                fe.next_ms = now_ms  # a way to it, perhaps a new one
                if fe.queries and cid not in self.files.manifests and not fe.parts:
                    fe.progress_ms = now_ms  # found after asking around: patience anew

    def _on_want(self, f, via, now_ms):
        p = file_wire.unpack_want(f.payload)
        if p is None:
            self._drop("field")
            return
        cid, idx = p
        parts = bool(f.flags & _F_PARTS)
        if f.next_hop == 0:
            # a query: say what we know of it (if anything) in a catalog frame
            if self.files.complete(cid) or self.catalog.distance(cid, now_ms) is not None:
                self._catalog_dirty(cid, now_ms)
            return
        if f.next_hop != self.low:
            # our neighbour `via` is about to receive: keep quiet meanwhile
            n = len(idx) if len(idx) < _NAV_CHUNKS else _NAV_CHUNKS
            self.channel_busy(now_ms + n * (self.chunk_air_ms + self.slot_ms // 2), now_ms)
            fe = self.fetches.get(cid)
            asked = self.neigh.by_low_byte(f.next_hop, now_ms)
            if fe is not None and asked is not None and asked not in fe.windows \
                    and parts == (cid not in self.files.manifests):
                # what it sends reaches us too: no need to ask for what we
                # want of it ourselves. Not our window: if no answer comes,
                # `asked` may never have heard it, so no back-off ("came" set)
                mine = self._wanted(fe, parts)
                take = set(i for i in idx if i in mine)
                if take:
                    n = len(idx) if len(idx) < _MAX_ANSWER else _MAX_ANSWER
                    fe.windows[asked] = [take, now_ms + self._answer_ms(n, 0), True, parts, 0]
            return
        idx = idx[:_MAX_ANSWER]  # one frame asks for one window at most
        m = self.files.manifests.get(cid)
        if parts:
            if m is not None:
                n = file_wire.part_count(m, self.file_chunk_bytes)  # (len(m): no read)
                for i in idx:
                    if i < n:
                        self._serve(cid, True, i)
                return
            fe = self._relay_fetch(cid, via, now_ms)
            if fe is not None:
                fe.owed_parts = True
            return
        lack = []
        for i in idx:
            if m is not None and self.files.has_chunk(cid, i):
                self._serve(cid, False, i)
            elif m is None or i < m.chunks:
                lack.append(i)
        if lack:
            fe = self._relay_fetch(cid, via, now_ms)
            if fe is not None:
                for i in lack:
                    if len(fe.owed) >= _MAX_OWED:
                        break  # the rest is asked for again when its window ends
                    fe.owed.add(i)

    def _on_part(self, f, via, now_ms):
        # A part of a manifest we fetch. The parts are gathered in the
        # manifest's own record, each written at its place (parts are cut
        # alike by every node of a network: file_wire.manifest_part), so a
        # long manifest (16.5 KB) is never whole in the heap. Until the file's
        # state record exists the record is not a held file: a restart
        # deletes it, and the fetch asks for the parts again.
        p = file_wire.unpack_manifest_part(f.payload)
        if p is None:
            self._drop("field")
            return
        cid, part, parts, data = p
        fe = self.fetches.get(cid)
        if fe is None or cid in self.files.manifests:
            return  # not one we are fetching, or we have its manifest already
        cb = self.file_chunk_bytes
        if parts > self.max_parts or len(data) > cb or part < parts - 1 and len(data) != cb \
                or not data:
            self._drop("manifest")  # no part of a manifest we could take
            return
        name = "f" + files.cid_hex(cid) + "m"
        if fe.nparts and parts != fe.nparts:
            # senders disagree on the count and we cannot tell who is wrong:
            # start again from this part, blaming nobody
            self._drop("manifest")
            fe.parts = None
            fe.nparts = 0
        if fe.parts is None:
            fe.part_from = via
            fe.parts = bytearray(32)
            for i in range(parts):
                fe.parts[i >> 3] |= 1 << (i & 7)
            self.storage.delete(name)  # what an earlier try left: it would lengthen the record
        elif via != fe.part_from:
            fe.part_from = 0
        if not fe.nparts:
            # now we know how many there are: nobody will send the rest we asked for
            for src, w in list(fe.windows.items()):
                if w[3]:
                    w[0] = set(i for i in w[0] if i < parts)
        fe.nparts = parts
        bit = 1 << (part & 7)
        if fe.parts[part >> 3] & bit:
            self.storage.write_at(name, part * cb, data)
            fe.parts[part >> 3] &= ~bit
        self._arrived(fe, True, part, now_ms)
        if max(fe.parts):
            return  # more to come
        part_from = fe.part_from
        fe.parts = None
        fe.nparts = 0
        try:
            m = files.load(self.storage, name, self.s.max_file_bytes, cb, cid)
            if m is None:
                # forged or mixed-up parts: their sender is to blame if there was one
                self.storage.delete(name)
                if part_from:
                    self._bad(part_from, "manifest", cid, now_ms)
                else:
                    self._drop("manifest")
                return
            if m.chunks * m.chunk_bytes > self.files.quota_bytes:
                raise FileError("file is %d bytes; the file store holds %d"
                                % (m.size_bytes, self.files.quota_bytes))
            self.files.begin(m, pinned=fe.own)
        except FileError as e:
            # too big for us, or a manifest with our hash that does not parse
            self.storage.delete(name)
            self._drop("file_size" if str(e)[:8] == "file is " else "manifest")
            self._end_fetch(fe, now_ms, str(e))
            return
        fe.windows = {}
        fe.next_ms = now_ms  # on to the chunks
        fe.owed = set(i for i in fe.owed if i < m.chunks)  # asked for before we knew
        if fe.owed_parts:
            fe.owed_parts = False
            for i in range(parts):
                self._serve(cid, True, i)
        self._report(fe, now_ms)

    def _on_chunk(self, f, via, now_ms):
        p = file_wire.unpack_chunk(f.payload)
        if p is None:
            self._drop("field")
            return
        cid, i, data = p
        fe = self.fetches.get(cid)
        if fe is None or cid not in self.files.manifests or self.files.has_chunk(cid, i):
            return  # not a file we are fetching, or a chunk we have
        try:
            self.files.put_chunk(cid, i, data)
        except FileError as e:
            e = str(e)
            if "match its hash" in e:
                self._bad(via, "chunk_hash", cid, now_ms)
            elif "SHA-256" in e:
                # every chunk matched its short hash, the whole file did not:
                # a forged chunk got through; start again from the manifest
                self._drop("file_hash")
                fe.restarts += 1
                if fe.restarts > 2:
                    self._end_fetch(fe, now_ms, e)
                else:
                    fe.windows = {}
                    fe.next_ms = now_ms
            else:
                self._drop("store_full")
                self._end_fetch(fe, now_ms, e)
            return
        self.counters["chunks_stored"] += 1
        if i in fe.owed:
            fe.owed.discard(i)
            self._serve(cid, False, i)
        if self.files.complete(cid):
            self._fetch_complete(fe, now_ms)
            return
        self._arrived(fe, False, i, now_ms)
        self._report(fe, now_ms)

    def _arrived(self, fe, parts, i, now_ms):
        fe.progress_ms = now_ms
        for src, w in list(fe.windows.items()):
            if w[3] == parts and i in w[0]:
                w[0].discard(i)
                w[2] = True
                fe.strikes.pop(src, None)  # it answers: no back-off
                if not w[0]:
                    del fe.windows[src]
                    fe.next_ms = now_ms  # window done: ask for the next one
                else:
                    # the answer is coming: give the rest of it time
                    w[1] = max(w[1], now_ms + self._answer_ms(2, w[4]))

    def _bad(self, via, reason, cid, now_ms):
        # verification failed: drop it, count its sender, and ask it no more
        self._drop(reason)
        if via in self.bad_senders or len(self.bad_senders) < 16:
            self.bad_senders[via] = self.bad_senders.get(via, 0) + 1
        fe = self.fetches.get(cid)
        if fe is not None and len(fe.bad) < _MAX_STRIKES:
            # passed over, but kept in the catalog: it may be the only way,
            # and the frame may have been forged in its name
            fe.bad.add(via)
        else:
            self.catalog.forget_source(cid, via)

    # ---- fetching ----------------------------------------------------------------

    def _relay_fetch(self, cid, via, now_ms):
        # A neighbour asked us for what we lack: fetch it for them, if we know a way.
        fe = self.fetches.get(cid)
        if fe is None:
            if not self.catalog.sources(cid, now_ms, (via,)):
                self._drop("unknown_cid")
                return None
            if len(self.fetches) >= _MAX_FETCHES:
                self.counters["queue_full"] += 1
                return None
            fe = Fetch(cid, False, now_ms)
            self.fetches[cid] = fe
        if len(fe.askers) < _MAX_ASKERS:
            fe.askers.add(via)
        if not fe.own:
            fe.progress_ms = now_ms
        fe.next_ms = now_ms
        return fe

    def _drop_relay_fetch(self):
        for cid, fe in self.fetches.items():
            if not fe.own:
                self._end_fetch(fe, 0, None)
                return True
        return False

    def _answer_ms(self, n, hops):
        # time for n answer frames from `hops` hops further on: relays pass
        # each frame on as it comes, so the hops add a few frame times each
        per = self.chunk_air_ms + self.slot_ms
        return (n + 2 + 3 * hops) * per + self.slot_ms * 4

    def _hold_windows(self, ms):
        # The channel was taken for ms (by us, or by a frame we heard): an
        # answer we wait for could not come meanwhile, so it gets that long more.
        for fe in self.fetches.values():
            for w in fe.windows.values():
                w[1] += ms
            fe.next_ms += ms

    def _fetch_deadline(self, fe, now_ms):
        t = now_ms + self.s.fetch_patience_ms
        for w in fe.windows.values():
            if w[1] < t:
                t = w[1]
        for st in fe.strikes.values():
            if now_ms < st[1] < t:
                t = st[1]
        return t

    def _wanted(self, fe, parts):
        asked = set()
        for w in fe.windows.values():
            if w[3] == parts:
                for i in w[0]:
                    asked.add(i)
        if parts:
            n = fe.nparts or _FIRST_PARTS
            left = fe.parts
            return [i for i in range(n) if i not in asked
                    and (left is None or left[i >> 3] & 1 << (i & 7))]
        m = self.files.manifests[fe.cid]
        cands = range(m.chunks) if fe.own else sorted(fe.owed)
        out = []
        for i in cands:
            if i not in asked and not self.files.has_chunk(fe.cid, i):
                out.append(i)
                if len(out) >= self.s.fetch_window:
                    break
        return out

    def _want(self, cid, next_hop, idx, parts, now_ms):
        data = self._file_frame(_WANT, file_wire.pack_want(cid, idx[0], idx), next_hop,
                                _F_PARTS if parts else 0)
        self.counters["wants"] += 1
        self._add_job(Job(_WANT_JOB, _J_ONCE, data, now_ms + self._rand(self.slot_ms // 2), 0))

    def _report(self, fe, now_ms):
        if not fe.own:
            return
        m = self.files.manifests.get(fe.cid)
        have = self.files.chunks_held(fe.cid)
        step = m.chunks // 20 + 1 if m is not None else 1
        if have - fe.reported >= step or fe.reported < 0:
            fe.reported = have
            self.out.append(("fetch_progress", {
                "cid": cid_str(fe.cid), "name": m.name if m else None,
                "have": have, "chunks": m.chunks if m else None,
                "size_bytes": m.size_bytes if m else None}))

    def _fetch_complete(self, fe, now_ms):
        self.fetches.pop(fe.cid, None)
        if fe.own:
            self.storage.delete(_FETCH_RECORD + files.cid_hex(fe.cid))
            self._fetched(fe.cid, fe.started_ms, now_ms)
        self._catalog_dirty(fe.cid, now_ms)  # we hold it now: say so

    def _fetched(self, cid, started_ms, now_ms):
        m = self.files.manifests[cid]
        self.out.append(("fetched", {"cid": cid_str(cid), "name": m.name,
                                     "size_bytes": m.size_bytes,
                                     "seconds": (now_ms - started_ms) / 1000,
                                     "verified": self.files.complete(cid)}))

    def _end_fetch(self, fe, now_ms, error):
        # give up (a partial stays: fetching it again resumes; manifest parts
        # gathered do not, they are asked for again)
        self.fetches.pop(fe.cid, None)
        if fe.parts is not None and fe.cid not in self.files.manifests:
            self.storage.delete("f" + files.cid_hex(fe.cid) + "m")
        if fe.own:
            self.storage.delete(_FETCH_RECORD + files.cid_hex(fe.cid))
            self.out.append(("fetch_failed", {"cid": cid_str(fe.cid), "error": error}))

    # ---- serving -----------------------------------------------------------------

    def _serve(self, cid, parts, i):
        e = self.serving.get(cid)
        if e is None:
            if len(self.serving) >= _MAX_SERVING:
                return
            e = [set(), set()]
            self.serving[cid] = e
        if len(e[0]) + len(e[1]) < _MAX_QUEUED:  # else its asker asks again
            e[0 if parts else 1].add(i)

    def _serve_next(self, now_ms):
        for cid in self.serving:
            break
        e = self.serving[cid]
        m = self.files.manifests.get(cid)
        data = None
        if m is not None and e[0]:
            i = min(e[0])
            e[0].discard(i)
            data = self._file_frame(_PART, file_wire.manifest_part(cid, m, i,
                                                                  self.file_chunk_bytes))
        elif m is not None and e[1]:
            i = min(e[1])
            e[1].discard(i)
            chunk = self.files.read_chunk(cid, i)
            if chunk is not None:  # evicted meanwhile: the asker asks elsewhere
                data = self._file_frame(_CHUNK, file_wire.pack_chunk(cid, i, chunk))
                self.counters["chunks_sent"] += 1
        if m is None or not e[0] and not e[1]:
            del self.serving[cid]
        if data is not None:
            self._add_job(Job(_SERVE_JOB, _J_ONCE, data, now_ms, 0))

    # ---- catalog gossip --------------------------------------------------------

    def _catalog_dirty(self, cid, now_ms):
        if cid not in self.cat_dirty:
            self.cat_dirty.append(cid)
            if len(self.cat_dirty) > 8:
                self.cat_dirty.pop(0)
        soon = now_ms + self.slot_ms + self._rand(self.slot_ms * 4)
        if soon < self.next_catalog_ms:
            self.next_catalog_ms = soon

    def _advertised(self, now_ms):
        # cid -> (size_bytes, hops, via, name) for everything we may tell of
        out = {}
        for cid in self.files.holdings():
            m = self.files.manifests[cid]
            out[cid] = (m.size_bytes, 0, 0, m.name)
        for cid, e in self.catalog.table.items():
            if cid not in out:
                src = self.catalog.sources(cid, now_ms)
                if src and src[0][1] + 1 < _FAR_HOPS:
                    out[cid] = (e[1] * 1024, src[0][1] + 1, src[0][0] & 0xFF, e[0])
        return out

    def _catalog_timer(self, now_ms):
        if now_ms < self.next_catalog_ms or _CATALOG_JOB in self.jobs \
                or not self.s.catalog_share_per_mille:
            return
        interval = self.s.catalog_interval_ms
        ads = self._advertised(now_ms)
        if not ads:
            self.cat_dirty = []
            self.cat_again = []
            self.next_catalog_ms = now_ms + interval
            return
        order = [c for c in self.cat_dirty if c in ads]
        order += [c for c in self.cat_again if c in ads and c not in order]
        rest = sorted(c for c in ads if c not in order)
        if rest:
            k = self.cat_cursor % len(rest)
            order += rest[k:] + rest[:k]
        payload, n = file_wire.pack_catalog([(c,) + ads[c] for c in order],
                                            self.file_payload_bytes)
        air_us = self._airtime_us(len(payload) + _FRAME_EXTRA)
        wait_ms = self.cat_budget.take(air_us, now_ms)
        if wait_ms:
            self.next_catalog_ms = now_ms + wait_ms
            return
        sent = order[:n]
        self.cat_again = [c for c in self.cat_again if c not in sent] + \
            [c for c in self.cat_dirty if c in sent]
        self.cat_dirty = [c for c in self.cat_dirty if c not in sent]
        self.cat_cursor += len([c for c in sent if c in rest])
        self.counters["catalogs"] += 1
        self._add_job(Job(_CATALOG_JOB, _J_ONCE, self._file_frame(_CATALOG, payload), now_ms, 0))
        if self.cat_dirty:
            self.next_catalog_ms = now_ms + self.slot_ms * 4 + self._rand(self.slot_ms * 4)
        elif self.cat_again:
            self.next_catalog_ms = now_ms + self.slot_ms * 8 + self._rand(self.slot_ms * 16)
        else:
            self.next_catalog_ms = now_ms + interval - interval // 10 + self._rand(interval // 5)

    # ---- timers ------------------------------------------------------------------

    def _file_timers(self, now_ms):
        self._catalog_timer(now_ms)
        if self.serving and _SERVE_JOB not in self.jobs and len(self.jobs) < _MAX_JOBS:
            self._serve_next(now_ms)
        if self.fetches:
            # (its own module: a node that fetches nothing, as most do most
            # of the time, does not have this code in its heap)
            from pollen.fetching import fetch_tick
            for fe in list(self.fetches.values()):
                fetch_tick(self, fe, now_ms)

    def _file_wake(self, t):
        # (called after this poll's timers and transmission; the caller holds
        # t back until our own transmission ends)
        if self.serving and _SERVE_JOB not in self.jobs and len(self.jobs) < _MAX_JOBS:
            t = 0  # the next chunk is queued as soon as the radio is free
        if self.next_catalog_ms < t and _CATALOG_JOB not in self.jobs \
                and self.s.catalog_share_per_mille:
            t = self.next_catalog_ms
        if _WANT_JOB not in self.jobs and len(self.jobs) < _MAX_JOBS:
            for fe in self.fetches.values():
                if fe.next_ms < t:
                    t = fe.next_ms
        return t

    def _file_frame(self, ftype, payload, next_hop=0, flags=0):
        f = Frame(ftype, flags, 0, 0, self.id, _BROADCAST, self._new_id(), next_hop,
                  self.low, payload)
        return wire.pack(f, self.key)


publish(globals())  # hosts: wire.MSG and the like (_compat.py)
