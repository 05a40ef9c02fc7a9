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
#   ready they are sealed and go into custody like any other (sending.seal).
# What the node does with them (adverts, pins, deriving pair keys, the
# messages that wait) is identity_work.py: loaded when there is such
# work, and let go of after, so a node's heap holds only this part.
import hashlib
from pollen._compat import const, unload
from pollen.crypto import NetworkKey
from pollen.wire import be32, inner_ok, _nonce

# the numbers of wire.py and crypto.py used here, as private copies (_compat.publish)
_HEADER_BYTES = const(16)
_MSG = const(3)
_TAG_BYTES = const(8)

_CACHE = const(4)  # pair keys kept in RAM
_WANTED = const(8)  # peers whose pair keys wait to be derived


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


class Identity:
    def __init__(self, storage, node_id, key):
        # key: our secret, then our public key (Settings.identity_key)
        self.storage = storage
        self.id = node_id
        self.secret = key[:32]
        self.public = key[32:]
        self.next_wake_ms = 0  # when identity_work.poll is due next
        self.pins = 0   # how many are stored: counted at start
        self.pairs = {}    # peer id -> its pair's NetworkKey: the last used
        self.wanted = []   # peers whose pair key is to be derived, first first
        self.ladder = None  # the x25519.Ladder of wanted[0], while it runs
        # private messages waiting for their destination's key: [id, dest,
        # hop limit, expiry, next ask, gap between asks]
        self.waiting = []
        self.unopened = None  # the last private copy for us whose pair key was not ready
        self.next_advert_ms = 0
        self.adverts = 0  # sent since start
        self.ready = None  # the peer whose pair key step() has just made
        self.asked = {}  # peer -> when it may be asked for its key again

    def pinned(self, peer):
        # peer's pinned record (its key, then the pair secret), or None
        rec = self.storage.get("k%08x" % peer)
        return rec if rec and len(rec) in (32, 64) else None

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
            return self.keep(peer, rec[32:])
        if peer not in self.wanted and len(self.wanted) < _WANTED:
            self.wanted.append(peer)
        if copy is not None and peer in self.wanted:
            self.unopened = copy
        return None

    def opened(self, node, f, data, rssi_dbm, snr_db, now_ms):
        # a MSG or ACK for us (data: as on air): True if private, opened with
        # its pair's key (f.payload is then its plaintext). A copy that comes
        # while that key is derived is kept and opened then; one from a node
        # whose key we lack has its key asked for (identity_work.py)
        if inner_ok(data, node.key):
            return False  # a channel one: refused (its origin could be forged)
        cipher = self.key(f.origin, (data, rssi_dbm, snr_db))
        if cipher is None:
            if not self.pinned(f.origin):
                from pollen.identity_work import ask
                ask(self, node, f.origin, now_ms)
            return False
        if not inner_ok(data, cipher):
            return False
        if f.ftype == _MSG:
            n = len(data)
            f.payload = cipher.ctr(_nonce(data), memoryview(data)[_HEADER_BYTES:n - _TAG_BYTES])
        return True

    def keep(self, peer, secret):
        # peer's pair key made from its pair secret, kept among the last used
        if len(self.pairs) >= _CACHE:
            del self.pairs[next(iter(self.pairs))]
        k = self.pairs[peer] = NetworkKey(secret)
        return k

    def step(self):
        # a slice of X25519 for the pair key being derived (wanted[0]): a
        # slice a turn of the node's event loop, identity_work.py not loaded
        # meanwhile. When the key is ready, its peer is self.ready
        from pollen.x25519 import Ladder
        peer = self.wanted[0]
        rec = self.pinned(peer)
        if rec is None:  # (let go of meanwhile)
            self.wanted.pop(0)
            self.ladder = None
            return
        if self.ladder is None:
            self.ladder = Ladder(self.secret, rec[:32])
            return
        if not self.ladder.step():
            return
        shared = self.ladder.result()
        self.ladder = None
        self.wanted.pop(0)
        if not self.wanted:
            unload("pollen.x25519")  # its code leaves the heap till the next
        if shared == bytes(32):
            # a key of low order (RFC 7748 §6.1): no secret shared. Its pin goes
            self.storage.delete("k%08x" % peer)
            self.pins -= 1
            return
        a, b = (self.id, peer) if self.id < peer else (peer, self.id)
        secret = hashlib.sha256(b"pollen v2 pair" + shared + be32(a) + be32(b)).digest()
        self.storage.put("k%08x" % peer, rec[:32] + secret)
        self.keep(peer, secret)
        self.ready = peer
