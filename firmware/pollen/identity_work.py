# What a node with an identity does with it (identity.py holds the keys):
# pins the keys it hears in IDENT frames, floods its own, asks a node for
# its key, derives pair keys in X25519 slices, and keeps the private
# messages that wait for a key. Loaded when there is such work (an IDENT
# heard, a slice due, a message waiting, the start) and let go of after
# (Node._timers), so its code is not in a node's heap while it idles.
from pollen._compat import const, unload
from pollen import wire
from pollen.wire import be32, u32, Frame
from pollen.jobs import Job
from pollen.identity import node_id_from_public

# the numbers of wire.py and jobs.py used here, as private copies (_compat.publish)
_BROADCAST = const(0xFFFFFFFF)
_IDENT = const(10)
_J_FLOOD = const(1)

_PINS = const(256)  # keys pinned at most (a storage record each)
_ADVERT_MS = const(43200000)  # our key is flooded every 12 hours
_F_ASK = const(0x40)  # on an IDENT: its destination is asked for its own


def _pin_name(peer):
    return "k%08x" % peer


def pin(ident, peer, pub):
    # an advert of peer's key: 1 pinned now, 0 pinned already, -1 refused
    # (another key is pinned for peer; or the store is full)
    rec = ident.pinned(peer)
    if rec:
        return 0 if rec[:32] == pub else -1
    if ident.pins >= _PINS and not _let_go(ident):
        return -1
    ident.storage.put(_pin_name(peer), pub)
    ident.pins += 1
    return 1


def _let_go(ident):
    # a full store: a pin that never carried a private message goes
    for name in ident.storage.names():
        if name[:1] == "k" and len(name) == 9 and ident.storage.stat(name) == 32:
            ident.storage.delete(name)
            ident.pins -= 1
            return True
    return False


def load(ident, node, names, now_ms):
    # at start: the keys pinned (counted: at most _PINS), and the private
    # messages that waited for their destination's key ("w" + 8 hex
    # digits of the id: destination, hop limit, lifetime in s, text):
    # they wait on, their keys asked for again
    ident.pins = len([n for n in names if n[:1] == "k" and len(n) == 9])
    for name in names:
        if name[:1] != "w" or len(name) != 9:
            continue
        rec = ident.storage.get(name)
        try:
            msg_id = int(name[1:], 16)
        except ValueError:
            rec = None
        if not rec or len(rec) < 9:
            ident.storage.delete(name)
            node._drop("store")
            continue
        ident.waiting.append([msg_id, u32(rec, 0), rec[4] & 7, now_ms + u32(rec, 5) * 1000, 0, 0])


def heard(ident, node, f, now_ms):
    # an IDENT: True if it may go on (flooded); its key is pinned if its
    # id is the key's, and answered if it asks us
    p = f.payload
    if not 32 <= len(p) <= 48 or node_id_from_public(p[:32]) != f.origin:
        node._drop("field")  # no key, or a key that is not this id's
        return False
    r = pin(ident, f.origin, p[:32])
    if r < 0:
        node._drop("pin")  # another key than the one pinned: refused (monitor alert)
        return False
    if r:
        key_known(ident, node, f.origin, now_ms)
    if f.dest == node.id:
        # its sender means to write to us: the pair key is derived now
        ident.key(f.origin)
        if f.flags & _F_ASK:
            advert(ident, node, now_ms, f.origin)
    return True


def advert(ident, node, now_ms, dest=_BROADCAST, ask=0):
    # our key and name, flooded: to everyone now and then, or to one node
    # (asking for its key, or answering its asking)
    f = Frame(_IDENT, ask, node.s.hop_limit, 0, node.id, dest, node._new_id(), 0, node.low,
              ident.public + node.s.name.encode()[:16])
    node.seen.add(f.key())
    node._add_job(Job(f.key(), _J_FLOOD, wire.pack(f, node.key),
                      now_ms + node._rand(node.slot_ms * 4), 0, dest, 1))


