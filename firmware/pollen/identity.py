# A node's identity (docs/identity.md), a part Node holds when its config
# has an identity_key: its X25519 key pair, the public keys of others it
# has pinned, and the pair keys of private messages.
#
# - Pins: the first public key heard for a node id (in an IDENT frame) is
#   kept, one storage record each ("k" + 8 hex digits of the id: the key,
#   then the pair secret once derived). An id is the SHA-256 of its key
#   (node_id_from_public), so an advert for an id needs a key that hashes
#   to it, and a different key for a pinned id later is refused (the
#   caller counts it, the monitor alerts). At most `capacity` pins: a full
#   store lets go of one that never carried a private message.
# - Pair keys: X25519 of our secret and their key, hashed with both ids;
#   the pair's NetworkKey (crypto.py) encrypts and tags the private
#   messages and acks between the two (wire.pack/open). Derived once per
#   peer, in slices (x25519.Ladder: a slice a turn of the event loop, so
#   the radio is never stalled), stored with the pin, and the last few
#   kept in RAM.
# - Adverts (IDENT frames): our key and name, flooded a while after start
#   and then every advert_interval_ms; to one node when asking for its key
#   (_F_ASK) or answering its asking.
# - Private messages for a node whose key is not pinned yet wait (a "w"
#   record each: accepted), and its key is asked for; once the pair key is
#   ready they are sealed and go into custody like any other (Node._seal).
# The methods that act on the node take it as their first argument.
import hashlib
from pollen._compat import const, unload
from pollen import wire
from pollen.wire import be32, u32, Frame, IDENT, BROADCAST
from pollen.crypto import NetworkKey
from pollen.jobs import Job, J_FLOOD

_CACHE = const(4)  # pair keys kept in RAM
_WANTED = const(8)  # peers whose pair keys wait to be derived
_PINS = const(256)  # keys pinned at most (a storage record each)
_ADVERT_MS = const(43200000)  # our key is flooded every 12 hours
_F_ASK = const(0x40)  # on an IDENT: its destination is asked for its own


def _pin_name(peer):
    return "k%08x" % peer


def node_id_from_public(pub):
    # the node id a public key gives: the first of the SHA-256 digest's
    # eight big-endian 4-byte words that is a valid pollen id (not 0, not
    # ffffffff, last byte not 00); if none is (odds about 2**-64), the same
    # over SHA-256 of the digest, and so on
    if len(pub) != 32:
        raise ValueError("public key must be 32 bytes")
    h = hashlib.sha256(pub).digest()
    while True:
        for i in range(0, 32, 4):
            v = (h[i] << 24) | (h[i + 1] << 16) | (h[i + 2] << 8) | h[i + 3]
            if 0 < v < 0xFFFFFFFF and v & 0xFF:
                return v
        h = hashlib.sha256(h).digest()


def pair_secret(shared, a, b):
    # the 32 bytes a pair's NetworkKey is made from: both ids, lower first
    if a > b:
        a, b = b, a
    return hashlib.sha256(b"pollen v2 pair" + shared + be32(a) + be32(b)).digest()


class Identity:
    def __init__(self, storage, node_id, key):
        # key: our secret, then our public key (Settings.identity_key)
        self.storage = storage
        self.id = node_id
        self.secret = key[:32]
        self.public = key[32:]
        self.next_wake_ms = 0  # when poll() is due next
        self.pins = None   # how many are stored: counted at start (restart.py)
        self.pairs = {}    # peer id -> its pair's NetworkKey: the last used
        self.wanted = []   # peers whose pair key is to be derived, first first
        self.ladder = None  # the x25519.Ladder of wanted[0], while it runs
        # private messages waiting for their destination's key: [id, dest,
        # hop limit, expiry, next ask, gap between asks]
        self.waiting = []
        self.unopened = None  # the last private copy for us whose pair key was not ready
        self.next_advert_ms = 0

    def pinned(self, peer):
        # peer's pinned record (its key, then the pair secret), or None
        rec = self.storage.get(_pin_name(peer))
        return rec if rec and len(rec) in (32, 64) else None

    def pin(self, peer, pub):
        # an advert of peer's key: 1 pinned now, 0 pinned already, -1 refused
        # (another key is pinned for peer; or the store is full)
        rec = self.pinned(peer)
        if rec:
            return 0 if rec[:32] == pub else -1
        if self.pins >= _PINS and not self._let_go():
            return -1
        self.storage.put(_pin_name(peer), pub)
        self.pins += 1
        return 1

    def _let_go(self):
        # a full store: a pin that never carried a private message goes
        for name in self.storage.names():
            if name[:1] == "k" and len(name) == 9 and self.storage.stat(name) == 32:
                self.storage.delete(name)
                self.pins -= 1
                return True
        return False

    def key(self, peer, copy=None):
        # peer's pair key, or None: then it is derived (if its key is
        # pinned), and copy (a frame of peer's for us, with its rssi and snr)
        # is handled once it is
        k = self.pairs.get(peer)
        if k is not None:
            return k
        rec = self.pinned(peer)
        if rec is None:
            return None
        if len(rec) == 64:
            return self._keep(peer, rec[32:])
        if peer not in self.wanted and len(self.wanted) < _WANTED:
            self.wanted.append(peer)
        if copy is not None and peer in self.wanted:
            self.unopened = copy
        return None

    def _keep(self, peer, secret):
        if len(self.pairs) >= _CACHE:
            del self.pairs[next(iter(self.pairs))]
        k = self.pairs[peer] = NetworkKey(secret)
        return k

    def step(self):
        # a slice of the pair key being derived: the peer whose key is
        # ready now, or None
        from pollen.x25519 import Ladder
        peer = self.wanted[0]
        rec = self.pinned(peer)
        if rec is None:  # (let go of meanwhile)
            self.wanted.pop(0)
            self.ladder = None
            return None
        if self.ladder is None:
            self.ladder = Ladder(self.secret, rec[:32])
            return None
        if not self.ladder.step():
            return None
        shared = self.ladder.result()
        self.ladder = None
        self.wanted.pop(0)
        if not self.wanted:
            unload("pollen.x25519")  # its code leaves the heap till the next
        if shared == bytes(32):
            # a key of low order (RFC 7748 §6.1): no secret shared. Its pin goes
            self.storage.delete(_pin_name(peer))
            self.pins -= 1
            return None
        secret = pair_secret(shared, self.id, peer)
        self.storage.put(_pin_name(peer), rec[:32] + secret)
        self._keep(peer, secret)
        return peer

    # ---- what a node does with them ------------------------------------------

    def load(self, node, names, now_ms):
        # at start: the keys pinned (counted: at most _PINS), and the private
        # messages that waited for their destination's key ("w" + 8 hex
        # digits of the id: destination, hop limit, lifetime in s, text):
        # they wait on, their keys asked for again
        self.pins = len([n for n in names if n[:1] == "k" and len(n) == 9])
        for name in names:
            if name[:1] != "w" or len(name) != 9:
                continue
            rec = self.storage.get(name)
            try:
                msg_id = int(name[1:], 16)
            except ValueError:
                rec = None
            if not rec or len(rec) < 9:
                self.storage.delete(name)
                node._drop("store")
                continue
            self.waiting.append([msg_id, u32(rec, 0), rec[4] & 7, now_ms + u32(rec, 5) * 1000, 0, 0])

    def heard(self, node, f, now_ms):
        # an IDENT: True if it may go on (flooded); its key is pinned if its
        # id is the key's, and answered if it asks us
        p = f.payload
        if not 32 <= len(p) <= 48 or node_id_from_public(p[:32]) != f.origin:
            node._drop("field")  # no key, or a key that is not this id's
            return False
        r = self.pin(f.origin, p[:32])
        if r < 0:
            node._drop("pin")  # another key than the one pinned: refused (monitor alert)
            return False
        if r:
            self.key_known(node, f.origin, now_ms)
        if f.dest == node.id and f.flags & _F_ASK:
            self.advert(node, now_ms, f.origin)
        return True

    def advert(self, node, now_ms, dest=BROADCAST, ask=0):
        # our key and name, flooded: to everyone now and then, or to one node
        # (asking for its key, or answering its asking)
        f = Frame(IDENT, ask, node.s.hop_limit, 0, node.id, dest, node._new_id(), 0, node.low,
                  self.public + node.s.name.encode()[:16])
        node.seen.add(f.key())
        node._add_job(Job(f.key(), J_FLOOD, wire.pack(f, node.key),
                          now_ms + node._rand(node.slot_ms * 4), 0, dest, 1))

    def wait(self, node, dest, msg_id, limit, payload, now_ms):
        # a private message for a node whose pair key is not ready: stored
        # ("w" record: accepted), and its key asked for if not pinned
        node.storage.put("w%08x" % msg_id, be32(dest) + bytes((limit,)) + be32(
            node.s.lifetime_ms // 1000) + payload)
        self.waiting.append([msg_id, dest, limit, now_ms + node.s.lifetime_ms, 0, 0])
        self.key_known(node, dest, now_ms)

    def key_known(self, node, peer, now_ms):
        # what waits for peer: sealed now if its pair key is ready; else its
        # pair key is derived if its key is pinned; else its key is asked
        # for, again 2 minutes later, the gap doubling to an hour
        if not [w for w in self.waiting if w[1] == peer]:
            return
        if self.key(peer) is not None:
            self.released(node, peer, now_ms)
            return
        pinned = self.pinned(peer)
        ask = False
        for w in self.waiting:
            if w[1] == peer and now_ms >= w[4]:
                w[5] = min(max(120000, w[5] * 2), 3600000)
                w[4] = now_ms + w[5]
                ask = not pinned
        if ask:
            self.advert(node, now_ms, peer, _F_ASK)

    def poll(self, node, now_ms):
        # the node's timers (Node._timers)
        if now_ms >= self.next_advert_ms:
            if self.next_advert_ms:
                self.advert(node, now_ms)
                self.next_advert_ms = now_ms + _ADVERT_MS
            else:  # (the first, a while after start: not all at once)
                self.next_advert_ms = now_ms + node._rand(node.s.beacon_interval_ms)
        if self.wanted:
            peer = self.step()  # one slice of X25519 a turn
            if peer is not None:
                self.released(node, peer, now_ms)
        for w in list(self.waiting):
            if now_ms >= w[3]:
                self.waiting.remove(w)
                node.storage.delete("w%08x" % w[0])
                node.counters["expired"] += 1
                node.out.append(("expired", {"id": w[0], "to": "%08x" % w[1]}))
            elif now_ms >= w[4] and w in self.waiting:
                self.key_known(node, w[1], now_ms)
        # due again: at once while a pair key is derived (a slice a turn of
        # the event loop), else at the next advert, ask or expiry
        t = now_ms if self.wanted else self.next_advert_ms
        for w in self.waiting:
            t = min(t, w[3], w[4])
        self.next_wake_ms = t


    def released(self, node, peer, now_ms):
        # peer's pair key is ready: what waited for it is sealed and sent,
        # and a copy from it that came meanwhile is opened
        u = self.unopened
        if u is not None and u32(u[0], 2) == peer:
            self.unopened = None
            f, _ = wire.unpack(u[0], node.key)
            if f is not None:
                node._handle(f, u[0], u[1], u[2], now_ms)
        for w in list(self.waiting):
            if w[1] == peer:
                rec = node.storage.get("w%08x" % w[0])
                self.waiting.remove(w)
                if rec:
                    node._seal(peer, w[0], w[2], rec[9:], self.key(peer), now_ms)
                node.storage.delete("w%08x" % w[0])