def wait(ident, node, dest, msg_id, limit, payload, now_ms):
    # a private message for a node whose pair key is not ready: stored
    # ("w" record: accepted), and its key asked for if not pinned
    node.storage.put("w%08x" % msg_id, be32(dest) + bytes((limit,)) + be32(
        node.s.lifetime_ms // 1000) + payload)
    ident.waiting.append([msg_id, dest, limit, now_ms + node.s.lifetime_ms, 0, 0])
    key_known(ident, node, dest, now_ms)


def key_known(ident, node, peer, now_ms):
    # what waits for peer: sealed now if its pair key is ready; else its
    # pair key is derived if its key is pinned; else its key is asked
    # for, again 30 s later, the gap doubling to an hour
    if not [w for w in ident.waiting if w[1] == peer]:
        return
    if ident.key(peer) is not None:
        released(ident, node, peer, now_ms)
        return
    pinned = ident.pinned(peer)
    ask = False
    for w in ident.waiting:
        if w[1] == peer and now_ms >= w[4]:
            w[5] = min(max(30000, w[5] * 2), 3600000)
            w[4] = now_ms + w[5]
            ask = not pinned
    if ask:
        advert(ident, node, now_ms, peer, _F_ASK)


def poll(ident, node, now_ms):
    # the node's timers (Node._timers)
    if now_ms >= ident.next_advert_ms:
        # the first a while after start (not all at once), the second four
        # beacon intervals later (a flood can miss a node), then twice a day
        if ident.next_advert_ms:
            advert(ident, node, now_ms)
            ident.adverts += 1
        ident.next_advert_ms = now_ms + (_ADVERT_MS if ident.adverts > 1 else node._rand(
            node.s.beacon_interval_ms) + node.s.beacon_interval_ms * 4 * ident.adverts)
    if ident.ready is not None:
        peer, ident.ready = ident.ready, None
        released(ident, node, peer, now_ms)
    for w in list(ident.waiting):
        if now_ms >= w[3]:
            ident.waiting.remove(w)
            node.storage.delete("w%08x" % w[0])
            node.counters["expired"] += 1
            node.out.append(("expired", {"id": w[0], "to": "%08x" % w[1]}))
        elif now_ms >= w[4] and w in ident.waiting:
            key_known(ident, node, w[1], now_ms)
    # due again at the next advert, ask or expiry (the slices of a pair
    # key are identity.py's, each turn: Node._timers)
    t = ident.next_advert_ms
    for w in ident.waiting:
        t = min(t, w[3], w[4])
    ident.next_wake_ms = t


def released(ident, node, peer, now_ms):
    # peer's pair key is ready: what waited for it is sealed and sent (our
    # key sent to peer first: it may have missed our adverts, and could not
    # open them), and a copy from it that came meanwhile is opened
    u = ident.unopened
    if u is not None and u32(u[0], 2) == peer:
        ident.unopened = None
        f, _ = wire.unpack(u[0], node.key)
        if f is not None:
            node._handle(f, u[0], u[1], u[2], now_ms)
    if [w for w in ident.waiting if w[1] == peer]:
        advert(ident, node, now_ms, peer)
    try:
        for w in list(ident.waiting):
            if w[1] == peer:
                rec = node.storage.get("w%08x" % w[0])
                ident.waiting.remove(w)
                if rec:
                    from pollen.sending import seal
                    seal(node, peer, w[0], w[2], rec[9:], ident.key(peer), now_ms)
                node.storage.delete("w%08x" % w[0])
    finally:
        unload("pollen.sending")  # (Node.send's code: dropped after, as there)


def ask(ident, node, peer, now_ms):
    # a private message from a node whose key we lack (we missed its
    # adverts, and the one it sent us): its key is asked for, at most once
    # a minute for each of the last few such nodes
    t = ident.asked.get(peer, 0)
    if now_ms < t:
        return
    if len(ident.asked) >= 8:
        ident.asked.clear()
    ident.asked[peer] = now_ms + 60000
    advert(ident, node, now_ms, peer, _F_ASK)

